"""Two-stage detector skeleton on a DenseSwin: resize/normalise -> Swin -> FPN -> RPN -> RoI heads."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign

from monatune.backbones.dense_swin import DenseSwin
from monatune.tasks.common import SeparateNeckDetectorMixin
from monatune.tasks.dense.fpn import LastLevelMaxPool, SwinFPN, fpn_strides
from monatune.tasks.dense.transform import check_labels
from monatune.tasks.instance_segmentation.roi_align import AlignedMultiScaleRoIAlign

IMAGE_SIZE_KEY = "image_size"  # (h, w) of the resized image, added to the RPN's copies of the targets


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


def anchors_inside(anchors: torch.Tensor, image_size: tuple[int, int], allowed_border: float) -> torch.Tensor:
    """(A,) bool: xyxy anchors (A, 4) within the (h, w) image widened by ``allowed_border`` px on each side
    (mmdet's ``anchor_inside_flags``: x1 >= -b, y1 >= -b, x2 < w + b, y2 < h + b)."""
    height, width = image_size
    b = allowed_border
    return (anchors[:, 0] >= -b) & (anchors[:, 1] >= -b) & (anchors[:, 2] < width + b) & (anchors[:, 3] < height + b)


class BorderAwareRPN(RegionProposalNetwork):
    """torchvision's RPN that, when ``allowed_border`` is not None, leaves out of target assignment the
    anchors crossing the image border by more than ``allowed_border`` px (mmdet's ``allowed_border``
    >= 0; the public configs use -1, i.e. ``None`` here: every anchor is assigned, as torchvision does).

    Left-out anchors are neither matched (a gt's best anchor is searched among the inside ones) nor
    sampled: their label is -1. Proposals at inference are unchanged. Same constructor as
    ``RegionProposalNetwork`` plus ``allowed_border``.
    """

    def __init__(self, *args, allowed_border: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.allowed_border = allowed_border

    def forward(  # type: ignore[override]
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        if targets is not None and self.allowed_border is not None:
            # assign_targets_to_anchors only sees anchors and targets: the image size rides on copies.
            targets = [{**t, IMAGE_SIZE_KEY: size} for t, size in zip(targets, images.image_sizes)]  # type: ignore[misc]
        return super().forward(images, features, targets)

    def assign_targets_to_anchors(
        self, anchors: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per image: labels (A,) 1 / 0 / -1 (ignored) and matched gt boxes (A, 4); targets need
        ``image_size`` (h, w) when ``allowed_border`` is set."""
        if self.allowed_border is None:
            return super().assign_targets_to_anchors(anchors, targets)
        labels, matched = [], []
        for anchors_i, target in zip(anchors, targets):
            if IMAGE_SIZE_KEY not in target:
                raise ValueError(f"allowed_border={self.allowed_border}: each target needs {IMAGE_SIZE_KEY!r} (h, w)")
            inside = anchors_inside(anchors_i, tuple(target[IMAGE_SIZE_KEY]), self.allowed_border)  # type: ignore[arg-type]
            label = anchors_i.new_full((len(anchors_i),), -1.0)
            boxes = anchors_i.new_zeros((len(anchors_i), 4))
            if inside.any():  # torchvision's Matcher refuses an empty anchor set
                (labels_in,), (matched_in,) = super().assign_targets_to_anchors([anchors_i[inside]], [target])
                label[inside] = labels_in
                boxes[inside] = matched_in.to(boxes.dtype)
            labels.append(label)
            matched.append(boxes)
        return labels, matched


def build_fpn_and_rpn(
    backbone: DenseSwin,
    fpn_channels: int = 256,
    *,
    pre_nms_top_n: tuple[int, int] = (2000, 1000),
    post_nms_top_n: tuple[int, int] = (2000, 1000),
    nms_thresh: float = 0.7,
    ignore_border_anchors: bool = False,
) -> tuple[SwinFPN, BorderAwareRPN]:
    """FPN over every backbone map plus a max-pooled level, and the RPN on it (mmdet's R-CNN defaults).

    Anchors: one size 8 * stride per level (32..512 for strides 4..64), ratios 0.5/1/2. Matching:
    IoU >= 0.7 positive, < 0.3 negative, each gt keeps its best anchor; 256 anchors sampled per
    image, half positive. ``pre_nms_top_n``/``post_nms_top_n`` are (train, test); top-n per level
    before NMS, per image after. ``ignore_border_anchors``: anchors crossing the image border are
    left out of training (mmdet ``allowed_border=0``, as the public Swin Cascade Mask R-CNN config; opt-in parity, SPEC §8 item 11).
    """
    neck = SwinFPN(backbone.out_channels, fpn_channels, LastLevelMaxPool())
    strides = fpn_strides(backbone.strides, 1)
    anchors = AnchorGenerator(tuple((8 * s,) for s in strides), ((0.5, 1.0, 2.0),) * len(strides))
    head = RPNHead(fpn_channels, anchors.num_anchors_per_location()[0])
    rpn = BorderAwareRPN(
        anchors,
        head,
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_top_n={"training": pre_nms_top_n[0], "testing": pre_nms_top_n[1]},
        post_nms_top_n={"training": post_nms_top_n[0], "testing": post_nms_top_n[1]},
        nms_thresh=nms_thresh,
        allowed_border=0.0 if ignore_border_anchors else None,
    )
    return neck, rpn


def fpn_roi_align(
    backbone: DenseSwin, output_size: int, aligned: bool = True
) -> AlignedMultiScaleRoIAlign | MultiScaleRoIAlign:
    """RoIAlign to ``output_size`` x ``output_size`` (adaptive sampling) over the FPN maps of the
    backbone's stages, the max-pooled extra level left out. ``aligned`` (default, SPEC §8.8): half-pixel
    offset and mmdet's level mapping at the backbone's strides; False: torchvision's unaligned pooler."""
    levels = [str(i) for i in range(len(backbone.out_channels))]
    if aligned:
        return AlignedMultiScaleRoIAlign(levels, backbone.strides, output_size, sampling_ratio=0)
    return MultiScaleRoIAlign(levels, output_size, sampling_ratio=0)
