"""Cascade Mask R-CNN on a DenseSwin, as the Swin COCO recipe sets it up (SPEC §5, instance segmentation)."""

from __future__ import annotations

import functools
from typing import Callable, Literal, Sequence

from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from monatune.backbones.dense_swin import DenseSwin
from monatune.backbones.stats import IMAGENET_MEAN, IMAGENET_STD
from monatune.tasks.dense.transform import build_detection_transform
from monatune.tasks.instance_segmentation.cascade_roi_heads import CascadeRoIHeads, CascadeStage
from monatune.tasks.instance_segmentation.two_stage import SwinTwoStageDetector, build_fpn_and_rpn, fpn_roi_align

CASCADE_IOU_THRESHOLDS = (0.5, 0.6, 0.7)
CASCADE_TARGET_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
CASCADE_STAGE_LOSS_WEIGHTS = (1.0, 0.5, 0.25)

HeadNorm = Literal["bn", "gn", "none"]


def head_norm_layer(norm: HeadNorm) -> Callable[[int], nn.Module] | None:
    """Norm for the 4conv1fc box heads: "bn" (the Swin config's SyncBN, one device), "gn" (32 groups), "none"."""
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":
        return functools.partial(nn.GroupNorm, 32)
    if norm == "none":
        return None
    raise ValueError(f"box_head_norm must be 'bn', 'gn' or 'none', got {norm!r}")


def mask_head(in_channels: int, channels: int, num_classes: int) -> nn.Sequential:
    """FCN mask head: 4 conv3x3 + ReLU, deconv x2 + ReLU, conv1x1 -> (R, num_classes, 2S, 2S) logits."""
    return nn.Sequential(
        MaskRCNNHeads(in_channels, [channels] * 4, 1), MaskRCNNPredictor(channels, channels, num_classes)
    )


def build_cascade_mask_rcnn(
    backbone: DenseSwin,
    num_classes: int,
    *,
    min_size: int | tuple[int, ...] | None = 800,
    max_size: int = 1333,
    fpn_channels: int = 256,
    box_conv_channels: int = 256,
    box_fc_channels: int = 1024,
    box_head_norm: HeadNorm = "bn",
    mask_channels: int = 256,
    class_agnostic: bool = False,
    iou_thresholds: Sequence[float] = CASCADE_IOU_THRESHOLDS,
    target_stds: Sequence[Sequence[float]] = CASCADE_TARGET_STDS,
    stage_loss_weights: Sequence[float] = CASCADE_STAGE_LOSS_WEIGHTS,
    box_loss_weight: float = 10.0,
    box_batch_size_per_image: int = 512,
    rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000),
    rpn_post_nms_top_n: tuple[int, int] = (2000, 1000),
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    roi_align_aligned: bool = True,
    rpn_ignore_border_anchors: bool = False,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
) -> SwinTwoStageDetector:
    """Cascade Mask R-CNN (SPEC §5) on ``backbone`` (use ``out_indices=(0, 1, 2, 3)``: FPN over all stages).

    Args:
        backbone: DenseSwin; FPN (``fpn_channels``) over its maps plus a max-pooled level, RPN on all.
        num_classes: object classes C (labels 1..C; the classifiers have C+1 outputs, 0 = background).
        min_size, max_size: torchvision resize inside the model (test scale 800/1333; a tuple
            ``min_size`` draws one per batch in training, e.g. ``tuple(range(480, 801, 32))``; None
            keeps the input size, for data resized already).
        box_conv_channels, box_fc_channels, box_head_norm: the "4conv1fc" heads (4 conv3x3 + norm +
            ReLU, one fc + ReLU); "bn" matches the public Swin config (SyncBN).
        class_agnostic: one regressed box per RoI instead of one per class. Default False as in the
            public Swin cascade config (``reg_class_agnostic=False``; mmdet's R-50 base sets True).
        iou_thresholds, target_stds, stage_loss_weights: per stage; coder weights are 1 / std.
        box_loss_weight: GIoU loss weight on decoded boxes (10).
        box_batch_size_per_image: RoIs sampled per image per stage (512, 25 % positive).
        rpn_pre_nms_top_n, rpn_post_nms_top_n: (train, test) proposal counts.
        score_thresh, nms_thresh, detections_per_img: inference (0.05, 0.5, 100).
        roi_align_aligned: RoIAlign with the half-pixel offset for the box and mask poolers and the
            mask targets (cropped and resized aligned, binarised at 0.5), as mmcv's default in the
            public code (SPEC §8.8); False: torchvision's unaligned pooling and soft targets.
        rpn_ignore_border_anchors: leave anchors crossing the image border out of RPN training (mmdet
            ``allowed_border=0``); default False (torchvision: every anchor is matched); the public Swin config has ``allowed_border=0``.
    RoIAlign: 7x7 box / 14x14 mask features, adaptive sampling, level floor(log2(sqrt(wh) / 56)) over
    strides 4-32; mask heads predict 28x28 per class.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not len(iou_thresholds) == len(target_stds) == len(stage_loss_weights):
        raise ValueError("iou_thresholds, target_stds and stage_loss_weights need one entry per stage")
    neck, rpn = build_fpn_and_rpn(
        backbone,
        fpn_channels,
        pre_nms_top_n=rpn_pre_nms_top_n,
        post_nms_top_n=rpn_post_nms_top_n,
        ignore_border_anchors=rpn_ignore_border_anchors,
    )
    norm_layer = head_norm_layer(box_head_norm)
    stages = []
    for threshold, stds in zip(iou_thresholds, target_stds):
        box_head = FastRCNNConvFCHead(
            (fpn_channels, 7, 7), [box_conv_channels] * 4, [box_fc_channels], norm_layer=norm_layer
        )
        weights = tuple(1.0 / float(s) for s in stds)
        stage = CascadeStage(
            box_head,
            box_fc_channels,
            num_classes + 1,
            float(threshold),
            weights,  # type: ignore[arg-type]
            class_agnostic=class_agnostic,
            mask_head=mask_head(fpn_channels, mask_channels, num_classes + 1),
        )
        stages.append(stage)
    roi_heads = CascadeRoIHeads(
        fpn_roi_align(backbone, 7, roi_align_aligned),
        stages,
        stage_loss_weights,
        mask_roi_pool=fpn_roi_align(backbone, 14, roi_align_aligned),
        batch_size_per_image=box_batch_size_per_image,
        box_loss_weight=box_loss_weight,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
        aligned_mask_targets=roi_align_aligned,
    )
    transform = build_detection_transform(min_size, max_size, image_mean, image_std)
    return SwinTwoStageDetector(backbone, neck, rpn, roi_heads, transform, num_classes)
