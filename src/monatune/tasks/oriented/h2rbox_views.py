"""H2RBox-v2's extra views and symmetry loss (Yu et al., NeurIPS 2023).

An object's angle must follow the view: turned by the view's angle in a rotated view, mirrored
(negated) in a top-to-bottom flipped one. Predicted angles are compared modulo pi ("snap"), so the
loss never fights the angle's periodicity. Two variants:

* ``v2p``, what the public code trains (SPEC §8.5): each batch is seen twice, as given and in one
  self-supervised view chosen per batch by :func:`choose_view`: turned by a random angle in
  pi * [0.25, 0.75] with probability 0.95 (zero fill, nearest pixel, as torchvision's ``rotate``),
  else flipped top-to-bottom; one smooth-L1 loss (beta 0.1), weight 0.2 (:func:`view_symmetry_loss`).
* ``v2``: three views (as given, turned with reflection padding, flipped) and two weighted losses
  (:func:`symmetry_loss`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from monatune.ops.rotated_boxes import wrap_angle

VIEWS = ("rotate", "flip")


def choose_view(
    rotation_prob: float, view_range: tuple[float, float], generator: torch.Generator | None = None
) -> tuple[str, float]:
    """The self-supervised view of one v2p batch: ``("rotate", angle)`` with probability
    ``rotation_prob``, angle uniform in pi * ``view_range``; else ``("flip", 0.0)`` (top-to-bottom).
    Draws from ``generator`` (default: torch's global one)."""
    if float(torch.rand(1, generator=generator)) < rotation_prob:
        low, high = view_range
        return "rotate", math.pi * (float(torch.rand(1, generator=generator)) * (high - low) + low)
    return "flip", 0.0


def rotate_images(
    batch: torch.Tensor, angle: float, padding_mode: str = "reflection", mode: str = "bilinear"
) -> torch.Tensor:
    """Batch (B, C, H, W) turned by ``angle`` radians about its centre (y down: positive is clockwise).

    A pixel at p in the input ends at c + R(angle) (p - c) in the output, c = (W/2, H/2). Pixels
    that come from outside the input read ``padding_mode`` ("zeros", "reflection", "border");
    ``mode``: "bilinear" or "nearest" interpolation.
    """
    b, _, h, w = batch.shape
    cos, sin = math.cos(angle), math.sin(angle)
    ys = torch.arange(h, dtype=batch.dtype, device=batch.device) + 0.5 - h / 2
    xs = torch.arange(w, dtype=batch.dtype, device=batch.device) + 0.5 - w / 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    # Output pixel p reads the input at c + R(-angle) (p - c).
    src_x, src_y = x * cos + y * sin + w / 2, -x * sin + y * cos + h / 2
    grid = torch.stack((2 * src_x / w - 1, 2 * src_y / h - 1), dim=-1).expand(b, h, w, 2)
    return F.grid_sample(batch, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def rotate_boxes(boxes: torch.Tensor, angle: float, image_size: tuple[int, int]) -> torch.Tensor:
    """Boxes (N, 5) of an image of size (H, W) after :func:`rotate_images` by ``angle`` (not regularised)."""
    h, w = image_size
    cos, sin = math.cos(angle), math.sin(angle)
    x, y = boxes[:, 0] - w / 2, boxes[:, 1] - h / 2
    centre = torch.stack((x * cos - y * sin + w / 2, x * sin + y * cos + h / 2), dim=1)
    return torch.cat((centre, boxes[:, 2:4], boxes[:, 4:] + angle), dim=1)


def vflip_boxes(boxes: torch.Tensor, height: int) -> torch.Tensor:
    """Boxes (N, 5) after flipping an image of height ``height`` top-to-bottom (not regularised)."""
    return torch.stack((boxes[:, 0], height - boxes[:, 1], boxes[:, 2], boxes[:, 3], -boxes[:, 4]), dim=1)


def symmetry_loss(
    angle_original: torch.Tensor,
    angle_rotated: torch.Tensor,
    angle_flipped: torch.Tensor,
    rotation: float,
    agnostic: torch.Tensor | None = None,
    *,
    rotation_weight: float = 1.0,
    flip_weight: float = 0.05,
    beta: float = 0.1,
) -> torch.Tensor:
    """Scalar: smooth-L1 (``beta``) of the angle errors, each per object (M,) and taken modulo pi.

    rotated - original should equal ``rotation``; flipped + original should equal 0. Objects of
    rotation-agnostic classes (``agnostic`` (M,) bool: round tanks, roundabouts) are left out.
    """
    d_rot = wrap_angle(angle_rotated - angle_original - rotation)
    d_flip = wrap_angle(angle_flipped + angle_original)
    if agnostic is not None:
        d_rot, d_flip = d_rot * ~agnostic, d_flip * ~agnostic
    zero = torch.zeros_like(d_rot)
    return rotation_weight * F.smooth_l1_loss(d_rot, zero, beta=beta) + flip_weight * F.smooth_l1_loss(
        d_flip, zero, beta=beta
    )


def view_symmetry_loss(
    angle_original: torch.Tensor,
    angle_view: torch.Tensor,
    view: str,
    rotation: float = 0.0,
    agnostic: torch.Tensor | None = None,
    *,
    weight: float = 0.2,
    beta: float = 0.1,
) -> torch.Tensor:
    """v2p's symmetry loss, scalar: ``weight`` x mean smooth-L1 (``beta``) of the angle errors (M,)
    modulo pi: view - original - ``rotation`` for ``view="rotate"``, view + original for "flip".
    Objects of rotation-agnostic classes (``agnostic`` (M,) bool) count with error 0."""
    if view not in VIEWS:
        raise ValueError(f"view: {view!r} is not one of {', '.join(VIEWS)}")
    error = angle_view - angle_original - rotation if view == "rotate" else angle_view + angle_original
    error = wrap_angle(error)
    if agnostic is not None:
        error = error * ~agnostic
    return weight * F.smooth_l1_loss(error, torch.zeros_like(error), beta=beta)


__all__ = [
    "VIEWS",
    "choose_view",
    "rotate_boxes",
    "rotate_images",
    "symmetry_loss",
    "view_symmetry_loss",
    "vflip_boxes",
]
