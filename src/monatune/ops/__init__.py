"""Geometry operators no maintained library has (torchvision.ops' role): rotated boxes and their angle
conventions, batched rotated IoU, rotated NMS and rotated RoIAlign. Boxes are (cx, cy, w, h, theta)
in pixels and radians; see :mod:`.rotated_boxes` for the "oc" / "le90" conventions."""

from monatune.ops.rotated_boxes import boxes_to_hboxes, boxes_to_polygons, polygons_to_boxes, regularize_boxes
from monatune.ops.rotated_iou import rotated_box_iou, rotated_box_iou_pairwise
from monatune.ops.nms import batched_rotated_nms, multiclass_rotated_nms, rotated_nms
from monatune.ops.roi_align import multilevel_rotated_roi_align, rotated_roi_align

__all__ = [
    "batched_rotated_nms",
    "boxes_to_hboxes",
    "boxes_to_polygons",
    "multiclass_rotated_nms",
    "multilevel_rotated_roi_align",
    "polygons_to_boxes",
    "regularize_boxes",
    "rotated_box_iou",
    "rotated_box_iou_pairwise",
    "rotated_nms",
    "rotated_roi_align",
]
