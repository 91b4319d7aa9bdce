"""Oriented R-CNN (SPEC §5; "le90" angles): oriented RPN -> rotated RoIAlign -> rotated box head.

The RoI head matches proposals (plus the targets themselves) to targets by rotated IoU (>= 0.5
positive, < 0.5 background), samples 512 RoIs per image with at most a quarter positive, pools
7x7 features from the FPN level the RoI size picks, and runs two shared 1024-d FC layers into a
(C + 1)-way softmax classifier and a class-agnostic regressor of (dx, dy, dw, dh, dtheta) measured
in the proposal's frame (target stds 0.1, 0.1, 0.2, 0.2, 0.1). Losses: cross-entropy, smooth L1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from monatune.backbones.dense_swin import DenseSwin
from monatune.ops.nms import multiclass_rotated_nms
from monatune.ops.roi_align import multilevel_rotated_roi_align
from monatune.ops.rotated_iou import rotated_box_iou
from monatune.tasks.oriented.assign import max_iou_assign, sample_assigned
from monatune.tasks.oriented.coders import DeltaXYWHACoder
from monatune.tasks.oriented.common import OrientedDetector, build_fpn
from monatune.tasks.oriented.oriented_rpn import OrientedRPN


class RotatedBoxHead(nn.Module):
    """(K, C, S, S) pooled RoI features -> class logits (K, num_classes + 1), deltas (K, 5)."""

    def __init__(self, channels: int, num_classes: int, roi_size: int = 7, fc_channels: int = 1024) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels * roi_size * roi_size, fc_channels)
        self.fc2 = nn.Linear(fc_channels, fc_channels)
        self.cls = nn.Linear(fc_channels, num_classes + 1)
        self.reg = nn.Linear(fc_channels, 5)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.reg.weight, std=0.001)
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.reg.bias)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.fc2(F.relu(self.fc1(pooled.flatten(1)))))
        return self.cls(x).float(), self.reg(x).float()  # float32 losses/decoding under autocast


class OrientedRCNN(OrientedDetector):
    """Oriented R-CNN; build it with :func:`build_oriented_rcnn`. Loss keys: loss_rpn_cls,
    loss_rpn_bbox, loss_cls, loss_bbox."""

    convention = "le90"

    def __init__(
        self,
        backbone: DenseSwin,
        num_classes: int,
        *,
        fpn_channels: int = 256,
        fc_channels: int = 1024,
        roi_size: int = 7,
        sampling_ratio: int = 2,
        num_roi_levels: int = 4,
        finest_scale: float = 56.0,
        roi_samples: int = 512,
        roi_pos_fraction: float = 0.25,
        roi_iou: float = 0.5,
        score_threshold: float = 0.05,
        nms_iou: float = 0.1,
        max_per_image: int = 2000,
        rpn_options: dict | None = None,
    ) -> None:
        neck, strides = build_fpn(backbone, fpn_channels, "maxpool")
        super().__init__(backbone, neck, strides)
        self.num_classes = num_classes
        self.rpn = OrientedRPN(fpn_channels, strides, **(rpn_options or {}))
        self.box_head = RotatedBoxHead(fpn_channels, num_classes, roi_size, fc_channels)
        self.coder = DeltaXYWHACoder("le90", proj_xy=True, edge_swap=True, stds=(0.1, 0.1, 0.2, 0.2, 0.1))
        self.roi_size, self.sampling_ratio = roi_size, sampling_ratio
        self.num_roi_levels, self.finest_scale = num_roi_levels, finest_scale
        self.roi_samples, self.roi_pos_fraction, self.roi_iou = roi_samples, roi_pos_fraction, roi_iou
        self.score_threshold, self.nms_iou, self.max_per_image = score_threshold, nms_iou, max_per_image

    def _pool(self, feats: list[torch.Tensor], boxes_per_image: list[torch.Tensor]) -> torch.Tensor:
        rois = torch.cat(
            [torch.cat((torch.full_like(b[:, :1], i), b), dim=1) for i, b in enumerate(boxes_per_image)]
        )
        n = self.num_roi_levels
        return multilevel_rotated_roi_align(
            feats[:n], self.strides[:n], rois, self.roi_size, self.sampling_ratio, self.finest_scale
        )

    def compute_losses(self, batch, sizes, targets):
        feats = self.features(batch)
        proposals, losses = self.rpn(feats, targets)
        rois, labels, goals, pos_masks = [], [], [], []
        for props, t in zip(proposals, targets):
            candidates = torch.cat((props, t["boxes"].detach()))  # the targets themselves are RoIs too
            assigned = max_iou_assign(
                rotated_box_iou(t["boxes"], candidates),
                pos_threshold=self.roi_iou, neg_threshold=self.roi_iou, min_pos_iou=self.roi_iou,
                match_low_quality=False,
            )
            pos, neg = sample_assigned(assigned, self.roi_samples, self.roi_pos_fraction)
            chosen = torch.cat((pos, neg))
            rois.append(candidates[chosen])
            lab = torch.full((chosen.numel(),), self.num_classes, dtype=torch.long, device=batch.device)
            lab[: pos.numel()] = t["labels"][assigned[pos]]
            labels.append(lab)
            goal = torch.zeros((chosen.numel(), 5), device=batch.device)
            goal[: pos.numel()] = self.coder.encode(candidates[pos], t["boxes"][assigned[pos]])
            goals.append(goal)
            pos_masks.append(torch.arange(chosen.numel(), device=batch.device) < pos.numel())
        logits, deltas = self.box_head(self._pool(feats, rois))
        labels, goals, pos_mask = torch.cat(labels), torch.cat(goals), torch.cat(pos_masks)
        norm = max(labels.numel(), 1)
        losses["loss_cls"] = F.cross_entropy(logits, labels, reduction="sum") / norm
        losses["loss_bbox"] = F.smooth_l1_loss(deltas[pos_mask], goals[pos_mask], beta=1.0, reduction="sum") / norm
        return losses

    @torch.no_grad()
    def predict(self, batch, sizes):
        feats = self.features(batch)
        proposals, _ = self.rpn(feats)
        logits, deltas = self.box_head(self._pool(feats, proposals))
        results = []
        counts = [len(p) for p in proposals]
        for props, lg, dl in zip(proposals, logits.split(counts), deltas.split(counts)):
            boxes = self.coder.decode(props, dl)
            scores = lg.softmax(-1)[:, : self.num_classes]
            roi, cls = torch.nonzero(scores > self.score_threshold, as_tuple=True)
            results.append(
                multiclass_rotated_nms(
                    boxes[roi], scores[roi, cls], cls, iou_threshold=self.nms_iou, max_per_image=self.max_per_image
                )
            )
        return results


def build_oriented_rcnn(backbone: DenseSwin, num_classes: int, **options) -> OrientedRCNN:
    """Oriented R-CNN on ``backbone`` (SPEC §5). ``options``: see :class:`OrientedRCNN`; RPN settings
    go in ``rpn_options`` (see :class:`OrientedRPN`)."""
    return OrientedRCNN(backbone, num_classes, **options)


__all__ = ["OrientedRCNN", "RotatedBoxHead", "build_oriented_rcnn"]
