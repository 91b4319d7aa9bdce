"""Rotated boxes (cx, cy, w, h, theta): angle conventions and conversions to polygons and horizontal boxes.

Geometry, fixed for the whole package: image coordinates (x right, y *down*), theta in radians; the
box's w-side points along (cos theta, sin theta) and its h-side along (-sin theta, cos theta). With y
pointing down, a positive theta turns the box clockwise on screen (mmrotate's and OpenCV's sense).
torchvision's ``cxcywhr`` format turns counter-clockwise in degrees: ``r = -degrees(theta)``.

Two conventions (SPEC §7) name one representative of the four equivalent 5-tuples of a box:
  * ``"oc"``   (rotated RetinaNet + KLD): theta in (0, pi/2], no order between w and h.
  * ``"le90"`` (Oriented R-CNN, H2RBox-v2): theta in [-pi/2, pi/2) and w >= h (long edge first).
"""

from __future__ import annotations

import math

import torch

CONVENTIONS = ("oc", "le90")
_HALF_PI = math.pi / 2
_SNAP = 1e-9  # angles this close to an excluded interval end count as the other end


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown angle convention {convention!r}; valid: {', '.join(CONVENTIONS)}")


def wrap_angle(theta: torch.Tensor) -> torch.Tensor:
    """Angles modulo pi, into [-pi/2, pi/2) (a box turned by pi is the same box)."""
    return torch.remainder(theta + _HALF_PI, math.pi) - _HALF_PI


def regularize_boxes(boxes: torch.Tensor, convention: str) -> torch.Tensor:
    """The same boxes (..., 5), rewritten in ``convention`` (see module docstring). Differentiable."""
    _check_convention(convention)
    cx, cy, w, h, theta = boxes.unbind(-1)
    if convention == "le90":
        swap = w < h
        w, h = torch.where(swap, h, w), torch.where(swap, w, h)
        theta = wrap_angle(torch.where(swap, theta + _HALF_PI, theta))
        # Rounding can leave pi/2 - 1e-16, which is the excluded end: snap it to -pi/2.
        theta = torch.where(theta >= _HALF_PI - _SNAP, theta - math.pi, theta)
    else:
        # theta - k*pi/2 lands in (0, pi/2]; each odd quarter turn exchanges the roles of w and h.
        # The small shift sends 1e-17 (rounding noise around 0, the excluded end) to pi/2.
        k = torch.ceil(theta / _HALF_PI - _SNAP) - 1
        theta = theta - k * _HALF_PI
        swap = torch.remainder(k, 2) == 1
        w, h = torch.where(swap, h, w), torch.where(swap, w, h)
    return torch.stack((cx, cy, w, h, theta), dim=-1)


