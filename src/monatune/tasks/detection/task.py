"""Object detection (SPEC §5): RetinaNet on a DenseSwin, VOC07 mAP. Its registry record (``monatune.engine.tasks``)."""

from __future__ import annotations

from monatune.engine.config import ExperimentConfig
from monatune.engine.tasks import Task
from monatune.tasks.dense.predict import predict_boxes
from monatune.tasks.detection.data import DetectionData, detection_class_names
from monatune.tasks.detection.module import DetectionModule, build_detector


def build_module(cfg: ExperimentConfig) -> DetectionModule:
    return DetectionModule(build_detector(cfg), cfg, detection_class_names(cfg))


TASK = Task("detection", build_module, DetectionData, predict_boxes, main_metric="val/map", metric_label="VOC07 mAP (%)")
