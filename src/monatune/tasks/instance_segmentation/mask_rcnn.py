"""Plain Mask R-CNN on a DenseSwin: torchvision's RoIHeads with the standard two-fc box head."""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss

from monatune.backbones.dense_swin import DenseSwin
from monatune.backbones.stats import IMAGENET_MEAN, IMAGENET_STD
from monatune.tasks.dense.transform import build_detection_transform
from monatune.tasks.instance_segmentation.cascade_mask_rcnn import mask_head
from monatune.tasks.instance_segmentation.roi_align import mask_loss
from monatune.tasks.instance_segmentation.two_stage import SwinTwoStageDetector, build_fpn_and_rpn, fpn_roi_align


class AlignedMaskRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` whose training mask loss uses aligned, binarised mask targets
    (``roi_align.mask_loss``, SPEC §8.8) instead of ``project_masks_on_boxes``'s unaligned soft ones.

    Same constructor and contract as ``RoIHeads`` (box and mask branches required); eval is
    torchvision's unchanged. Training returns ``([], {"loss_classifier", "loss_box_reg", "loss_mask"})``.
    """

    def forward(  # type: ignore[override]
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None or any("masks" not in t for t in targets):
            raise ValueError("training needs targets with 'boxes', 'labels' and 'masks' (N, H, W)")
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        positive = [lab > 0 for lab in labels]
        mask_proposals = [p[keep] for p, keep in zip(proposals, positive)]
        mask_matched = [m[keep] for m, keep in zip(matched_idxs, positive)]
        mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes)))
        loss_mask = mask_loss(
            mask_logits, mask_proposals, [t["masks"] for t in targets], [t["labels"] for t in targets], mask_matched
        )
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg, "loss_mask": loss_mask}


def build_mask_rcnn(
    backbone: DenseSwin,
    num_classes: int,
    *,
    min_size: int | tuple[int, ...] | None = 800,
    max_size: int = 1333,
    fpn_channels: int = 256,
    box_fc_channels: int = 1024,
    mask_channels: int = 256,
    box_batch_size_per_image: int = 512,
    rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000),
    rpn_post_nms_top_n: tuple[int, int] = (1000, 1000),
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    roi_align_aligned: bool = True,
    rpn_ignore_border_anchors: bool = False,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
) -> SwinTwoStageDetector:
    """Mask R-CNN on ``backbone`` (use ``out_indices=(0, 1, 2, 3)``); same contract as the cascade.

    Box head: two fc layers (``box_fc_channels``), class-specific regression with coder weights
    10/10/5/5 (target stds 0.1/0.1/0.2/0.2), RoIs IoU >= 0.5 positive, 512 sampled per image at
    25 % positive, torchvision's smooth-L1 (beta 1/9) box loss. Mask head as in the cascade.
    Losses: ``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``, ``loss_mask``.
    ``roi_align_aligned`` (default True, as mmcv's RoIAlign in mmdet's Mask R-CNN) and
    ``rpn_ignore_border_anchors`` (default False) as in ``build_cascade_mask_rcnn``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    neck, rpn = build_fpn_and_rpn(
        backbone,
        fpn_channels,
        pre_nms_top_n=rpn_pre_nms_top_n,
        post_nms_top_n=rpn_post_nms_top_n,
        ignore_border_anchors=rpn_ignore_border_anchors,
    )
    mask_convs, mask_predictor = mask_head(fpn_channels, mask_channels, num_classes + 1)
    heads = AlignedMaskRoIHeads if roi_align_aligned else RoIHeads
    roi_heads = heads(
        fpn_roi_align(backbone, 7, roi_align_aligned),
        TwoMLPHead(fpn_channels * 7 * 7, box_fc_channels),
        FastRCNNPredictor(box_fc_channels, num_classes + 1),
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=box_batch_size_per_image,
        positive_fraction=0.25,
        bbox_reg_weights=(10.0, 10.0, 5.0, 5.0),
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
        mask_roi_pool=fpn_roi_align(backbone, 14, roi_align_aligned),
        mask_head=mask_convs,
        mask_predictor=mask_predictor,
    )
    transform = build_detection_transform(min_size, max_size, image_mean, image_std)
    return SwinTwoStageDetector(backbone, neck, rpn, roi_heads, transform, num_classes)
