"""Instance segmentation (SPEC §5): Cascade Mask R-CNN on a DenseSwin, COCO box and mask AP. Its registry record (``monatune.engine.tasks``)."""

from __future__ import annotations

from monatune.engine.config import ExperimentConfig
from monatune.engine.tasks import Task
from monatune.tasks.dense.predict import predict_boxes
from monatune.tasks.instance_segmentation.data import InstanceSegmentationData
from monatune.tasks.instance_segmentation.module import InstanceSegmentationModule, build_instance_segmenter


def build_module(cfg: ExperimentConfig) -> InstanceSegmentationModule:
    return InstanceSegmentationModule(build_instance_segmenter(cfg), cfg)


TASK = Task("instance_segmentation", build_module, InstanceSegmentationData, predict_boxes, main_metric="val/segm_map", metric_label="COCO mask AP (%)")
