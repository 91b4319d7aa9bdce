"""H2RBox-v2 (SPEC §5; "le90"): rotated boxes learnt from horizontal-box labels.

An FCOS-style head (4-conv GroupNorm towers, focal classification, centre-ness) predicts at each
point the distances to the four sides of a box and its angle as a 3-step PSC code. Training sees
only the targets' circumscribed horizontal boxes. Three views of the batch (original, turned by a
random angle in pi * [0.25, 0.75], flipped top-to-bottom) go through the network together:
  * size: the predicted box, projected onto the frame of its (turned) horizontal label, must fill
    that label (IoU loss; the angle is detached here, so it is learnt from symmetry alone);
  * angle: per object, the mean PSC code over its positive points gives one angle per view, and
    the symmetry loss asks it to turn with the rotated view and mirror with the flipped one.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from monatune.backbones.dense_swin import DenseSwin
from monatune.tasks.common import top_scoring_candidates
from monatune.tasks.oriented.boxes import boxes_to_hboxes, hboxes_to_boxes, regularize_boxes
from monatune.tasks.oriented.coders import PSCCoder
from monatune.tasks.oriented.common import OrientedDetector, build_fpn
from monatune.tasks.oriented.fcos_targets import DEFAULT_REGRESS_RANGES, centerness, fcos_rotated_targets, level_points
from monatune.tasks.oriented.h2rbox_views import rotate_boxes, rotate_images, symmetry_loss, vflip_boxes
from monatune.tasks.oriented.nms import multiclass_rotated_nms


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
    circumscribed boxes are used."""

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
        score_threshold: float = 0.05,
        nms_pre: int = 2000,
        nms_iou: float = 0.1,
        max_per_image: int = 2000,
    ) -> None:
        neck, strides = build_fpn(backbone, fpn_channels, "on_output")
        super().__init__(backbone, neck, strides)
        if len(regress_ranges) != len(strides):
            raise ValueError(f"need one regress range per FPN level ({len(strides)}), got {len(regress_ranges)}")
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
        rotation = math.pi * float(torch.empty(1).uniform_(*self.view_range))
        hboxes = [hboxes_to_boxes(boxes_to_hboxes(t["boxes"]), "le90") for t in targets]  # weak labels only
        rotated = [rotate_boxes(b, rotation, (height, width)) for b in hboxes]
        view_boxes = hboxes + rotated + [vflip_boxes(b, height) for b in hboxes]
        labels = [t["labels"] for t in targets] * 3
        views = torch.cat((batch, rotate_images(batch, rotation), batch.flip(-2)))
        (logits, dist, codes, ctr), points, strides = self.head(views)

        ranges = torch.cat([points[0].new_tensor(r).expand(len(p), 2) for p, r in zip(points, self.regress_ranges)])
        points = torch.cat(points)
        assigned = [
            fcos_rotated_targets(points, strides, ranges, b, lab, self.num_classes, self.center_radius)
            for b, lab in zip(view_boxes, labels)
        ]
        t_labels, t_dist, matched = (torch.stack(x) for x in zip(*assigned))  # (3B, P, ...)
        pos = t_labels < self.num_classes
        num_pos = max(int(pos.sum()), 1)
        onehot = F.one_hot(t_labels, self.num_classes + 1)[..., : self.num_classes].to(logits.dtype)
        loss_cls = sigmoid_focal_loss(logits, onehot, alpha=0.25, gamma=2.0, reduction="sum") / num_pos
        if not pos.any():  # keep every output in the graph so gradients stay defined
            zero = dist.sum() * 0 + codes.sum() * 0 + ctr.sum() * 0
            return {"loss_cls": loss_cls, "loss_bbox": zero, "loss_centerness": zero, "loss_symmetry": zero}

        view_idx, point_idx = torch.nonzero(pos, as_tuple=True)
        obj = matched[view_idx, point_idx]
        offsets = torch.tensor([0] + [len(b) for b in view_boxes], device=batch.device).cumsum(0)
        obj_boxes = torch.cat(view_boxes)[offsets[view_idx] + obj]
        pos_labels, goal = t_labels[view_idx, point_idx], t_dist[view_idx, point_idx]
        pos_codes = codes[view_idx, point_idx]
        # The angle is detached in the box loss: it is learnt from the symmetry loss alone.
        pred_angle = self.psc.decode(pos_codes).detach()
        da = torch.where(self._is_agnostic(pos_labels), torch.zeros_like(pred_angle), pred_angle - obj_boxes[:, 4])
        weight = centerness(goal)
        iou = _projected_iou(dist[view_idx, point_idx], goal, da)
        return {
            "loss_cls": loss_cls,
            "loss_bbox": (-(iou.clamp_min(1e-6).log()) * weight).sum() / weight.sum().clamp_min(1e-6),
            "loss_centerness": F.binary_cross_entropy_with_logits(
                ctr[view_idx, point_idx, 0], weight, reduction="sum"
            ) / num_pos,
            "loss_symmetry": self._symmetry(pos_codes, view_idx, obj, pos_labels, batch.shape[0], rotation),
        }

    def _symmetry(self, codes, view_idx, obj, labels, n_img, rotation) -> torch.Tensor:
        """Mean PSC code per (object, view); objects with points in all three views enter the loss."""
        image, kind = view_idx % n_img, view_idx // n_img
        max_obj = int(obj.max()) + 1
        key = (image * max_obj + obj) * 3 + kind  # one slot per (image, object, view)
        slots = n_img * max_obj * 3
        total = codes.new_zeros((slots, codes.shape[1])).index_add_(0, key, codes)
        count = codes.new_zeros(slots).index_add_(0, key, torch.ones_like(key, dtype=codes.dtype))
        agnostic = torch.zeros(slots, dtype=torch.bool, device=codes.device)
        agnostic[key[self._is_agnostic(labels)]] = True
        count, total, agnostic = count.view(-1, 3), total.view(-1, 3, codes.shape[1]), agnostic.view(-1, 3)[:, 0]
        full = (count > 0).all(1)
        if not full.any():
            return codes.sum() * 0
        angles = self.psc.decode(total[full] / count[full][..., None])  # (M, 3): original, rotated, flipped
        return symmetry_loss(
            angles[:, 0], angles[:, 1], angles[:, 2], rotation, agnostic[full],
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
            results.append(kept)
        return results

    def _decode(self, points, dist, codes, labels) -> torch.Tensor:
        """Boxes (N, 5) le90 from points (N, 2), pixel distances (N, 4) and PSC codes (N, 3)."""
        theta = self.psc.decode(codes)
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
    """H2RBox-v2 on ``backbone`` (SPEC §5). ``options``: see :class:`H2RBoxV2` (DOTA:
    ``rotation_agnostic_classes`` = (1, 9, 11): baseball-diamond, storage-tank, roundabout, as the
    public H2RBox-v2 DOTA config)."""
    return H2RBoxV2(backbone, num_classes, **options)


__all__ = ["H2RBoxV2", "build_h2rbox_v2", "gn_tower"]
