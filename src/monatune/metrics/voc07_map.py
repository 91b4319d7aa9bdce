"""Pascal VOC 2007 detection mAP: 11-point interpolated AP at IoU >= 0.5, difficult objects ignored.

Follows the VOC devkit (``VOCevaldet.m``) and mmdet's ``eval_map`` as the paper used them:

* Boxes are inclusive pixel indices, so width = x2 - x1 + 1 (``pixel_offset=1``, the default);
  ``pixel_offset=0`` gives the continuous IoU used by COCO, torchvision and mmdet 2.11's VOC
  evaluation (:func:`pixel_offset_for` maps the reader's ``box_convention`` to it).
* A detection is matched to the ground truth of its image and class with the largest IoU
  (difficult ones included). If that IoU is below the threshold it is a false positive; if the
  ground truth is difficult the detection is ignored (neither true nor false positive); if it was
  already taken by a higher-scoring detection it is a duplicate, i.e. a false positive. The devkit
  does not fall back to the second-best ground truth, and neither do we.
* Detections are ranked by score within each class over the whole set; ties keep update order.
* The mean is over classes with at least one non-difficult ground truth; other classes get NaN AP
  and are left out of the mean (mmdet does the same; the devkit would give them 0/0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from monatune.metrics.average_precision import area_under_pr, precision_recall, voc07_11point_ap


# box_convention of monatune.data.voc -> pixel_offset: the devkit's inclusive pixels, mmdet 2.11's continuous IoU
PIXEL_OFFSETS = {"devkit": 1.0, "mmdet": 0.0}


def pixel_offset_for(box_convention: str) -> float:
    """The ``pixel_offset`` that scores boxes read with ``box_convention`` ("devkit" -> 1, "mmdet" -> 0)."""
    if box_convention not in PIXEL_OFFSETS:
        raise ValueError(f"box_convention: {box_convention!r} is not one of {', '.join(PIXEL_OFFSETS)}")
    return PIXEL_OFFSETS[box_convention]


def box_iou_matrix(boxes1: np.ndarray, boxes2: np.ndarray, pixel_offset: float = 1.0) -> np.ndarray:
    """IoU between (N, 4) and (M, 4) xyxy boxes -> (N, M); ``pixel_offset`` 1 = devkit inclusive pixels."""
    x1 = np.maximum(boxes1[:, None, 0], boxes2[None, :, 0])
    y1 = np.maximum(boxes1[:, None, 1], boxes2[None, :, 1])
    x2 = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
    y2 = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
    inter = np.clip(x2 - x1 + pixel_offset, 0, None) * np.clip(y2 - y1 + pixel_offset, 0, None)
    area1 = (boxes1[:, 2] - boxes1[:, 0] + pixel_offset) * (boxes1[:, 3] - boxes1[:, 1] + pixel_offset)
    area2 = (boxes2[:, 2] - boxes2[:, 0] + pixel_offset) * (boxes2[:, 3] - boxes2[:, 1] + pixel_offset)
    union = area1[:, None] + area2[None, :] - inter
    return inter / np.maximum(union, np.finfo(np.float64).eps)


def match_detections(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray,
    iou_threshold: float = 0.5,
    pixel_offset: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy devkit matching of one image's detections of one class.

    Returns ``(is_tp, counted)``, both (N,) bool in the input order; ``counted`` is False for
    detections whose best ground truth is difficult (they are left out of precision and recall).
    """
    n = len(det_boxes)
    is_tp, counted = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    if n == 0 or len(gt_boxes) == 0:
        return is_tp, counted
    iou = box_iou_matrix(det_boxes, gt_boxes, pixel_offset)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for d in np.argsort(-det_scores, kind="stable"):
        g = int(np.argmax(iou[d]))
        if iou[d, g] < iou_threshold:  # ">=" as in VOCevaldet.m and mmdet (py-faster-rcnn's port uses ">")
            continue
        if gt_difficult[g]:
            counted[d] = False
        elif not taken[g]:
            is_tp[d] = taken[g] = True
    return is_tp, counted


