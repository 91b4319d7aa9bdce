"""Rotated RetinaNet with horizontal anchors and the KLD loss (SPEC §5, §7; "oc" angles).

Anchors stay horizontal; a target box is matched through its circumscribed horizontal box (IoU
>= 0.5 positive, < 0.4 negative, plus each target's best anchors). The head regresses
(dx, dy, dw, dh, dtheta) from the anchor; the loss is taken on the *decoded* box against the target
box with KLD (or GWD), and classification uses sigmoid focal loss (gamma 2, alpha 0.25).

Box loss scale (SPEC §8.3, ``box_loss_reduction="per_level"``, the default): the public head calls its
KLD loss once per FPN level, the loss takes the mean over that level's positives (of the whole
batch) and ignores its normaliser, and the framework sums the levels; levels without positives add 0.
``"per_positive"`` divides the sum over all positives by their number instead (mmdet's usual rule).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torchvision.ops import box_iou, sigmoid_focal_loss

from monatune.backbones.dense_swin import DenseSwin
from monatune.ops.nms import multiclass_rotated_nms
from monatune.ops.rotated_boxes import boxes_to_hboxes
from monatune.tasks.common import top_scoring_candidates
from monatune.tasks.oriented.assign import horizontal_anchors, max_iou_assign
from monatune.tasks.oriented.coders import DeltaXYWHACoder
from monatune.tasks.oriented.common import OrientedDetector, build_fpn
from monatune.tasks.oriented.gaussian_losses import GAUSSIAN_LOSSES


def conv_tower(channels_in: int, channels: int, depth: int) -> nn.Sequential:
    """``depth`` x (3x3 conv + ReLU), weights N(0, 0.01) as in RetinaNet."""
    layers: list[nn.Module] = []
    for i in range(depth):
        conv = nn.Conv2d(channels_in if i == 0 else channels, channels, 3, padding=1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def anchors_as_boxes(anchors: torch.Tensor) -> torch.Tensor:
    """Horizontal anchors (K, 4) x1y1x2y2 -> (K, 5) with theta 0 (w along x): the regression reference."""
    wh = anchors[:, 2:] - anchors[:, :2]
    return torch.cat((anchors[:, :2] + wh / 2, wh, torch.zeros_like(wh[:, :1])), dim=1)


BOX_LOSS_REDUCTIONS = ("per_level", "per_positive")


def per_level_mean(losses: torch.Tensor, levels: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Sum over FPN levels of the mean of ``losses`` (P,) over that level's entries (``levels`` (P,)
    int64 in [0, num_levels)); a level without entries adds 0. Scalar; 0 for P = 0."""
    total = losses.new_zeros(num_levels).index_add(0, levels, losses)
    count = losses.new_zeros(num_levels).index_add(0, levels, torch.ones_like(losses))
    return (total / count.clamp_min(1)).sum()


