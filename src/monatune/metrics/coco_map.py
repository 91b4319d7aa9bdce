"""COCO box and mask AP (AP@[.50:.95], AP50, AP75, S/M/L) through torchmetrics + faster-coco-eval.

A thin wrapper over ``torchmetrics.detection.MeanAveragePrecision(backend="faster_coco_eval")``
(the pycocotools algorithm in C++): it turns Mask R-CNN style outputs into what the metric takes
(soft masks (N, 1, H, W) -> bool (N, H, W); uint8 target masks -> bool), passes ``iscrowd`` and
``area`` through so crowd regions are ignored and size ranges use the annotation area, and returns
plain floats named ``bbox_map``, ``segm_map_50``, ... .
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics.detection import MeanAveragePrecision

IOU_TYPES = ("bbox", "segm")


def _as_bool_masks(masks: torch.Tensor, threshold: float) -> torch.Tensor:
    if masks.ndim == 4:  # (N, 1, H, W) probabilities from Mask R-CNN heads
        masks = masks[:, 0]
    return masks > threshold if masks.is_floating_point() else masks.bool()


class COCOMAP:
    """Accumulates predictions over a set and computes COCO AP for ``iou_types`` ("bbox", "segm").

    ``update(preds, targets)``: lists (one per image) of dicts; preds ``boxes (N, 4) xyxy,
    scores (N,), labels (N,)`` and for "segm" ``masks (N, H, W)`` bool/uint8 or ``(N, 1, H, W)``
    probabilities (thresholded at ``mask_threshold``); targets ``boxes (M, 4), labels (M,)``,
    ``masks (M, H, W)`` for "segm", optional ``iscrowd (M,)`` and ``area (M,)``.
    Boxes and masks must be at the original image resolution. ``compute()`` returns a dict of floats
    (``{iou_type}_map``, ``_map_50``, ``_map_75``, ``_map_small``/``medium``/``large``, ``_mar_100``;
    -1 where COCO has nothing to score); with ``class_metrics`` also ``{iou_type}_map_per_class``
    as ``{label: AP}``.
    """

    def __init__(self, iou_types: Sequence[str] = IOU_TYPES, mask_threshold: float = 0.5, class_metrics: bool = False) -> None:
        unknown = set(iou_types) - set(IOU_TYPES)
        if unknown or not iou_types:
            raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {tuple(iou_types)}")
        self.iou_types = tuple(iou_types)
        self.mask_threshold = mask_threshold
        self.metric = MeanAveragePrecision(
            box_format="xyxy", iou_type=self.iou_types, backend="faster_coco_eval", class_metrics=class_metrics
        )

    def reset(self) -> None:
        self.metric.reset()

    def _convert(self, entry: dict[str, Any], is_target: bool) -> dict[str, torch.Tensor]:
        out = {"labels": torch.as_tensor(entry["labels"]).long().reshape(-1)}
        if "bbox" in self.iou_types:
            out["boxes"] = torch.as_tensor(entry["boxes"]).float().reshape(-1, 4)
        if "segm" in self.iou_types:
            out["masks"] = _as_bool_masks(torch.as_tensor(entry["masks"]), self.mask_threshold)
        if is_target:
            for key in ("iscrowd", "area"):
                if key in entry:
                    out[key] = torch.as_tensor(entry[key]).reshape(-1)
        else:
            out["scores"] = torch.as_tensor(entry["scores"]).float().reshape(-1)
        return {k: v.detach().cpu() for k, v in out.items()}

    def update(self, preds: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        self.metric.update([self._convert(p, False) for p in preds], [self._convert(t, True) for t in targets])

    def compute(self) -> dict[str, Any]:
        result = self.metric.compute()
        if len(self.iou_types) == 1:  # torchmetrics drops the prefix for a single IoU type; keep names stable
            result = {k if k == "classes" else f"{self.iou_types[0]}_{k}": v for k, v in result.items()}
        out: dict[str, Any] = {k: float(v) for k, v in result.items() if k != "classes" and "per_class" not in k}
        if self.metric.class_metrics:  # per-class AP keyed by label, in the order of ``classes``
            labels = result["classes"].reshape(-1).tolist()
            for key in (k for k in result if "per_class" in k):
                out[key] = dict(zip(labels, result[key].reshape(-1).tolist()))
        return out
