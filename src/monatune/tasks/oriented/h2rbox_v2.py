"""H2RBox-v2 (SPEC §5, §8.5; "le90"): rotated boxes learnt from horizontal-box labels.

An FCOS-style head (4-conv GroupNorm towers, focal classification, centre-ness) predicts at each
point the distances to the four sides of a box and its angle as a 3-step PSC code. Training sees
only the targets' circumscribed horizontal boxes, in the batch as given and in self-supervised views
of it (see :mod:`.h2rbox_views`): ``variant="v2p"`` (default, the public code) adds one view per batch
(rotated with probability 0.95, else flipped top-to-bottom), ``"v2"`` two (rotated and flipped).
  * size: the predicted box, projected onto the frame of its (turned) horizontal label, must fill
    that label (IoU loss; the angle is detached here, so it is learnt from symmetry alone);
  * angle: per object, the mean PSC code over its positive points gives one angle per view, and
    the symmetry loss asks it to turn with the rotated view and mirror with the flipped one.

Classes without a meaningful angle (``rotation_agnostic_classes``: round tanks, roundabouts) are
handled as the public v2p code does: in the box loss the prediction is taken as axis-aligned and the
label's angle snapped to 0 or -pi/2; their symmetry error counts as 0; at test their boxes are decoded
with the predicted angle and get angle 0 after NMS. ``resize_classes`` (DOTA: baseball-diamond) have
their test boxes' w and h multiplied by ``resize_factor`` (0.85) after NMS.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from monatune.backbones.dense_swin import DenseSwin
from monatune.ops.rotated_boxes import boxes_to_hboxes, hboxes_to_boxes, regularize_boxes
from monatune.tasks.common import top_scoring_candidates
from monatune.tasks.oriented.coders import PSCCoder
from monatune.tasks.oriented.common import OrientedDetector, build_fpn
from monatune.tasks.oriented.fcos_targets import DEFAULT_REGRESS_RANGES, centerness, fcos_rotated_targets, level_points
from monatune.tasks.oriented.h2rbox_views import (
    choose_view,
    rotate_boxes,
    rotate_images,
    symmetry_loss,
    vflip_boxes,
    view_symmetry_loss,
)
from monatune.ops.nms import multiclass_rotated_nms

VARIANTS = ("v2p", "v2")
# What each variant's views default to: (padding of the rotated view, its interpolation).
_VIEW_DEFAULTS = {"v2p": ("zeros", "nearest"), "v2": ("reflection", "bilinear")}


def snap_to_axis(theta: torch.Tensor) -> torch.Tensor:
    """0 where |theta| < pi/4, else -pi/2: the axis a rotation-agnostic label is taken along (v2p)."""
    return torch.where(theta.abs() < math.pi / 4, torch.zeros_like(theta), torch.full_like(theta, -math.pi / 2))


def gn_tower(channels_in: int, channels: int, depth: int) -> nn.Sequential:
    """``depth`` x (3x3 conv + GroupNorm + ReLU), FCOS's towers (32 groups when the width allows)."""
    layers: list[nn.Module] = []
    groups = math.gcd(32, channels)
    for i in range(depth):
        conv = nn.Conv2d(channels_in if i == 0 else channels, channels, 3, padding=1, bias=False)
        nn.init.normal_(conv.weight, std=0.01)
        layers += [conv, nn.GroupNorm(groups, channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class H2RBoxV2(OrientedDetector):
    """H2RBox-v2; build it with :func:`build_h2rbox_v2`. Loss keys: loss_cls, loss_bbox,
    loss_centerness, loss_symmetry. Training targets may be rotated: only their horizontal
    circumscribed boxes are used.

    ``variant``: "v2p" (default) or "v2". v2p: ``rotation_prob`` (0.95), ``symmetry_weight`` (0.2),
    ``symmetry_beta`` (0.1); v2: ``symmetry_weights`` (rotation 1.0, flip 0.05, beta 0.1). Both:
    ``view_range`` (0.25, 0.75) x pi, ``view_padding`` / ``view_interpolation`` of the rotated view
    (None: the variant's, zeros/nearest for v2p, reflection/bilinear for v2),
    ``rotation_agnostic_classes``, ``resize_classes`` with ``resize_factor``.
    """

    convention = "le90"

    def __init__(
        self,
        backbone: DenseSwin,
        num_classes: int,
        *,
        fpn_channels: int = 256,
        head_channels: int = 256,
        stacked_convs: int = 4,
        regress_ranges: Sequence[tuple[float, float]] = DEFAULT_REGRESS_RANGES,
        center_radius: float = 1.5,
        view_range: tuple[float, float] = (0.25, 0.75),
        rotation_agnostic_classes: Sequence[int] = (),
        symmetry_weights: tuple[float, float] = (1.0, 0.05),
        variant: str = "v2p",
        rotation_prob: float = 0.95,
        symmetry_weight: float = 0.2,
        symmetry_beta: float = 0.1,
        view_padding: str | None = None,
        view_interpolation: str | None = None,
        resize_classes: Sequence[int] = (),
        resize_factor: float = 0.85,
        score_threshold: float = 0.05,
        nms_pre: int = 2000,
        nms_iou: float = 0.1,
        max_per_image: int = 2000,
    ) -> None:
        neck, strides = build_fpn(backbone, fpn_channels, "on_output")
        super().__init__(backbone, neck, strides)
        if len(regress_ranges) != len(strides):
            raise ValueError(f"need one regress range per FPN level ({len(strides)}), got {len(regress_ranges)}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown H2RBox-v2 variant {variant!r}; valid: {', '.join(VARIANTS)}")
        if not 0.0 <= rotation_prob <= 1.0:
            raise ValueError(f"rotation_prob: {rotation_prob} must be in [0, 1]")
        padding, interpolation = _VIEW_DEFAULTS[variant]
        self.variant = variant
        self.view_padding = view_padding or padding
        self.view_interpolation = view_interpolation or interpolation
        if self.view_padding not in ("zeros", "reflection", "border"):
            raise ValueError(f"view_padding: {self.view_padding!r} is not one of zeros, reflection, border")
        if self.view_interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"view_interpolation: {self.view_interpolation!r} is not one of nearest, bilinear")
        self.rotation_prob, self.symmetry_weight, self.symmetry_beta = rotation_prob, symmetry_weight, symmetry_beta
        self.register_buffer("resize_classes", torch.tensor(list(resize_classes), dtype=torch.long), persistent=False)
        self.resize_factor = resize_factor
        self.num_classes = num_classes
        self.cls_tower = gn_tower(fpn_channels, head_channels, stacked_convs)
        self.reg_tower = gn_tower(fpn_channels, head_channels, stacked_convs)
        self.cls_out = nn.Conv2d(head_channels, num_classes, 3, padding=1)
        self.reg_out = nn.Conv2d(head_channels, 4, 3, padding=1)
        self.angle_out = nn.Conv2d(head_channels, 3, 3, padding=1)
        self.ctr_out = nn.Conv2d(head_channels, 1, 3, padding=1)
        for conv in (self.cls_out, self.reg_out, self.angle_out, self.ctr_out):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls_out.bias, -math.log(99.0))  # prior probability 0.01
        # A ParameterList (a child module), so tuning's train_modules reaches it like any head.
        self.level_scales = nn.ParameterList(nn.Parameter(torch.ones(())) for _ in strides)
        self.psc = PSCCoder(3)
        self.regress_ranges = [tuple(map(float, r)) for r in regress_ranges]
        self.center_radius, self.view_range = center_radius, tuple(view_range)
        agnostic = torch.tensor(list(rotation_agnostic_classes), dtype=torch.long)
        self.register_buffer("agnostic_classes", agnostic, persistent=False)
        self.symmetry_weights = tuple(symmetry_weights)
        self.score_threshold, self.nms_pre = score_threshold, nms_pre
        self.nms_iou, self.max_per_image = nms_iou, max_per_image

    def head(self, batch: torch.Tensor):
        """Outputs flattened over levels and points, (B, P, .): class logits (C), distances / stride
        (4), PSC code (3), centre-ness logit (1); and the points (P, 2) with their strides (P,)."""
        feats = self.features(batch)
        b = batch.shape[0]
        outs: tuple[list, list, list, list] = ([], [], [], [])
        for lvl, f in enumerate(feats):
            c, r = self.cls_tower(f), self.reg_tower(f)
            dist = F.relu(self.level_scales[lvl] * self.reg_out(r))
            for out, t in zip(outs, (self.cls_out(c), dist, self.angle_out(r), self.ctr_out(r))):
                out.append(t.permute(0, 2, 3, 1).reshape(b, -1, t.shape[1]).float())  # float32 under autocast
        sizes = [tuple(f.shape[-2:]) for f in feats]
        points = level_points(sizes, self.strides, batch.device)
        strides = torch.cat([torch.full((len(p),), float(s), device=p.device) for p, s in zip(points, self.strides)])
        return [torch.cat(o, 1) for o in outs], points, strides

    def _is_agnostic(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.isin(labels, self.agnostic_classes.to(labels.device))

    def compute_losses(self, batch, sizes, targets):
        height, width = batch.shape[-2:]
        hboxes = [hboxes_to_boxes(boxes_to_hboxes(t["boxes"]), "le90") for t in targets]  # weak labels only
        labels = [t["labels"] for t in targets]
        if self.variant == "v2":
            rotation = math.pi * float(torch.empty(1).uniform_(*self.view_range))
            rotated = [rotate_boxes(b, rotation, (height, width)) for b in hboxes]
            views = torch.cat((batch, self._rotate(batch, rotation), batch.flip(-2)))
            losses, positives = self._dense_losses(views, hboxes + rotated + [vflip_boxes(b, height) for b in hboxes], labels * 3)
            if positives is not None:
                losses["loss_symmetry"] = self._symmetry_v2(*positives, batch.shape[0], rotation)
            return losses
        view, rotation = choose_view(self.rotation_prob, self.view_range)
        if view == "rotate":
            views = torch.cat((batch, self._rotate(batch, rotation)))
            view_boxes = hboxes + [rotate_boxes(b, rotation, (height, width)) for b in hboxes]
        else:
            views = torch.cat((batch, batch.flip(-2)))
            view_boxes = hboxes + [vflip_boxes(b, height) for b in hboxes]
        losses, positives = self._dense_losses(views, view_boxes, labels * 2)
        if positives is None:
            return losses
        angles, agnostic = self._view_angles(*positives, batch.shape[0], 2)
        if angles is None:  # no object has points in both views
            losses["loss_symmetry"] = positives[0].sum() * 0
        else:
            losses["loss_symmetry"] = view_symmetry_loss(
                angles[:, 0], angles[:, 1], view, rotation, agnostic, weight=self.symmetry_weight, beta=self.symmetry_beta
            )
        return losses

    def _rotate(self, batch: torch.Tensor, angle: float) -> torch.Tensor:
        return rotate_images(batch, angle, padding_mode=self.view_padding, mode=self.view_interpolation)

    def _dense_losses(self, views, view_boxes, labels):
        """Classification, box and centre-ness losses over all views; and the positives (PSC codes,
        view index, object index, label) the symmetry loss needs, None without positives."""
        (logits, dist, codes, ctr), points, strides = self.head(views)
        ranges = torch.cat([points[0].new_tensor(r).expand(len(p), 2) for p, r in zip(points, self.regress_ranges)])
        points = torch.cat(points)
        assigned = [
            fcos_rotated_targets(points, strides, ranges, b, lab, self.num_classes, self.center_radius)
            for b, lab in zip(view_boxes, labels)
        ]
        t_labels, t_dist, matched = (torch.stack(x) for x in zip(*assigned))  # (V*B, P, ...)
        pos = t_labels < self.num_classes
        num_pos = max(int(pos.sum()), 1)
        onehot = F.one_hot(t_labels, self.num_classes + 1)[..., : self.num_classes].to(logits.dtype)
        loss_cls = sigmoid_focal_loss(logits, onehot, alpha=0.25, gamma=2.0, reduction="sum") / num_pos
        if not pos.any():  # keep every output in the graph so gradients stay defined
            zero = dist.sum() * 0 + codes.sum() * 0 + ctr.sum() * 0
            return {"loss_cls": loss_cls, "loss_bbox": zero, "loss_centerness": zero, "loss_symmetry": zero}, None

        view_idx, point_idx = torch.nonzero(pos, as_tuple=True)
        obj = matched[view_idx, point_idx]
        offsets = torch.tensor([0] + [len(b) for b in view_boxes], device=views.device).cumsum(0)
        obj_boxes = torch.cat(view_boxes)[offsets[view_idx] + obj]
        pos_labels, goal = t_labels[view_idx, point_idx], t_dist[view_idx, point_idx]
        pos_codes = codes[view_idx, point_idx]
        # The angle is detached in the box loss: it is learnt from the symmetry loss alone.
        pred_angle = self.psc.decode(pos_codes).detach()
        agnostic = self._is_agnostic(pos_labels)
        if self.variant == "v2p":  # prediction axis-aligned, label snapped to an axis (public v2p)
            da = torch.where(agnostic, -snap_to_axis(obj_boxes[:, 4]), pred_angle - obj_boxes[:, 4])
        else:
            da = torch.where(agnostic, torch.zeros_like(pred_angle), pred_angle - obj_boxes[:, 4])
        weight = centerness(goal)
        iou = _projected_iou(dist[view_idx, point_idx], goal, da)
        losses = {
            "loss_cls": loss_cls,
            "loss_bbox": (-(iou.clamp_min(1e-6).log()) * weight).sum() / weight.sum().clamp_min(1e-6),
            "loss_centerness": F.binary_cross_entropy_with_logits(
                ctr[view_idx, point_idx, 0], weight, reduction="sum"
            ) / num_pos,
        }
        return losses, (pos_codes, view_idx, obj, pos_labels)

    def _view_angles(self, codes, view_idx, obj, labels, n_img: int, n_views: int):
        """Angles (M, n_views) decoded from the mean PSC code per (object, view), for the M objects with
        points in every view, and whether each is rotation-agnostic (M,); (None, None) when M = 0."""
        image, kind = view_idx % n_img, view_idx // n_img
        max_obj = int(obj.max()) + 1
        key = (image * max_obj + obj) * n_views + kind  # one slot per (image, object, view)
        slots = n_img * max_obj * n_views
        total = codes.new_zeros((slots, codes.shape[1])).index_add_(0, key, codes)
        count = codes.new_zeros(slots).index_add_(0, key, torch.ones_like(key, dtype=codes.dtype))
        agnostic = torch.zeros(slots, dtype=torch.bool, device=codes.device)
        agnostic[key[self._is_agnostic(labels)]] = True
        count = count.view(-1, n_views)
        total = total.view(-1, n_views, codes.shape[1])
        agnostic = agnostic.view(-1, n_views)[:, 0]
        full = (count > 0).all(1)
        if not full.any():
            return None, None
        return self.psc.decode(total[full] / count[full][..., None]), agnostic[full]

    def _symmetry_v2(self, codes, view_idx, obj, labels, n_img, rotation) -> torch.Tensor:
        """v2: objects with points in all three views (original, rotated, flipped) enter the loss."""
        angles, agnostic = self._view_angles(codes, view_idx, obj, labels, n_img, 3)
        if angles is None:
            return codes.sum() * 0
        return symmetry_loss(
            angles[:, 0], angles[:, 1], angles[:, 2], rotation, agnostic,
            rotation_weight=self.symmetry_weights[0], flip_weight=self.symmetry_weights[1],
        )  # fmt: skip

    @torch.no_grad()
    def predict(self, batch, sizes):
        (logits, dist, codes, ctr), points, strides = self.head(batch)
        counts = [len(p) for p in points]
        points = torch.cat(points)
        results = []
        for i in range(batch.shape[0]):
            prob = logits[i].sigmoid()
            boxes, scores, labels = [], [], []
            for chunk in torch.arange(points.shape[0], device=batch.device).split(counts):  # per level
                cls_score, level_idx, cls = top_scoring_candidates(prob[chunk], self.score_threshold, self.nms_pre)
                idx = chunk[level_idx]
                boxes.append(self._decode(points[idx], dist[i, idx] * strides[idx, None], codes[i, idx], cls))
                scores.append(cls_score * ctr[i, idx, 0].sigmoid())
                labels.append(cls)
            boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
            kept = multiclass_rotated_nms(
                boxes, scores, labels, iou_threshold=self.nms_iou, max_per_image=self.max_per_image
            )
            results.append(self._after_nms(kept))
        return results

    def _after_nms(self, kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """v2p: angle 0 for rotation-agnostic classes; both variants: ``resize_classes`` shrunk."""
        boxes = kept["boxes"].clone()
        if self.variant == "v2p":
            boxes[self._is_agnostic(kept["labels"]), 4] = 0.0
        resize = torch.isin(kept["labels"], self.resize_classes.to(boxes.device))
        boxes[resize, 2:4] *= self.resize_factor
        return {**kept, "boxes": boxes}

    def _decode(self, points, dist, codes, labels) -> torch.Tensor:
        """Boxes (N, 5) le90 from points (N, 2), pixel distances (N, 4) and PSC codes (N, 3)."""
        theta = self.psc.decode(codes)
        if self.variant == "v2":  # v2p sets their angle after NMS instead (:meth:`_after_nms`)
            theta = torch.where(self._is_agnostic(labels), torch.zeros_like(theta), theta)
        cx, cy = (dist[:, 2] - dist[:, 0]) / 2, (dist[:, 3] - dist[:, 1]) / 2
        cos, sin = torch.cos(theta), torch.sin(theta)
        centre = points + torch.stack((cx * cos - cy * sin, cx * sin + cy * cos), dim=1)
        sides = torch.stack((dist[:, 0] + dist[:, 2], dist[:, 1] + dist[:, 3]), dim=1)
        return regularize_boxes(torch.cat((centre, sides, theta[:, None]), dim=1), "le90")


def _projected_iou(pred: torch.Tensor, goal: torch.Tensor, da: torch.Tensor) -> torch.Tensor:
    """IoU (N,) in the label's frame between the label box and the horizontal box around the
    predicted box turned by ``da`` relative to it; distances (N, 4) (left, top, right, bottom)."""
    cos, sin = torch.cos(da), torch.sin(da)
    w, h = pred[:, 0] + pred[:, 2], pred[:, 1] + pred[:, 3]
    ox, oy = (pred[:, 2] - pred[:, 0]) / 2, (pred[:, 3] - pred[:, 1]) / 2
    cx, cy = ox * cos - oy * sin, ox * sin + oy * cos
    ex, ey = (cos.abs() * w + sin.abs() * h) / 2, (sin.abs() * w + cos.abs() * h) / 2
    p = torch.stack((cx - ex, cy - ey, cx + ex, cy + ey), dim=1)
    g = torch.stack((-goal[:, 0], -goal[:, 1], goal[:, 2], goal[:, 3]), dim=1)
    iw = (torch.minimum(p[:, 2], g[:, 2]) - torch.maximum(p[:, 0], g[:, 0])).clamp_min(0)
    ih = (torch.minimum(p[:, 3], g[:, 3]) - torch.maximum(p[:, 1], g[:, 1])).clamp_min(0)
    inter = iw * ih
    union = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1]) + (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) - inter
    return inter / union.clamp_min(1e-6)


def build_h2rbox_v2(backbone: DenseSwin, num_classes: int, **options) -> H2RBoxV2:
    """H2RBox-v2 (v2p by default) on ``backbone`` (SPEC §5, §8.5). ``options``: see :class:`H2RBoxV2`.
    The public configs: DOTA ``rotation_agnostic_classes`` (1, 9, 11) (baseball-diamond, storage-tank,
    roundabout) and ``resize_classes`` (1,); STAR ``rotation_agnostic_classes`` (4, 44) (tank, roundabout)."""
    return H2RBoxV2(backbone, num_classes, **options)


__all__ = ["VARIANTS", "H2RBoxV2", "build_h2rbox_v2", "gn_tower", "snap_to_axis"]
