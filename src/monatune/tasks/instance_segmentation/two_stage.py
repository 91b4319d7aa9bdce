"""Two-stage detector skeleton on a DenseSwin: resize/normalise -> Swin -> FPN -> RPN -> RoI heads."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign

from monatune.backbones.dense_swin import DenseSwin
from monatune.tasks.common import SeparateNeckDetectorMixin
from monatune.tasks.detection.fpn import LastLevelMaxPool, SwinFPN, fpn_strides
from monatune.tasks.detection.transform import check_labels


class SwinTwoStageDetector(SeparateNeckDetectorMixin, GeneralizedRCNN):
    """torchvision's GeneralizedRCNN with ``backbone`` (the DenseSwin) and ``neck`` (its FPN) kept apart.

    ``roi_heads`` is torchvision's ``RoIHeads`` (Mask R-CNN) or ``CascadeRoIHeads``; both take
    ``(features, proposals, image_sizes, targets)`` and return ``(detections, losses)``.

    Train: ``model(images: list[(3, H, W) in 0-1], targets: list[{"boxes" (N, 4) xyxy float,
    "labels" (N,) int64 in 1..C, "masks" (N, H, W) uint8}])`` -> dict of scalar losses (sum them).
    Eval: ``model(images)`` -> ``list[{"boxes" (K, 4), "scores" (K,), "labels" (K,), "masks"
    (K, 1, H, W) float probabilities}]`` in the input images' coordinates.
    """

    def __init__(
        self,
        backbone: DenseSwin,
        neck: SwinFPN,
        rpn: RegionProposalNetwork,
        roi_heads: nn.Module,
        transform: GeneralizedRCNNTransform,
        num_classes: int,
    ) -> None:
        super().__init__(backbone, rpn, roi_heads, transform)
        self.neck = neck
        self.num_classes = num_classes

    def forward(  # type: ignore[override]
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        if targets is not None:
            check_labels(targets, self.num_classes)
        image_list, targets, features, original_sizes = self.transform_and_extract(images, targets)
        proposals, rpn_losses = self.rpn(image_list, features, targets)
        detections, roi_losses = self.roi_heads(features, proposals, image_list.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)


def build_fpn_and_rpn(
    backbone: DenseSwin,
    fpn_channels: int = 256,
    *,
    pre_nms_top_n: tuple[int, int] = (2000, 1000),
    post_nms_top_n: tuple[int, int] = (2000, 1000),
    nms_thresh: float = 0.7,
) -> tuple[SwinFPN, RegionProposalNetwork]:
    """FPN over every backbone map plus a max-pooled level, and the RPN on it (mmdet's R-CNN defaults).

    Anchors: one size 8 * stride per level (32..512 for strides 4..64), ratios 0.5/1/2. Matching:
    IoU >= 0.7 positive, < 0.3 negative, each gt keeps its best anchor; 256 anchors sampled per
    image, half positive. ``pre_nms_top_n``/``post_nms_top_n`` are (train, test); top-n per level
    before NMS, per image after.
    """
    neck = SwinFPN(backbone.out_channels, fpn_channels, LastLevelMaxPool())
    strides = fpn_strides(backbone.strides, 1)
    anchors = AnchorGenerator(tuple((8 * s,) for s in strides), ((0.5, 1.0, 2.0),) * len(strides))
    head = RPNHead(fpn_channels, anchors.num_anchors_per_location()[0])
    rpn = RegionProposalNetwork(
        anchors,
        head,
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_top_n={"training": pre_nms_top_n[0], "testing": pre_nms_top_n[1]},
        post_nms_top_n={"training": post_nms_top_n[0], "testing": post_nms_top_n[1]},
        nms_thresh=nms_thresh,
    )
    return neck, rpn


def fpn_roi_align(backbone: DenseSwin, output_size: int) -> MultiScaleRoIAlign:
    """RoIAlign to ``output_size`` x ``output_size`` (adaptive sampling) over the FPN maps of the
    backbone's stages, the max-pooled extra level left out."""
    levels = [str(i) for i in range(len(backbone.out_channels))]
    return MultiScaleRoIAlign(levels, output_size, sampling_ratio=0)
