"""Semantic segmentation (SPEC §5): UperNet + auxiliary FCN head on a DenseSwin, mIoU. Its registry record (``monatune.engine.tasks``)."""

from __future__ import annotations

from monatune.engine.config import ExperimentConfig
from monatune.engine.tasks import Task
from monatune.tasks.semantic_segmentation.data import SemanticSegmentationData
from monatune.tasks.semantic_segmentation.module import SemanticSegmentationModule, build_segmenter
from monatune.tasks.semantic_segmentation.predict import predict_label_maps


def build_module(cfg: ExperimentConfig) -> SemanticSegmentationModule:
    return SemanticSegmentationModule(build_segmenter(cfg), cfg)


TASK = Task("semantic_segmentation", build_module, SemanticSegmentationData, predict_label_maps, main_metric="val/miou", metric_label="mIoU (%)")
