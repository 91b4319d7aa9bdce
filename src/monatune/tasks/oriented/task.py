"""Oriented object detection (SPEC §5): rotated RetinaNet, Oriented R-CNN, H2RBox-v2 on a DenseSwin, DOTA mAP. Its registry record (``monatune.engine.tasks``)."""

from __future__ import annotations

from monatune.engine.config import ExperimentConfig
from monatune.engine.tasks import Task
from monatune.tasks.oriented.datamodule import OrientedData, oriented_class_names
from monatune.tasks.oriented.module import OrientedModule, build_oriented
from monatune.tasks.oriented.predict import predict_rotated_boxes


def build_module(cfg: ExperimentConfig) -> OrientedModule:
    return OrientedModule(build_oriented(cfg), cfg, oriented_class_names(cfg))


TASK = Task("oriented", build_module, OrientedData, predict_rotated_boxes, main_metric="val/map", metric_label="DOTA mAP (%)")
