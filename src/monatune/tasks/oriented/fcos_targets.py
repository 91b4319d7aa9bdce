"""FCOS-style point assignment to rotated boxes (the H2RBox-v2 head's targets).

A point of stride s is positive for a box when it lies inside the box, within 1.5 s of its centre
(both measured in the box's own frame: "centre sampling"), and the largest of its four distances
to the box sides falls in the level's range; of several such boxes the smallest wins.
"""

from __future__ import annotations

from typing import Sequence

import torch

DEFAULT_REGRESS_RANGES = ((-1.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, 1e8))


def level_points(
    sizes: Sequence[tuple[int, int]], strides: Sequence[int], device: torch.device, dtype: torch.dtype = torch.float32
) -> list[torch.Tensor]:
    """Cell centres (H_l * W_l, 2) as (x, y) per level, row-major."""
    out = []
    for (h, w), s in zip(sizes, strides):
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * s
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        out.append(torch.stack((x.flatten(), y.flatten()), dim=1))
    return out


def fcos_rotated_targets(
    points: torch.Tensor,
    point_strides: torch.Tensor,
    point_ranges: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    radius: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets of all points of one image.

    points (P, 2); point_strides (P,); point_ranges (P, 2); boxes (G, 5); labels (G,).
    Returns labels (P,) (``num_classes`` = background), distances (P, 4) as (left, top, right,
    bottom) in the box frame divided by the point's stride, and the matched box index (P,) (-1: none).
    """
    num_points = points.shape[0]
    if boxes.shape[0] == 0:
        return (
            torch.full((num_points,), num_classes, dtype=torch.long, device=points.device),
            points.new_zeros((num_points, 4)),
            torch.full((num_points,), -1, dtype=torch.long, device=points.device),
        )
    cos, sin = torch.cos(boxes[:, 4]), torch.sin(boxes[:, 4])
    d = points[:, None, :] - boxes[None, :, :2]  # (P, G, 2)
    ox = d[..., 0] * cos + d[..., 1] * sin
    oy = -d[..., 0] * sin + d[..., 1] * cos
    half_w, half_h = boxes[:, 2] / 2, boxes[:, 3] / 2
    dist = torch.stack((half_w + ox, half_h + oy, half_w - ox, half_h - oy), dim=-1)  # (P, G, 4)
    inside = dist.amin(-1) > 0
    near_centre = (ox.abs() < radius * point_strides[:, None]) & (oy.abs() < radius * point_strides[:, None])
    reach = dist.amax(-1)
    in_range = (reach >= point_ranges[:, :1]) & (reach <= point_ranges[:, 1:])
    area = (boxes[:, 2] * boxes[:, 3]).expand(num_points, -1)
    area = torch.where(inside & near_centre & in_range, area, torch.full_like(area, torch.inf))
    best_area, best = area.min(dim=1)
    matched = torch.where(torch.isinf(best_area), -1, best)
    out_labels = torch.where(matched >= 0, labels[best], num_classes)
    distances = dist[torch.arange(num_points, device=points.device), best] / point_strides[:, None]
    return out_labels, distances, matched


def centerness(distances: torch.Tensor) -> torch.Tensor:
    """FCOS centre-ness (N,) of (left, top, right, bottom) distances (N, 4)."""
    lr, tb = distances[:, 0::2], distances[:, 1::2]
    ratio = (lr.amin(-1) / lr.amax(-1).clamp_min(1e-12)) * (tb.amin(-1) / tb.amax(-1).clamp_min(1e-12))
    return ratio.clamp_min(0).sqrt()


__all__ = ["DEFAULT_REGRESS_RANGES", "centerness", "fcos_rotated_targets", "level_points"]
