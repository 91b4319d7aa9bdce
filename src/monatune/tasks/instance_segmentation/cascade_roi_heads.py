"""Cascade R-CNN RoI heads: box stages at rising IoU thresholds, each one refining the previous boxes.

Written on torchvision's pieces (Matcher, BalancedPositiveNegativeSampler, BoxCoder, roi_align);
torchvision has no cascade. RoI pooling and mask targets are aligned by default (``roi_align.py``, SPEC §8.8). Behaviour follows Cascade (Mask) R-CNN as mmdet 2.x runs it
for the Swin COCO configs: per stage, gt boxes join the proposals, RoIs are matched at the stage's IoU and
sampled (512 per image, 25 % positive); the stage's regressed boxes, gt joins removed, feed the next
stage with gradients stopped. At inference the stages' class logits are averaged before the softmax,
boxes come from the last stage, and each stage's mask head is run on the final boxes and their
sigmoid masks are averaged.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder, Matcher
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, generalized_box_iou_loss, remove_small_boxes

from monatune.tasks.instance_segmentation.roi_align import mask_loss


class CascadeStage(nn.Module):
    """One cascade stage: box head -> classifier (K+1 logits) and box regressor, plus its mask head.

    ``forward(roi_features (R, C, S, S)) -> (class_logits (R, K+1), deltas (R, K+1 or 1, 4))``;
    the regressor is class-agnostic (one box per RoI) when ``class_agnostic``. Deltas are encoded by
    a BoxCoder with ``coder_weights`` = 1 / target std. ``mask_head`` maps mask RoI features to
    (R, K+1, M, M) logits.
    """

    def __init__(
        self,
        box_head: nn.Module,
        representation_size: int,
        num_classes: int,
        iou_threshold: float,
        coder_weights: tuple[float, float, float, float],
        *,
        class_agnostic: bool = False,
        mask_head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.box_head = box_head
        self.cls_score = nn.Linear(representation_size, num_classes)
        self.bbox_pred = nn.Linear(representation_size, 4 if class_agnostic else 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        self.mask_head = mask_head
        self.num_classes = num_classes
        self.class_agnostic = class_agnostic
        self.iou_threshold = iou_threshold
        self.box_coder = BoxCoder(coder_weights)
        # pos >= t, neg < t, no low-quality matches (mmdet MaxIoUAssigner with pos = neg = min_pos = t).
        self.matcher = Matcher(iou_threshold, iou_threshold, allow_low_quality_matches=False)

    def forward(self, roi_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.box_head(roi_features)
        deltas = self.bbox_pred(x).float()
        return self.cls_score(x).float(), deltas.view(deltas.shape[0], -1, 4)

    def decode(self, deltas: torch.Tensor, rois: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Boxes (R, 4) for ``labels`` (R,), or (R, K+1 or 1, 4) for every class when ``labels`` is None."""
        if labels is not None:
            index = torch.zeros_like(labels) if self.class_agnostic else labels
            deltas = deltas[torch.arange(len(deltas), device=deltas.device), index]
            return self.box_coder.decode_single(deltas, rois)
        return self.box_coder.decode_single(deltas.reshape(len(deltas), -1), rois).view(len(deltas), -1, 4)


