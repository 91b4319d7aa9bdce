"""Rotated-box IoU in pure PyTorch (any device): the convex intersection of two rectangles, batched.

The intersection polygon of two convex quadrilaterals has its vertices among: the corners of each box
lying inside the other (4 + 4) and the crossings of their edges (4 x 4). All 24 candidates are computed
for every pair at once, the valid ones are ordered by angle around their mean, and the shoelace
formula gives the area. Pairs whose circumscribed circles do not meet are skipped (IoU 0), and the
rest are processed in chunks so memory stays bounded for thousands of boxes.
"""

from __future__ import annotations

import torch

from monatune.ops.rotated_boxes import box_corners


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _inside(points: torch.Tensor, box: torch.Tensor, tol: torch.Tensor) -> torch.Tensor:
    """Whether points (P, K, 2) (relative to the box's own frame origin) lie in box (P, 5) with centre at 0."""
    cos, sin = torch.cos(box[:, 4])[:, None], torch.sin(box[:, 4])[:, None]
    lx = points[..., 0] * cos + points[..., 1] * sin
    ly = -points[..., 0] * sin + points[..., 1] * cos
    return (lx.abs() <= box[:, None, 2] / 2 + tol) & (ly.abs() <= box[:, None, 3] / 2 + tol)


def intersection_areas(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Intersection areas (P,) of box pairs (P, 5), (P, 5)."""
    # Work relative to each pair's first centre: large image coordinates then cost no float precision.
    offset = boxes2[:, :2] - boxes1[:, :2]
    b1 = torch.cat((torch.zeros_like(offset), boxes1[:, 2:]), dim=1)
    b2 = torch.cat((offset, boxes2[:, 2:]), dim=1)
    c1, c2 = box_corners(b1), box_corners(b2)  # (P, 4, 2)
    scale = torch.maximum(boxes1[:, 2:4].amax(1), boxes2[:, 2:4].amax(1)) + offset.abs().amax(1)
    tol = (1e-6 * scale)[:, None]
    in1 = _inside(c1 - offset[:, None], b2, tol)  # corners of box 1 inside box 2
    in2 = _inside(c2, b1, tol)

    r = torch.roll(c1, -1, dims=1) - c1  # edges of box 1 (P, 4, 2)
    s = torch.roll(c2, -1, dims=1) - c2
    p, q, r, s = c1[:, :, None], c2[:, None], r[:, :, None], s[:, None]  # broadcast to (P, 4, 4, 2)
    den = _cross(r, s)
    qp = q - p
    safe = torch.where(den.abs() > 1e-12 * scale[:, None, None] ** 2, den, torch.ones_like(den))
    t, u = _cross(qp, s) / safe, _cross(qp, r) / safe
    eps = 1e-9
    hit = (den.abs() > 1e-12 * scale[:, None, None] ** 2) & (t >= -eps) & (t <= 1 + eps) & (u >= -eps) & (u <= 1 + eps)
    crossings = p + t[..., None] * r

    pts = torch.cat((c1, c2, crossings.flatten(1, 2)), dim=1)  # (P, 24, 2)
    valid = torch.cat((in1, in2, hit.flatten(1, 2)), dim=1)
    count = valid.sum(1)
    centre = (pts * valid[..., None]).sum(1) / count.clamp_min(1)[:, None]
    rel = pts - centre[:, None]
    angle = torch.where(valid, torch.atan2(rel[..., 1], rel[..., 0]), torch.full_like(rel[..., 0], 10.0))
    order = angle.argsort(dim=1)
    rel = rel.gather(1, order[..., None].expand(-1, -1, 2))
    valid = valid.gather(1, order)
    # Invalid candidates sorted last become copies of the first vertex: they add no area.
    rel = torch.where(valid[..., None], rel, rel[:, :1])
    area = _cross(rel, torch.roll(rel, -1, dims=1)).sum(1).abs() / 2
    return torch.where(count >= 3, area, torch.zeros_like(area))


def _iou_pairs(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float) -> torch.Tensor:
    inter = intersection_areas(boxes1, boxes2)
    union = boxes1[:, 2] * boxes1[:, 3] + boxes2[:, 2] * boxes2[:, 3] - inter
    return torch.where(union > eps, inter / union.clamp_min(eps), torch.zeros_like(inter))


def rotated_box_iou(
    boxes1: torch.Tensor, boxes2: torch.Tensor, *, eps: float = 1e-9, chunk_pairs: int = 1 << 16
) -> torch.Tensor:
    """IoU matrix (N, M) between rotated boxes (N, 5) and (M, 5), any convention, any device.

    Boxes with zero area have IoU 0 with everything. Not differentiable in a useful way (it is for
    assignment and NMS); the result has the dtype of ``boxes1`` (float32 for integer boxes).
    """
    if not boxes1.is_floating_point():
        boxes1 = boxes1.float()
    n, m = boxes1.shape[0], boxes2.shape[0]
    out = boxes1.new_zeros((n, m))
    if n == 0 or m == 0:
        return out
    with torch.no_grad():
        boxes2 = boxes2.to(boxes1.dtype)
        radius1 = boxes1[:, 2:4].norm(dim=1) / 2
        radius2 = boxes2[:, 2:4].norm(dim=1) / 2
        dist = torch.cdist(boxes1[:, :2], boxes2[:, :2], compute_mode="donot_use_mm_for_euclid_dist")
        i, j = torch.nonzero(dist <= radius1[:, None] + radius2[None] + 1e-6, as_tuple=True)
        for start in range(0, i.numel(), chunk_pairs):
            ii, jj = i[start : start + chunk_pairs], j[start : start + chunk_pairs]
            out[ii, jj] = _iou_pairs(boxes1[ii], boxes2[jj], eps)
    return out


def rotated_box_iou_pairwise(boxes1: torch.Tensor, boxes2: torch.Tensor, *, eps: float = 1e-9) -> torch.Tensor:
    """IoU (P,) of matching rows of boxes1 (P, 5) and boxes2 (P, 5)."""
    if boxes1.shape[0] == 0:
        return boxes1.new_zeros((0,))
    with torch.no_grad():
        return _iou_pairs(boxes1, boxes2.to(boxes1.dtype), eps)


__all__ = ["intersection_areas", "rotated_box_iou", "rotated_box_iou_pairwise"]