class RotatedRetinaNet(OrientedDetector):
    """Rotated RetinaNet; build it with :func:`build_rotated_retinanet`."""

    convention = "oc"

    def __init__(
        self,
        backbone: DenseSwin,
        num_classes: int,
        *,
        fpn_channels: int = 256,
        head_channels: int = 256,
        stacked_convs: int = 4,
        octave_base_scale: float = 4.0,
        scales_per_octave: int = 3,
        ratios: Sequence[float] = (1.0, 0.5, 2.0),
        box_loss: str = "kld",
        tau: float = 1.0,
        pos_iou: float = 0.5,
        neg_iou: float = 0.4,
        score_threshold: float = 0.05,
        nms_pre: int = 2000,
        nms_iou: float = 0.1,
        max_per_image: int = 2000,
        box_loss_weight: float = 1.0,
        box_loss_reduction: str = "per_level",
    ) -> None:
        neck, strides = build_fpn(backbone, fpn_channels, "on_input")
        super().__init__(backbone, neck, strides)
        if box_loss not in GAUSSIAN_LOSSES:
            raise ValueError(f"unknown box_loss {box_loss!r}; valid: {', '.join(GAUSSIAN_LOSSES)}")
        if box_loss_reduction not in BOX_LOSS_REDUCTIONS:
            raise ValueError(
                f"unknown box_loss_reduction {box_loss_reduction!r}; valid: {', '.join(BOX_LOSS_REDUCTIONS)}"
            )
        self.num_classes = num_classes
        self.scales = [octave_base_scale * 2 ** (i / scales_per_octave) for i in range(scales_per_octave)]
        self.ratios = list(ratios)
        num_anchors = len(self.scales) * len(self.ratios)
        self.cls_tower = conv_tower(fpn_channels, head_channels, stacked_convs)
        self.reg_tower = conv_tower(fpn_channels, head_channels, stacked_convs)
        self.cls_out = nn.Conv2d(head_channels, num_anchors * num_classes, 3, padding=1)
        self.reg_out = nn.Conv2d(head_channels, num_anchors * 5, 3, padding=1)
        for conv in (self.cls_out, self.reg_out):
            nn.init.normal_(conv.weight, std=0.01)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - 0.01) / 0.01))  # prior probability 0.01
        nn.init.zeros_(self.reg_out.bias)
        self.coder = DeltaXYWHACoder(convention="oc")
        self.box_loss, self.tau = GAUSSIAN_LOSSES[box_loss], tau
        self.box_loss_weight, self.box_loss_reduction = box_loss_weight, box_loss_reduction
        self.pos_iou, self.neg_iou = pos_iou, neg_iou
        self.score_threshold, self.nms_pre = score_threshold, nms_pre
        self.nms_iou, self.max_per_image = nms_iou, max_per_image

    def head(self, batch: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Per level: class logits (B, HWA, C), deltas (B, HWA, 5) (float32, also under autocast); anchors (HWA, 4)."""
        feats = self.features(batch)
        b = batch.shape[0]
        logits, deltas = [], []
        for f in feats:
            logits.append(self.cls_out(self.cls_tower(f)).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes).float())
            deltas.append(self.reg_out(self.reg_tower(f)).permute(0, 2, 3, 1).reshape(b, -1, 5).float())
        anchors = horizontal_anchors(
            [f.shape[-2:] for f in feats], self.strides, self.scales, self.ratios, device=batch.device
        )
        return logits, deltas, anchors

    def compute_losses(self, batch, sizes, targets):
        logits, deltas, anchors = self.head(batch)
        anchor_levels = torch.cat([torch.full((len(a),), lvl, device=batch.device) for lvl, a in enumerate(anchors)])
        logits, deltas, anchors = torch.cat(logits, 1), torch.cat(deltas, 1), torch.cat(anchors)
        anchor_boxes = anchors_as_boxes(anchors)
        cls_losses, box_losses, pos_levels, num_pos = [], [], [], 0
        for i, t in enumerate(targets):
            iou = box_iou(boxes_to_hboxes(t["boxes"]), anchors)
            assigned = max_iou_assign(iou, pos_threshold=self.pos_iou, neg_threshold=self.neg_iou, min_pos_iou=0.0)
            valid = assigned >= -1
            pos = torch.nonzero(assigned >= 0).squeeze(1)
            onehot = torch.zeros_like(logits[i])
            onehot[pos, t["labels"][assigned[pos]]] = 1.0
            focal = sigmoid_focal_loss(logits[i][valid], onehot[valid], alpha=0.25, gamma=2.0, reduction="sum")
            cls_losses.append(focal)
            decoded = self.coder.decode(anchor_boxes[pos], deltas[i][pos], regularize=False)
            box_losses.append(self.box_loss(decoded, t["boxes"][assigned[pos]], tau=self.tau))
            pos_levels.append(anchor_levels[pos])
            num_pos += pos.numel()
        norm = max(num_pos, 1)
        per_box, levels = torch.cat(box_losses), torch.cat(pos_levels)
        if self.box_loss_reduction == "per_level":
            box = per_level_mean(per_box, levels, len(self.strides))
        else:
            box = per_box.sum() / norm
        box = box + deltas.sum() * 0  # every output stays in the graph, positives or not
        return {"loss_cls": torch.stack(cls_losses).sum() / norm, "loss_bbox": box * self.box_loss_weight}

    @torch.no_grad()
    def predict(self, batch, sizes):
        logits, deltas, anchors = self.head(batch)
        results = []
        for i in range(batch.shape[0]):
            boxes, scores, labels = [], [], []
            for lvl_logits, lvl_deltas, lvl_anchors in zip(logits, deltas, anchors):
                prob = lvl_logits[i].sigmoid()  # (HWA, C)
                cls_score, idx, cls = top_scoring_candidates(prob, self.score_threshold, self.nms_pre)
                boxes.append(self.coder.decode(anchors_as_boxes(lvl_anchors[idx]), lvl_deltas[i][idx]))
                scores.append(cls_score)
                labels.append(cls)
            results.append(
                multiclass_rotated_nms(
                    torch.cat(boxes), torch.cat(scores), torch.cat(labels),
                    iou_threshold=self.nms_iou, max_per_image=self.max_per_image,
                )
            )
        return results


def build_rotated_retinanet(backbone: DenseSwin, num_classes: int, **options) -> RotatedRetinaNet:
    """Rotated RetinaNet + KLD on ``backbone`` (SPEC §5). ``options``: see :class:`RotatedRetinaNet`
    (``box_loss="gwd"`` for GWD; smaller ``fpn_channels``/``head_channels`` for tests)."""
    return RotatedRetinaNet(backbone, num_classes, **options)


__all__ = [
    "BOX_LOSS_REDUCTIONS",
    "RotatedRetinaNet",
    "anchors_as_boxes",
    "build_rotated_retinanet",
    "conv_tower",
    "per_level_mean",
]
