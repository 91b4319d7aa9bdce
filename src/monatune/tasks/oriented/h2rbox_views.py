"""H2RBox-v2's extra views and symmetry loss (Yu et al., NeurIPS 2023).

Each training batch is seen three times: as given, turned by a random angle about the image centre
(reflection padding), and flipped top-to-bottom. An object's angle must follow the view: turned by
the view's angle in the rotated view, mirrored (negated) in the flipped one. Predicted angles are
compared modulo pi ("snap"), so the loss never fights the angle's periodicity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from monatune.tasks.oriented.boxes import wrap_angle


def rotate_images(batch: torch.Tensor, angle: float, padding_mode: str = "reflection") -> torch.Tensor:
    """Batch (B, C, H, W) turned by ``angle`` radians about its centre (y down: positive is clockwise).

    A pixel at p in the input ends at c + R(angle) (p - c) in the output, c = (W/2, H/2).
    """
    b, _, h, w = batch.shape
    cos, sin = math.cos(angle), math.sin(angle)
    ys = torch.arange(h, dtype=batch.dtype, device=batch.device) + 0.5 - h / 2
    xs = torch.arange(w, dtype=batch.dtype, device=batch.device) + 0.5 - w / 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    # Output pixel p reads the input at c + R(-angle) (p - c).
    src_x, src_y = x * cos + y * sin + w / 2, -x * sin + y * cos + h / 2
    grid = torch.stack((2 * src_x / w - 1, 2 * src_y / h - 1), dim=-1).expand(b, h, w, 2)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


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


__all__ = ["rotate_boxes", "rotate_images", "symmetry_loss", "vflip_boxes"]
