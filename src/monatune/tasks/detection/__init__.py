"""Detection models on a DenseSwin: RetinaNet (SPEC §5, VOC), plus the FPN neck and input transform
that the two-stage models share."""

from monatune.tasks.dense.fpn import ExtraConvsOnInput, SwinFPN, fpn_strides
from monatune.tasks.dense.transform import NoResizeTransform, build_detection_transform
from monatune.tasks.detection.retinanet import SwinRetinaNet, build_retinanet, retinanet_anchor_generator

__all__ = [
    "ExtraConvsOnInput",
    "NoResizeTransform",
    "SwinFPN",
    "SwinRetinaNet",
    "build_detection_transform",
    "build_retinanet",
    "fpn_strides",
    "retinanet_anchor_generator",
]
