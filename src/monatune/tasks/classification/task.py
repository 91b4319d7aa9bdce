"""Image classification (SPEC §5): a Swin with a linear head on pooled features. Its registry record (``monatune.engine.tasks``)."""

from __future__ import annotations

from monatune.engine.config import ExperimentConfig
from monatune.engine.tasks import Task
from monatune.tasks.classification.data import ClassificationData
from monatune.tasks.classification.module import ClassificationModule, build_classifier
from monatune.tasks.classification.predict import predict_classes


def build_module(cfg: ExperimentConfig) -> ClassificationModule:
    return ClassificationModule(build_classifier(cfg), cfg)


TASK = Task("classification", build_module, ClassificationData, predict_classes, main_metric="val/top1", metric_label="top-1 (%)")
