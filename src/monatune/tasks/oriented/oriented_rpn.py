"""Oriented RPN (Oriented R-CNN, Xie et al. ICCV 2021): horizontal anchors, midpoint-offset boxes.

Per FPN level: 3x3 conv + ReLU, then 1x1 convs for objectness (A) and the six midpoint-offset
deltas (6A). Anchors (scale 8, ratios 0.5/1/2) are matched to targets' circumscribed horizontal
boxes (IoU >= 0.7 positive, < 0.3 negative, each target's best anchors if >= 0.3); 256 anchors per
image are sampled (half positive at most). Proposals: the best ``nms_pre`` per level, decoded to
rotated boxes, NMS at IoU 0.8 on their horizontal boxes per level, the best ``max_proposals`` kept.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, box_iou

from monatune.ops.rotated_boxes import boxes_to_hboxes
from monatune.tasks.oriented.assign import horizontal_anchors, max_iou_assign, sample_assigned
from monatune.tasks.oriented.coders import MidpointOffsetCoder


class OrientedRPN(nn.Module):
    """``forward(features, targets=None) -> (proposals: list of (P_i, 5) le90, losses: dict)``."""

    def __init__(
        self,
        channels: int,
        strides: Sequence[int],
        *,
        scales: Sequence[float] = (8.0,),
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
        pos_iou: float = 0.7,
        neg_iou: float = 0.3,
        min_pos_iou: float = 0.3,
        num_samples: int = 256,
        pos_fraction: float = 0.5,
        nms_pre: int = 2000,
        max_proposals: int = 2000,
        nms_iou: float = 0.8,
        smooth_l1_beta: float = 1.0 / 9.0,
    ) -> None:
        super().__init__()
        self.strides, self.scales, self.ratios = list(strides), list(scales), list(ratios)
        num_anchors = len(self.scales) * len(self.ratios)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.cls = nn.Conv2d(channels, num_anchors, 1)
        self.reg = nn.Conv2d(channels, num_anchors * 6, 1)
        for conv in (self.conv, self.cls, self.reg):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        self.coder = MidpointOffsetCoder()
        self.pos_iou, self.neg_iou, self.min_pos_iou = pos_iou, neg_iou, min_pos_iou
        self.num_samples, self.pos_fraction = num_samples, pos_fraction
        self.nms_pre, self.max_proposals, self.nms_iou = nms_pre, max_proposals, nms_iou
        self.beta = smooth_l1_beta

    def forward(
        self, features: Sequence[torch.Tensor], targets: Sequence[dict] | None = None
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        b = features[0].shape[0]
        logits, deltas = [], []
        for f in features:
            x = F.relu(self.conv(f))
            # Losses and box decoding in float32, also under fp16 autocast.
            logits.append(self.cls(x).permute(0, 2, 3, 1).reshape(b, -1).float())
            deltas.append(self.reg(x).permute(0, 2, 3, 1).reshape(b, -1, 6).float())
        anchors = horizontal_anchors(
            [f.shape[-2:] for f in features], self.strides, self.scales, self.ratios,
            device=features[0].device,
        )
        proposals = [self._proposals(i, logits, deltas, anchors) for i in range(b)]
        losses = {}
        if targets is not None:
            losses = self._losses(torch.cat(logits, 1), torch.cat(deltas, 1), torch.cat(anchors), targets)
        return proposals, losses

    @torch.no_grad()
    def _proposals(self, i: int, logits, deltas, anchors) -> torch.Tensor:
        boxes, scores, levels = [], [], []
        for lvl, (lg, dl, an) in enumerate(zip(logits, deltas, anchors)):
            score = lg[i]
            top = score.topk(min(self.nms_pre, score.numel())).indices
            decoded = self.coder.decode(an[top], dl[i][top])
            ok = (decoded[:, 2] > 0) & (decoded[:, 3] > 0)
            boxes.append(decoded[ok])
            scores.append(score[top][ok])
            levels.append(torch.full((int(ok.sum()),), lvl, device=score.device))
        boxes, scores, levels = torch.cat(boxes), torch.cat(scores), torch.cat(levels)
        keep = batched_nms(boxes_to_hboxes(boxes), scores, levels, self.nms_iou)
        keep = keep[scores[keep].argsort(descending=True)][: self.max_proposals]
        return boxes[keep].detach()

    def _losses(self, logits, deltas, anchors, targets) -> dict[str, torch.Tensor]:
        cls_terms, box_terms, num_samples = [], [], 0
        for i, t in enumerate(targets):
            iou = box_iou(boxes_to_hboxes(t["boxes"]), anchors)
            assigned = max_iou_assign(
                iou, pos_threshold=self.pos_iou, neg_threshold=self.neg_iou, min_pos_iou=self.min_pos_iou
            )
            pos, neg = sample_assigned(assigned, self.num_samples, self.pos_fraction)
            sampled = torch.cat((pos, neg))
            labels = torch.cat((torch.ones_like(pos), torch.zeros_like(neg))).to(logits.dtype)
            cls_terms.append(F.binary_cross_entropy_with_logits(logits[i][sampled], labels, reduction="sum"))
            if pos.numel():
                goal = self.coder.encode(anchors[pos], t["boxes"][assigned[pos]])
                box_terms.append(F.smooth_l1_loss(deltas[i][pos], goal, beta=self.beta, reduction="sum"))
            num_samples += sampled.numel()
        norm = max(num_samples, 1)
        box = torch.stack(box_terms).sum() if box_terms else deltas.sum() * 0
        return {"loss_rpn_cls": torch.stack(cls_terms).sum() / norm, "loss_rpn_bbox": box / norm}


__all__ = ["OrientedRPN"]
