"""RetinaNet on a DenseSwin (SPEC §5, VOC): stages 2-4 -> FPN P3-P7, focal loss (2, 0.25), L1 box loss."""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead
from torchvision.ops import boxes as box_ops

from monatune.backbones.dense_swin import DenseSwin
from monatune.backbones.stats import IMAGENET_MEAN, IMAGENET_STD
from monatune.tasks.common import SeparateNeckDetectorMixin
from monatune.tasks.dense.fpn import ExtraConvsOnInput, SwinFPN, fpn_strides
from monatune.tasks.dense.transform import build_detection_transform, check_labels

CANDIDATE_SELECTIONS = ("torchvision", "max_class")


def max_class_candidates(
    logits: torch.Tensor, topk: int, score_thresh: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mmdet 2.11's ``nms_pre`` on one level: the ``topk`` anchors by their best class score, then every
    (anchor, class) pair of those anchors scoring above ``score_thresh``.

    ``logits`` (A, C) of one level and image -> ``(anchor_idxs, labels 0..C-1, scores)``, each (K,).
    (torchvision instead keeps the top-k of all A x C pair scores above the threshold.)
    """
    scores = torch.sigmoid(logits)
    if topk < scores.shape[0]:
        kept = scores.max(dim=1).values.topk(topk).indices
    else:
        kept = torch.arange(scores.shape[0], device=scores.device)
    anchor_idxs, labels = torch.where(scores[kept] > score_thresh)
    anchor_idxs = kept[anchor_idxs]
    return anchor_idxs, labels, scores[anchor_idxs, labels]


class SwinRetinaNet(SeparateNeckDetectorMixin, RetinaNet):
    """torchvision's RetinaNet with ``backbone`` (the DenseSwin) and ``neck`` (its FPN) kept apart.

    Keeping them apart lets ``monatune.apply(model.backbone, method)`` freeze the Swin alone. The
    classifier has ``num_classes`` sigmoid outputs (no background column, as in mmdet); targets
    and detections use torchvision's labels ``1..num_classes``.

    Train: ``model(images: list[(3, H, W) in 0-1], targets: list[{"boxes": (N, 4) xyxy, "labels": (N,)}])``
    -> ``{"classification": focal loss, "bbox_regression": L1 loss}`` (each averaged over positive
    anchors per image, then over images). Eval: ``model(images)`` -> ``list[{"boxes" (K, 4),
    "scores" (K,), "labels" (K,)}]`` in the input images' coordinates. Test-time candidates per level:
    ``candidate_selection="torchvision"`` (torchvision's top-k over anchor x class scores) or
    ``"max_class"`` (:func:`max_class_candidates`, mmdet's), then class-wise NMS over all levels.
    """

    def __init__(
        self, backbone: DenseSwin, neck: SwinFPN, num_classes: int, candidate_selection: str = "torchvision", **kwargs
    ) -> None:
        if candidate_selection not in CANDIDATE_SELECTIONS:
            raise ValueError(
                f"candidate_selection: {candidate_selection!r} is not one of {', '.join(CANDIDATE_SELECTIONS)}"
            )
        super().__init__(backbone, num_classes, **kwargs)
        self.neck = neck
        self.num_classes = num_classes
        self.candidate_selection = candidate_selection

    def postprocess_detections(  # type: ignore[override]
        self,
        head_outputs: dict[str, list[torch.Tensor]],
        anchors: list[list[torch.Tensor]],
        image_shapes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """Per-level outputs (``cls_logits`` (B, A_l, C), ``bbox_regression`` (B, A_l, 4)) and anchors ->
        one ``{"boxes", "scores", "labels" 0..C-1}`` per image, after class-wise NMS and the cap."""
        if self.candidate_selection == "torchvision":
            return super().postprocess_detections(head_outputs, anchors, image_shapes)
        detections = []
        for index, image_shape in enumerate(image_shapes):
            boxes, scores, labels = [], [], []
            for logits, deltas, level_anchors in zip(
                head_outputs["cls_logits"], head_outputs["bbox_regression"], anchors[index]
            ):
                anchor_idxs, level_labels, level_scores = max_class_candidates(
                    logits[index], self.topk_candidates, self.score_thresh
                )
                decoded = self.box_coder.decode_single(deltas[index][anchor_idxs], level_anchors[anchor_idxs])
                boxes.append(box_ops.clip_boxes_to_image(decoded, image_shape))
                scores.append(level_scores)
                labels.append(level_labels)
            image_boxes, image_scores, image_labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
            keep = box_ops.batched_nms(image_boxes, image_scores, image_labels, self.nms_thresh)
            keep = keep[: self.detections_per_img]
            detections.append({"boxes": image_boxes[keep], "scores": image_scores[keep], "labels": image_labels[keep]})
        return detections

    def forward(  # type: ignore[override]
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        image_list, targets, fpn_maps, original_sizes = self.transform_and_extract(images, targets)
        features = list(fpn_maps.values())
        head_outputs = self.head(features)
        anchors = self.anchor_generator(image_list, features)

        if self.training:
            assert targets is not None
            check_labels(targets, self.num_classes)
            shifted = [{**t, "labels": t["labels"] - 1} for t in targets]
            return self.compute_loss(shifted, head_outputs, anchors)

        # Split the flat (B, sum_l H_l W_l A, .) outputs back per level for per-level top-k.
        anchors_per_level = [x.shape[-2] * x.shape[-1] for x in features]
        num_anchors = head_outputs["cls_logits"].shape[1] // sum(anchors_per_level)
        sizes = [n * num_anchors for n in anchors_per_level]
        split_outputs = {k: list(v.split(sizes, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(a.split(sizes)) for a in anchors]
        detections = self.postprocess_detections(split_outputs, split_anchors, image_list.image_sizes)
        for det in detections:
            det["labels"] = det["labels"] + 1
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)


def retinanet_anchor_generator(strides: Sequence[int]) -> AnchorGenerator:
    """RetinaNet anchors: per level of stride s, sizes 4s * 2^(0, 1/3, 2/3) and ratios 0.5, 1, 2 (9 per place)."""
    sizes = tuple(tuple(4.0 * s * 2 ** (i / 3) for i in range(3)) for s in strides)
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(strides))  # type: ignore[arg-type]


def build_retinanet(
    backbone: DenseSwin,
    num_classes: int,
    *,
    min_size: int | tuple[int, ...] | None = 600,
    max_size: int = 1000,
    fpn_channels: int = 256,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    topk_candidates: int = 1000,
    candidate_selection: str = "torchvision",
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
) -> SwinRetinaNet:
    """RetinaNet (SPEC §5) on ``backbone``; use ``out_indices=(1, 2, 3)`` for the paper's P3-P7.

    Args:
        backbone: DenseSwin; every map it returns goes into the FPN, and P6/P7 come from stride-2
            convs on its last map (so stages 2-4 give strides 8..128).
        num_classes: object classes C (labels 1..C; no background output).
        min_size, max_size: resize inside the model (short side, long-side cap); VOC recipe 600/1000.
            A tuple ``min_size`` picks one at random per batch in training; None keeps the input size
            (for data that is resized already).
        fpn_channels: FPN and head width (256 in the paper).
        score_thresh, nms_thresh, detections_per_img, topk_candidates: inference (mmdet's VOC test:
            0.05, 0.5, 100, top 1000 per level).
        candidate_selection: how the ``topk_candidates`` per level are chosen at test: "torchvision"
            (default: the top scores over all anchor x class pairs) or "max_class" (the top anchors by
            their best class score, all their classes above ``score_thresh``: mmdet's ``nms_pre``,
            SPEC §8.11).
        image_mean, image_std: normalisation applied to 0-1 images inside the model.
    Losses: sigmoid focal (gamma 2, alpha 0.25) and L1 on (dx, dy, dw, dh) deltas with unit coder
    weights (mmdet's target stds 1); anchors IoU >= 0.5 positive, < 0.4 negative, every gt keeps
    its best anchor.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    in_channels = list(backbone.out_channels)
    neck = SwinFPN(in_channels, fpn_channels, ExtraConvsOnInput(in_channels[-1], fpn_channels))
    anchor_generator = retinanet_anchor_generator(fpn_strides(backbone.strides, 2))
    head = RetinaNetHead(fpn_channels, anchor_generator.num_anchors_per_location()[0], num_classes)
    head.regression_head._loss_type = "l1"  # torchvision's default; explicit because the recipe needs L1
    model = SwinRetinaNet(
        backbone,
        neck,
        num_classes,
        candidate_selection=candidate_selection,
        anchor_generator=anchor_generator,
        head=head,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
        topk_candidates=topk_candidates,
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.4,
    )
    model.transform = build_detection_transform(min_size, max_size, image_mean, image_std)
    return model