def _numpy(x: Any, dtype: type) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


class VOC07MAP:
    """Accumulates detections over a set and computes VOC07 mAP.

    ``update(preds, targets)`` takes lists (one entry per image) of dicts: preds ``boxes (N, 4)
    xyxy, scores (N,), labels (N,) in 1..num_classes``; targets ``boxes (M, 4), labels (M,),
    difficult (M,) bool`` (optional, default all False). Boxes must share the coordinate convention
    of ``pixel_offset``. ``compute()`` returns ``dict(map=float, ap_per_class={name: float or NaN},
    num_ground_truth={name: int})``. ``use_11_point=False`` gives the VOC2010+ area under the curve.
    """

    def __init__(
        self,
        num_classes: int = 20,
        class_names: Sequence[str] | None = None,
        iou_threshold: float = 0.5,
        pixel_offset: float = 1.0,
        use_11_point: bool = True,
    ) -> None:
        self.num_classes = num_classes
        self.class_names = tuple(class_names) if class_names is not None else tuple(str(c) for c in range(1, num_classes + 1))
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.iou_threshold = iou_threshold
        self.pixel_offset = pixel_offset
        self.use_11_point = use_11_point
        self.reset()

    def reset(self) -> None:
        self._scores: list[list[np.ndarray]] = [[] for _ in range(self.num_classes)]
        self._is_tp: list[list[np.ndarray]] = [[] for _ in range(self.num_classes)]
        self._num_gt = np.zeros(self.num_classes, dtype=np.int64)

    def _check_labels(self, labels: np.ndarray, what: str) -> None:
        if labels.size and (labels.min() < 1 or labels.max() > self.num_classes):
            raise ValueError(f"{what} labels must lie in 1..{self.num_classes}, got {labels.min()}..{labels.max()}")

    def update(self, preds: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
        for pred, target in zip(preds, targets):
            det_boxes = _numpy(pred["boxes"], np.float64).reshape(-1, 4)
            det_scores = _numpy(pred["scores"], np.float64).reshape(-1)
            det_labels = _numpy(pred["labels"], np.int64).reshape(-1)
            gt_boxes = _numpy(target["boxes"], np.float64).reshape(-1, 4)
            gt_labels = _numpy(target["labels"], np.int64).reshape(-1)
            difficult = target.get("difficult")
            gt_difficult = np.zeros(len(gt_labels), bool) if difficult is None else _numpy(difficult, bool).reshape(-1)
            self._check_labels(det_labels, "predicted")
            self._check_labels(gt_labels, "target")
            for c in np.union1d(det_labels, gt_labels):
                d, g = det_labels == c, gt_labels == c
                self._num_gt[c - 1] += int((~gt_difficult[g]).sum())
                is_tp, counted = match_detections(
                    det_boxes[d], det_scores[d], gt_boxes[g], gt_difficult[g], self.iou_threshold, self.pixel_offset
                )
                self._scores[c - 1].append(det_scores[d][counted])
                self._is_tp[c - 1].append(is_tp[counted])

    def compute(self) -> dict[str, Any]:
        ap = np.full(self.num_classes, np.nan)
        for c in range(self.num_classes):
            if self._num_gt[c] == 0:
                continue
            scores = np.concatenate(self._scores[c]) if self._scores[c] else np.zeros(0)
            is_tp = np.concatenate(self._is_tp[c]) if self._is_tp[c] else np.zeros(0, bool)
            if len(scores) == 0:
                ap[c] = 0.0
                continue
            recall, precision = precision_recall(is_tp, scores, int(self._num_gt[c]))
            ap[c] = voc07_11point_ap(recall, precision) if self.use_11_point else area_under_pr(recall, precision)
        valid = ~np.isnan(ap)
        return {
            "map": float(ap[valid].mean()) if valid.any() else float("nan"),
            "ap_per_class": {name: float(v) for name, v in zip(self.class_names, ap)},
            "num_ground_truth": {name: int(n) for name, n in zip(self.class_names, self._num_gt)},
        }