class CascadeRoIHeads(nn.Module):
    """RoI heads of Cascade (Mask) R-CNN; a drop-in for torchvision's ``RoIHeads`` in a GeneralizedRCNN.

    ``forward(features: OrderedDict[str, (B, C, h, w)], proposals: list[(P_i, 4)], image_shapes:
    list[(H, W)], targets=None) -> (detections, losses)``. Training: detections is empty, losses holds
    ``loss_classifier_stage{s}``, ``loss_box_reg_stage{s}`` (GIoU on decoded boxes x
    ``box_loss_weight``, summed over positives / sampled RoIs) and ``loss_mask_stage{s}``, each
    already multiplied by ``stage_loss_weights[s]``. The poolers are any module called as
    ``pool(features, boxes_per_image, image_shapes) -> (R, C, S, S)`` (``AlignedMultiScaleRoIAlign``
    or torchvision's ``MultiScaleRoIAlign``); mask targets are aligned and binarised unless
    ``aligned_mask_targets`` is False (torchvision's soft, unaligned targets). Eval: losses is empty, detections is
    ``list[{"boxes" (K, 4), "scores" (K,), "labels" (K,), "masks" (K, 1, M, M) probabilities}]``.
    """

    def __init__(
        self,
        box_roi_pool: nn.Module,
        stages: Sequence[CascadeStage],
        stage_loss_weights: Sequence[float],
        *,
        mask_roi_pool: nn.Module | None = None,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        box_loss_weight: float = 10.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        aligned_mask_targets: bool = True,
    ) -> None:
        super().__init__()
        if len(stages) != len(stage_loss_weights):
            raise ValueError(f"{len(stages)} stages but {len(stage_loss_weights)} stage loss weights")
        self.box_roi_pool = box_roi_pool
        self.mask_roi_pool = mask_roi_pool
        self.stages = nn.ModuleList(stages)
        self.stage_loss_weights = tuple(float(w) for w in stage_loss_weights)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_loss_weight = box_loss_weight
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.aligned_mask_targets = aligned_mask_targets

    @property
    def has_mask(self) -> bool:
        return self.mask_roi_pool is not None and all(s.mask_head is not None for s in self.stages)

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            if self.has_mask and any("masks" not in t for t in targets):
                raise ValueError("every target needs 'masks' (N, H, W) to train the mask heads")
            return [], self._losses(features, proposals, image_shapes, targets)
        return self._detect(features, proposals, image_shapes), {}

    def _sample(
        self, stage: CascadeStage, rois: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> tuple[list[torch.Tensor], ...]:
        """Per image: sampled RoIs, labels (0 = background), matched gt index, matched gt box, is-gt flag."""
        candidates, labels, matched, is_gt = [], [], [], []
        for props, target in zip(rois, targets):
            gt_boxes, gt_labels = target["boxes"], target["labels"]
            boxes = torch.cat([props, gt_boxes.to(props.dtype)])
            flag = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
            flag[len(props) :] = True
            if len(gt_boxes) == 0:
                idx = boxes.new_zeros(len(boxes), dtype=torch.long)
                lab = boxes.new_zeros(len(boxes), dtype=torch.long)
            else:
                match = stage.matcher(box_iou(gt_boxes, boxes))
                idx = match.clamp(min=0)
                lab = gt_labels[idx].to(torch.long)
                lab[match == Matcher.BELOW_LOW_THRESHOLD] = 0
                lab[match == Matcher.BETWEEN_THRESHOLDS] = -1
            candidates.append(boxes)
            labels.append(lab)
            matched.append(idx)
            is_gt.append(flag)
        pos_masks, neg_masks = self.sampler(labels)
        out: tuple[list[torch.Tensor], ...] = ([], [], [], [], [])
        for i, target in enumerate(targets):
            keep = torch.where(pos_masks[i] | neg_masks[i])[0]
            gt_boxes = target["boxes"]
            idx = matched[i][keep]
            gt_of_roi = gt_boxes[idx] if len(gt_boxes) else candidates[i].new_zeros(len(keep), 4)
            for column, value in zip(out, (candidates[i][keep], labels[i][keep], idx, gt_of_roi, is_gt[i][keep])):
                column.append(value)
        return out

    def _losses(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        rois = [p.detach() for p in proposals]
        last = len(self.stages) - 1
        for s, (stage, weight) in enumerate(zip(self.stages, self.stage_loss_weights)):
            boxes, labels, matched, gt_of_roi, is_gt = self._sample(stage, rois, targets)
            logits, deltas = stage(self.box_roi_pool(features, boxes, image_shapes))
            all_rois, all_labels = torch.cat(boxes), torch.cat(labels)
            pos = torch.where(all_labels > 0)[0]
            pred = stage.decode(deltas[pos], all_rois[pos], all_labels[pos])
            giou = generalized_box_iou_loss(pred, torch.cat(gt_of_roi)[pos], reduction="sum")
            losses[f"loss_classifier_stage{s}"] = weight * F.cross_entropy(logits, all_labels)
            losses[f"loss_box_reg_stage{s}"] = weight * self.box_loss_weight * giou / max(1, all_labels.numel())
            if self.has_mask:
                pos_boxes = [b[lab > 0] for b, lab in zip(boxes, labels)]
                pos_matched = [m[lab > 0] for m, lab in zip(matched, labels)]
                assert self.mask_roi_pool is not None and stage.mask_head is not None
                mask_logits = stage.mask_head(self.mask_roi_pool(features, pos_boxes, image_shapes))
                gt_masks = [t["masks"] for t in targets]
                gt_labels = [t["labels"] for t in targets]
                losses[f"loss_mask_stage{s}"] = weight * mask_loss(
                    mask_logits, pos_boxes, gt_masks, gt_labels, pos_matched, aligned=self.aligned_mask_targets
                )
            if s < last:
                with torch.no_grad():
                    # Background RoIs are regressed with their most likely foreground class.
                    guess = logits[:, 1:].argmax(dim=1) + 1
                    refined = stage.decode(deltas, all_rois, torch.where(all_labels > 0, all_labels, guess))
                    sizes = [len(b) for b in boxes]
                    rois = [
                        clip_boxes_to_image(r[~g], shape)
                        for r, g, shape in zip(refined.split(sizes), is_gt, image_shapes)
                    ]
        return losses

    def _detect(
        self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[dict[str, torch.Tensor]]:
        sizes = [len(p) for p in proposals]
        rois = torch.cat(proposals)
        stage_logits = []
        for s, stage in enumerate(self.stages):
            logits, deltas = stage(self.box_roi_pool(features, list(rois.split(sizes)), image_shapes))
            stage_logits.append(logits)
            if s < len(self.stages) - 1:
                refined = stage.decode(deltas, rois, logits[:, 1:].argmax(dim=1) + 1)
                rois = torch.cat([clip_boxes_to_image(r, sh) for r, sh in zip(refined.split(sizes), image_shapes)])
        scores = F.softmax(torch.stack(stage_logits).mean(dim=0), dim=-1)
        boxes = self.stages[-1].decode(deltas, rois, None)
        boxes = boxes.expand(-1, scores.shape[1], 4)

        results = []
        for b, sc, shape in zip(boxes.split(sizes), scores.split(sizes), image_shapes):
            results.append(self._select(clip_boxes_to_image(b, shape), sc))
        if self.has_mask:
            self._add_masks(features, results, image_shapes)
        return results

    def _select(self, boxes: torch.Tensor, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-class NMS over (R, K+1, 4) boxes and (R, K+1) scores; background column dropped."""
        labels = torch.arange(scores.shape[1], device=scores.device).expand_as(scores)
        boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
        keep = torch.where(scores > self.score_thresh)[0]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = remove_small_boxes(boxes, min_size=1e-2)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
        return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}

    def _add_masks(
        self,
        features: dict[str, torch.Tensor],
        results: list[dict[str, torch.Tensor]],
        image_shapes: list[tuple[int, int]],
    ) -> None:
        assert self.mask_roi_pool is not None
        mask_features = self.mask_roi_pool(features, [r["boxes"] for r in results], image_shapes)
        probs = torch.stack([s.mask_head(mask_features).float().sigmoid() for s in self.stages]).mean(dim=0)
        labels = torch.cat([r["labels"] for r in results])
        probs = probs[torch.arange(len(labels), device=labels.device), labels][:, None]
        for r, p in zip(results, probs.split([len(r["labels"]) for r in results])):
            r["masks"] = p