def box_corners(boxes: torch.Tensor) -> torch.Tensor:
    """Corners (..., 4, 2) of boxes (..., 5), in the order (-w,-h), (+w,-h), (+w,+h), (-w,+h) of the box frame."""
    cx, cy, w, h, theta = boxes.unbind(-1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    sx = torch.tensor([-0.5, 0.5, 0.5, -0.5], dtype=boxes.dtype, device=boxes.device)
    sy = torch.tensor([-0.5, -0.5, 0.5, 0.5], dtype=boxes.dtype, device=boxes.device)
    lx, ly = w[..., None] * sx, h[..., None] * sy
    x = cx[..., None] + lx * cos[..., None] - ly * sin[..., None]
    y = cy[..., None] + lx * sin[..., None] + ly * cos[..., None]
    return torch.stack((x, y), dim=-1)


def boxes_to_polygons(boxes: torch.Tensor) -> torch.Tensor:
    """Rotated boxes (N, 5) -> 4-point polygons (N, 8) as x1 y1 x2 y2 x3 y3 x4 y4 (DOTA's layout)."""
    return box_corners(boxes).flatten(-2)


# Candidate directions for the minimum-area rectangle: every pair of the 4 points. A hull edge is
# among them, and the smallest enclosing rectangle always has a side along a hull edge.
_PAIRS = ((0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3))


def polygons_to_boxes(polygons: torch.Tensor, convention: str = "le90") -> torch.Tensor:
    """4-point polygons (N, 8) -> their minimum-area enclosing rotated boxes (N, 5) in ``convention``.

    A rectangle comes back exactly; any other quadrilateral gets the smallest rectangle around it
    (what OpenCV's ``minAreaRect`` gives, which DOTA pipelines use). Degenerate inputs (a segment,
    a point) give w and/or h = 0.
    """
    _check_convention(convention)
    pts = polygons.reshape(*polygons.shape[:-1], 4, 2)
    i, j = zip(*_PAIRS)
    d = pts[..., list(j), :] - pts[..., list(i), :]  # (..., 6, 2)
    length = d.norm(dim=-1)
    degenerate = length <= 1e-12 * (1.0 + pts.abs().amax(dim=(-1, -2)))[..., None]
    u = d / length.clamp_min(torch.finfo(pts.dtype).tiny)[..., None]
    u = torch.where(degenerate[..., None], torch.tensor([1.0, 0.0], dtype=pts.dtype, device=pts.device), u)
    v = torch.stack((-u[..., 1], u[..., 0]), dim=-1)
    a = torch.einsum("...pk,...dk->...dp", pts, u)  # (..., 6, 4) coordinates along u
    b = torch.einsum("...pk,...dk->...dp", pts, v)
    a_min, a_max = a.amin(-1), a.amax(-1)
    b_min, b_max = b.amin(-1), b.amax(-1)
    area = (a_max - a_min) * (b_max - b_min)
    # Degenerate directions only win when every direction is degenerate (all points coincide).
    area = torch.where(degenerate & ~degenerate.all(-1, keepdim=True), torch.inf, area)
    best = area.argmin(-1, keepdim=True)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.gather(-1, best).squeeze(-1)

    ub = u.gather(-2, best[..., None].expand(*best.shape, 2)).squeeze(-2)
    vb = torch.stack((-ub[..., 1], ub[..., 0]), dim=-1)
    ca, cb = (pick(a_min) + pick(a_max)) / 2, (pick(b_min) + pick(b_max)) / 2
    center = ub * ca[..., None] + vb * cb[..., None]
    w, h = pick(a_max) - pick(a_min), pick(b_max) - pick(b_min)
    theta = torch.atan2(ub[..., 1], ub[..., 0])
    boxes = torch.stack((center[..., 0], center[..., 1], w, h, theta), dim=-1)
    return regularize_boxes(boxes, convention)


def boxes_to_hboxes(boxes: torch.Tensor) -> torch.Tensor:
    """Circumscribed horizontal boxes (..., 4) as x1 y1 x2 y2 of rotated boxes (..., 5)."""
    cx, cy, w, h, theta = boxes.unbind(-1)
    cos, sin = torch.cos(theta).abs(), torch.sin(theta).abs()
    ex, ey = (w * cos + h * sin) / 2, (w * sin + h * cos) / 2
    return torch.stack((cx - ex, cy - ey, cx + ex, cy + ey), dim=-1)


def hboxes_to_boxes(hboxes: torch.Tensor, convention: str = "le90") -> torch.Tensor:
    """Horizontal boxes (..., 4) x1 y1 x2 y2 -> rotated boxes (..., 5) with theta 0, then ``convention``."""
    x1, y1, x2, y2 = hboxes.unbind(-1)
    boxes = torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, torch.zeros_like(x1)), dim=-1)
    return regularize_boxes(boxes, convention)


def polygons_to_hboxes(polygons: torch.Tensor) -> torch.Tensor:
    """Horizontal boxes (..., 4) x1 y1 x2 y2 enclosing polygons (..., 2k)."""
    xs, ys = polygons[..., 0::2], polygons[..., 1::2]
    return torch.stack((xs.amin(-1), ys.amin(-1), xs.amax(-1), ys.amax(-1)), dim=-1)


def to_torchvision_cxcywhr(boxes: torch.Tensor) -> torch.Tensor:
    """Our boxes (..., 5) -> torchvision ``cxcywhr`` (angle in degrees, counter-clockwise on screen)."""
    return torch.cat((boxes[..., :4], torch.rad2deg(-boxes[..., 4:5])), dim=-1)


def from_torchvision_cxcywhr(boxes: torch.Tensor, convention: str = "le90") -> torch.Tensor:
    """torchvision ``cxcywhr`` boxes (..., 5) -> our boxes in ``convention``."""
    return regularize_boxes(torch.cat((boxes[..., :4], -torch.deg2rad(boxes[..., 4:5])), dim=-1), convention)


def flip_boxes(boxes: torch.Tensor, image_size: tuple[int, int], direction: str, convention: str) -> torch.Tensor:
    """Boxes (N, 5) of an image of size (H, W) after flipping it.

    ``direction``: "horizontal" (x -> W - x), "vertical" (y -> H - y) or "diagonal" (both: a half turn).
    A mirror negates the angle; the half turn keeps it.
    """
    height, width = image_size
    cx, cy, w, h, theta = boxes.unbind(-1)
    if direction == "horizontal":
        cx, theta = width - cx, -theta
    elif direction == "vertical":
        cy, theta = height - cy, -theta
    elif direction == "diagonal":
        cx, cy = width - cx, height - cy
    else:
        raise ValueError(f"unknown flip direction {direction!r}; valid: horizontal, vertical, diagonal")
    return regularize_boxes(torch.stack((cx, cy, w, h, theta), dim=-1), convention)


def box_areas(boxes: torch.Tensor) -> torch.Tensor:
    """Areas (...,) of rotated boxes (..., 5)."""
    return boxes[..., 2] * boxes[..., 3]


__all__ = [
    "CONVENTIONS",
    "box_areas",
    "box_corners",
    "boxes_to_hboxes",
    "boxes_to_polygons",
    "flip_boxes",
    "from_torchvision_cxcywhr",
    "hboxes_to_boxes",
    "polygons_to_boxes",
    "polygons_to_hboxes",
    "regularize_boxes",
    "to_torchvision_cxcywhr",
    "wrap_angle",
]
