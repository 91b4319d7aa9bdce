"""Oriented object detection (DOTA v1.0, STAR): rotated boxes, rotated IoU/NMS, three detectors
(rotated RetinaNet + KLD, Oriented R-CNN, H2RBox-v2), patch split/merge and the DOTA evaluator.

Boxes are (cx, cy, w, h, theta) in pixels and radians; see :mod:`monatune.ops` for the geometry and the
"oc" / "le90" angle conventions. Every detector follows torchvision's detection contract.
"""

from monatune.ops.rotated_boxes import (
    boxes_to_hboxes,
    boxes_to_polygons,
    polygons_to_boxes,
    regularize_boxes,
)
from monatune.metrics.dota_map import evaluate_dota, read_task1_submission, write_task1_submission
from monatune.ops.nms import batched_rotated_nms, rotated_nms
from monatune.ops.rotated_iou import rotated_box_iou
from monatune.tasks.oriented.factory import DETECTORS, build_oriented_detector, build_oriented_model
from monatune.tasks.oriented.gaussian_losses import gwd_loss, kld_loss
from monatune.tasks.oriented.h2rbox_v2 import H2RBoxV2, build_h2rbox_v2
from monatune.tasks.oriented.oriented_rcnn import OrientedRCNN, build_oriented_rcnn
from monatune.tasks.oriented.patches import merge_patch_detections, patch_windows, split_dota
from monatune.tasks.oriented.protocol import MergeSettings, ScoreSettings, merge_detections
from monatune.tasks.oriented.retinanet import RotatedRetinaNet, build_rotated_retinanet

__all__ = [
    "DETECTORS",
    "H2RBoxV2",
    "MergeSettings",
    "OrientedRCNN",
    "RotatedRetinaNet",
    "ScoreSettings",
    "batched_rotated_nms",
    "boxes_to_hboxes",
    "boxes_to_polygons",
    "build_h2rbox_v2",
    "build_oriented_detector",
    "build_oriented_model",
    "build_oriented_rcnn",
    "build_rotated_retinanet",
    "evaluate_dota",
    "gwd_loss",
    "kld_loss",
    "merge_detections",
    "merge_patch_detections",
    "patch_windows",
    "polygons_to_boxes",
    "read_task1_submission",
    "regularize_boxes",
    "rotated_box_iou",
    "rotated_nms",
    "split_dota",
    "write_task1_submission",
]
