"""Box coders: regression targets relative to anchors/proposals, and the PSC angle code.

* ``DeltaXYWHACoder``: (dx, dy, dw, dh, dtheta) against a rotated reference box (rotated RetinaNet,
  Oriented R-CNN's box head). ``proj_xy`` measures the centre shift in the reference's own frame;
  ``edge_swap`` picks, of the target's two (w, h, theta) forms, the one with the smaller turn.
* ``MidpointOffsetCoder``: Oriented R-CNN's RPN code (dx, dy, dw, dh, d_alpha, d_beta) against a
  horizontal anchor: the target's circumscribed box plus where two of its vertices touch that box.
* ``PSCCoder``: phase-shifting code of an angle with period pi: cos(2 theta + 2 pi k / N), k < N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from monatune.ops.rotated_boxes import box_corners, regularize_boxes, wrap_angle

_MAX_LOG_RATIO = abs(math.log(16.0 / 1000))  # mmdet's wh_ratio_clip: sides change at most 62.5x


@dataclass(frozen=True)
class DeltaXYWHACoder:
    """Deltas (N, 5) between reference boxes (N, 5) and target boxes (N, 5); see module docstring."""

    convention: str = "le90"
    proj_xy: bool = False
    edge_swap: bool = False
    means: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    stds: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)

    def encode(self, refs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = regularize_boxes(targets, self.convention)
        px, py, pw, ph, pa = refs.unbind(-1)
        gx, gy, gw, gh, ga = targets.unbind(-1)
        ddx, ddy = gx - px, gy - py
        if self.proj_xy:
            cos, sin = torch.cos(pa), torch.sin(pa)
            ddx, ddy = ddx * cos + ddy * sin, -ddx * sin + ddy * cos
        da = wrap_angle(ga - pa)
        if self.edge_swap:
            # The target turned a quarter with w and h exchanged is the same box: take the smaller turn.
            da2 = wrap_angle(ga - pa + math.pi / 2)
            swap = da2.abs() < da.abs()
            gw, gh = torch.where(swap, gh, gw), torch.where(swap, gw, gh)
            da = torch.where(swap, da2, da)
        deltas = torch.stack((ddx / pw, ddy / ph, torch.log(gw / pw), torch.log(gh / ph), da), dim=-1)
        return (deltas - deltas.new_tensor(self.means)) / deltas.new_tensor(self.stds)

    def decode(self, refs: torch.Tensor, deltas: torch.Tensor, *, regularize: bool = True) -> torch.Tensor:
        """Boxes (N, 5); ``regularize=False`` keeps the raw 5-tuple (for losses invariant to the form)."""
        deltas = deltas * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        dx, dy, dw, dh, da = deltas.unbind(-1)
        px, py, pw, ph, pa = refs.unbind(-1)
        dw, dh = dw.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO), dh.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
        sx, sy = dx * pw, dy * ph
        if self.proj_xy:
            cos, sin = torch.cos(pa), torch.sin(pa)
            sx, sy = sx * cos - sy * sin, sx * sin + sy * cos
        boxes = torch.stack((px + sx, py + sy, pw * dw.exp(), ph * dh.exp(), pa + da), dim=-1)
        return regularize_boxes(boxes, self.convention) if regularize else boxes


@dataclass(frozen=True)
class MidpointOffsetCoder:
    """Oriented R-CNN's midpoint-offset code: anchors (N, 4) x1y1x2y2 <-> rotated boxes (N, 5).

    A rectangle touches its circumscribed box (x, y, w, h) at four vertices: v1 = (x + a, y - h/2) on
    the top side, v2 = (x + w/2, y + b) on the right, and v3, v4 opposite. The code is
    ((x - ax)/aw, (y - ay)/ah, log(w/aw), log(h/ah), a/w, b/h). A horizontal box touches each side
    along a whole edge; its top vertex is then the rightmost and its right vertex the lowest.
    """

    convention: str = "le90"
    means: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    stds: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 0.5, 0.5)

    def encode(self, anchors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        corners = box_corners(targets)  # (N, 4, 2)
        xs, ys = corners[..., 0], corners[..., 1]
        x1, y1, x2, y2 = xs.amin(-1), ys.amin(-1), xs.amax(-1), ys.amax(-1)
        gx, gy, gw, gh = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        tol = 1e-6 * (gw + gh + 1)[:, None]
        top = torch.where(ys <= y1[:, None] + tol, xs, torch.full_like(xs, -torch.inf)).argmax(-1, keepdim=True)
        right = torch.where(xs >= x2[:, None] - tol, ys, torch.full_like(ys, -torch.inf)).argmax(-1, keepdim=True)
        alpha = xs.gather(-1, top).squeeze(-1) - gx
        beta = ys.gather(-1, right).squeeze(-1) - gy
        ax, ay = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
        aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        tiny = torch.finfo(targets.dtype).tiny
        deltas = torch.stack(
            (
                (gx - ax) / aw,
                (gy - ay) / ah,
                torch.log(gw.clamp_min(tiny) / aw),
                torch.log(gh.clamp_min(tiny) / ah),
                alpha / gw.clamp_min(tiny),
                beta / gh.clamp_min(tiny),
            ),
            dim=-1,
        )
        return (deltas - deltas.new_tensor(self.means)) / deltas.new_tensor(self.stds)

    def decode(self, anchors: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        """Rotated boxes (N, 5) in ``convention``; the decoded parallelogram is made a rectangle by
        stretching its shorter diagonal to the length of the longer (the Oriented R-CNN paper)."""
        deltas = deltas * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        dx, dy, dw, dh, da, db = deltas.unbind(-1)
        ax, ay = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
        aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        w = aw * dw.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO).exp()
        h = ah * dh.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO).exp()
        x, y = ax + dx * aw, ay + dy * ah
        alpha, beta = da.clamp(-0.5, 0.5) * w, db.clamp(-0.5, 0.5) * h
        d1 = torch.stack((alpha, -h / 2), dim=-1)  # v1 - centre
        d2 = torch.stack((w / 2, beta), dim=-1)  # v2 - centre
        n1, n2 = d1.norm(dim=-1, keepdim=True), d2.norm(dim=-1, keepdim=True)
        longest = torch.maximum(n1, n2)
        tiny = torch.finfo(deltas.dtype).tiny
        d1, d2 = d1 * longest / n1.clamp_min(tiny), d2 * longest / n2.clamp_min(tiny)
        side_w, side_h = d2 - d1, -(d1 + d2)  # edges v1 -> v2 and v2 -> v3 of the rectangle
        boxes = torch.stack(
            (x, y, side_w.norm(dim=-1), side_h.norm(dim=-1), torch.atan2(side_w[:, 1], side_w[:, 0])), dim=-1
        )
        return regularize_boxes(boxes, self.convention)


@dataclass(frozen=True)
class PSCCoder:
    """Phase-shifting coder (PSC, Yu & Da, CVPR 2023) for angles of period pi, ``num_steps`` phases."""

    num_steps: int = 3

    def _phases(self, like: torch.Tensor) -> torch.Tensor:
        return 2 * math.pi * torch.arange(self.num_steps, dtype=like.dtype, device=like.device) / self.num_steps

    def encode(self, theta: torch.Tensor) -> torch.Tensor:
        """Angles (...,) -> codes (..., num_steps)."""
        return torch.cos(2 * theta[..., None] + self._phases(theta))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (..., num_steps) -> angles (...,) in [-pi/2, pi/2]. Differentiable (through atan2)."""
        phases = self._phases(codes)
        s = (codes * torch.sin(phases)).sum(-1)
        c = (codes * torch.cos(phases)).sum(-1)
        return torch.atan2(-s, c) / 2


__all__ = ["DeltaXYWHACoder", "MidpointOffsetCoder", "PSCCoder"]
