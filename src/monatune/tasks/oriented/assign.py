"""Anchors, max-IoU assignment and random sampling shared by the anchor-based oriented detectors."""

from __future__ import annotations

import math
from typing import Sequence

import torch

NEGATIVE = -1  # assignment value of a background anchor/proposal
IGNORED = -2  # between the thresholds: no loss at all


def horizontal_anchors(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    scales: Sequence[float],
    ratios: Sequence[float],
    *,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """Anchors x1y1x2y2 per level, each (H_l * W_l * A, 4) in (row, column, anchor) order.

    A = len(scales) * len(ratios); an anchor of scale s and ratio r (= h / w) on a level of stride
    t has w = t * s / sqrt(r), h = t * s * sqrt(r), centred on each cell's centre ((i + 0.5) * t).
    """
    out = []
    for (height, width), stride in zip(feature_sizes, strides):
        ws, hs = [], []
        for r in ratios:
            for s in scales:  # mmdet order: ratios outer, scales inner
                ws.append(stride * s / math.sqrt(r))
                hs.append(stride * s * math.sqrt(r))
        half = torch.tensor([ws, hs], dtype=dtype, device=device).T / 2  # (A, 2)
        ys = (torch.arange(height, dtype=dtype, device=device) + 0.5) * stride
        xs = (torch.arange(width, dtype=dtype, device=device) + 0.5) * stride
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack((cx, cy), dim=-1).reshape(-1, 1, 2)
        out.append(torch.cat((centres - half, centres + half), dim=-1).reshape(-1, 4))
    return out


def max_iou_assign(
    iou: torch.Tensor,
    *,
    pos_threshold: float,
    neg_threshold: float,
    min_pos_iou: float = 0.0,
    match_low_quality: bool = True,
) -> torch.Tensor:
    """Match each candidate to a target from an IoU matrix (G targets, K candidates).

    Returns (K,) int64: the target index for positives, ``NEGATIVE`` below ``neg_threshold``,
    ``IGNORED`` in between. With ``match_low_quality`` every target also claims the candidates with
    its highest IoU (if that IoU >= ``min_pos_iou``), so no target is left without a positive.
    """
    num_targets, num_candidates = iou.shape
    assigned = torch.full((num_candidates,), IGNORED, dtype=torch.long, device=iou.device)
    if num_candidates == 0:
        return assigned
    if num_targets == 0:
        return assigned.fill_(NEGATIVE)
    best_iou, best_target = iou.max(dim=0)
    assigned[(best_iou >= 0) & (best_iou < neg_threshold)] = NEGATIVE
    positive = best_iou >= pos_threshold
    assigned[positive] = best_target[positive]
    if match_low_quality:
        target_best = iou.max(dim=1, keepdim=True).values  # (G, 1)
        claims = (iou == target_best) & (target_best >= min_pos_iou) & (target_best > 0)
        # A candidate claimed by several targets goes to the last one (mmdet's loop order).
        order = torch.arange(num_targets, device=iou.device)[:, None]
        claimer = torch.where(claims, order, -1).amax(dim=0)
        assigned = torch.where(claimer >= 0, claimer, assigned)
    return assigned


def sample_assigned(
    assigned: torch.Tensor, num: int, pos_fraction: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random subset of an assignment: at most ``num * pos_fraction`` positives, negatives fill the rest.

    Returns (positive indices, negative indices), both int64.
    """
    pos = torch.nonzero(assigned >= 0).squeeze(1)
    neg = torch.nonzero(assigned == NEGATIVE).squeeze(1)
    num_pos = min(pos.numel(), int(num * pos_fraction))
    num_neg = min(neg.numel(), num - num_pos)
    pos = pos[torch.randperm(pos.numel(), generator=generator, device="cpu")[:num_pos].to(pos.device)]
    neg = neg[torch.randperm(neg.numel(), generator=generator, device="cpu")[:num_neg].to(neg.device)]
    return pos, neg


__all__ = ["IGNORED", "NEGATIVE", "horizontal_anchors", "max_iou_assign", "sample_assigned"]
