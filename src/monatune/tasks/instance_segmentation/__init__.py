"""Instance segmentation models on a DenseSwin: Cascade Mask R-CNN (SPEC §5, COCO) and plain Mask R-CNN."""

from monatune.tasks.instance_segmentation.cascade_mask_rcnn import (
    CASCADE_IOU_THRESHOLDS,
    CASCADE_STAGE_LOSS_WEIGHTS,
    CASCADE_TARGET_STDS,
    build_cascade_mask_rcnn,
)
from monatune.tasks.instance_segmentation.cascade_roi_heads import CascadeRoIHeads, CascadeStage
from monatune.tasks.instance_segmentation.mask_rcnn import AlignedMaskRoIHeads, build_mask_rcnn
from monatune.tasks.instance_segmentation.roi_align import AlignedMultiScaleRoIAlign, aligned_mask_targets
from monatune.tasks.instance_segmentation.two_stage import BorderAwareRPN, SwinTwoStageDetector

__all__ = [
    "AlignedMaskRoIHeads",
    "AlignedMultiScaleRoIAlign",
    "BorderAwareRPN",
    "CASCADE_IOU_THRESHOLDS",
    "CASCADE_STAGE_LOSS_WEIGHTS",
    "CASCADE_TARGET_STDS",
    "CascadeRoIHeads",
    "CascadeStage",
    "SwinTwoStageDetector",
    "aligned_mask_targets",
    "build_cascade_mask_rcnn",
    "build_mask_rcnn",
]
