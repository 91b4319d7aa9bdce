"""COCO box and mask AP (AP@[.50:.95], AP50, AP75, S/M/L, AR@1/10/100) equal to pycocotools' COCOeval.

Predictions and targets are collected by ``torchmetrics.detection.MeanAveragePrecision`` (input
checks, xyxy -> xywh, masks -> RLE, list states that DDP gathers), but the score is computed here by
faster-coco-eval's ``COCOeval_faster`` (the pycocotools algorithm in C++) on COCO datasets built the
way a COCO results file is scored, because torchmetrics' own ``compute()`` cannot be made exact:

* it hands COCOeval float32-rounded IoU and recall thresholds (``torch.linspace(...).tolist()``:
  0.550000011920929 instead of 0.55), so a match or a recall that falls exactly on a threshold
  counts differently from COCOeval. Here the thresholds are COCOeval's own float64 ``np.linspace``;
* with ``iou_type="segm"`` alone it leaves out every image without masks, in the ground truth too,
  and COCOeval only scores detections on ground-truth images: false positives on images without
  ground-truth masks were dropped. Here every image is a ground-truth image;
* it rounds boxes (xyxy -> xywh) and the results to float32. Here boxes are kept in float64.

Detections are scored as ``COCO.loadRes`` would: a detection's area is its box area (``bbox``) or
its mask area (``segm``); a ground-truth area is the given ``area`` where positive, else the mask
area when masks are collected, else the box area (COCO annotations carry the mask area).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from faster_coco_eval import COCO, COCOeval_faster
from faster_coco_eval.core import mask as mask_utils
from torchmetrics.detection import MeanAveragePrecision

IOU_TYPES = ("bbox", "segm")
# exactly as pycocotools' Params builds them (float64; e.g. the 0.70 recall threshold is 0.7000000000000001)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = [1, 10, 100]
# COCOeval.stats in order
STAT_NAMES = (
    "map", "map_50", "map_75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)  # fmt: skip


def _as_bool_masks(masks: torch.Tensor, threshold: float) -> torch.Tensor:
    if masks.ndim == 4:  # (N, 1, H, W) probabilities from Mask R-CNN heads
        masks = masks[:, 0]
    return masks > threshold if masks.is_floating_point() else masks.bool()


def _quiet(*args: Any, **kwargs: Any) -> None:
    pass


class COCOEvalMAP(MeanAveragePrecision):
    """``MeanAveragePrecision`` whose ``compute()`` runs COCOeval with COCO's exact parameters on every image.

    Returns plain floats ``{iou_type}_{name}`` for ``name`` in ``STAT_NAMES`` and, with
    ``class_metrics``, ``{iou_type}_map_per_class`` / ``{iou_type}_mar_100_per_class`` as ``{label: value}``.
    Updating, DDP syncing (list states) and caching are torchmetrics'.
    """

    def __init__(self, iou_types: Sequence[str], class_metrics: bool = False) -> None:
        super().__init__(
            box_format="xyxy",
            iou_type=tuple(iou_types),
            iou_thresholds=IOU_THRESHOLDS.tolist(),
            rec_thresholds=RECALL_THRESHOLDS.tolist(),
            max_detection_thresholds=list(MAX_DETS),
            class_metrics=class_metrics,
            backend="faster_coco_eval",
        )

    def _datasets(self, iou_type: str) -> tuple[dict, dict]:
        """COCO ground truth and detections for ``iou_type``, one image per update entry, ids from 1."""
        use_boxes, use_masks = "bbox" in self.iou_type, "segm" in self.iou_type
        images, gts, dts = [], [], []
        for image_id, gt_labels in enumerate(self.groundtruth_labels):
            gt_masks = self.groundtruth_mask[image_id] if use_masks else ()
            dt_masks = self.detection_mask[image_id] if use_masks else ()
            image = {"id": image_id}
            sizes = [m[0] for m in (*gt_masks, *dt_masks)]
            if sizes:
                image["height"], image["width"] = int(sizes[0][0]), int(sizes[0][1])
            images.append(image)
            gt_boxes = self.groundtruth_box[image_id].tolist() if use_boxes else None
            crowds = self.groundtruth_crowds[image_id].reshape(-1).tolist()
            given_areas = self.groundtruth_area[image_id].reshape(-1).tolist()
            for k, label in enumerate(gt_labels.reshape(-1).tolist()):
                ann = {"image_id": image_id, "category_id": int(label), "iscrowd": int(crowds[k])}
                if use_boxes:
                    ann["bbox"] = gt_boxes[k]
                if use_masks:
                    ann["segmentation"] = {"size": list(gt_masks[k][0]), "counts": gt_masks[k][1]}
                if given_areas[k] > 0:
                    ann["area"] = float(given_areas[k])
                elif use_masks:
                    ann["area"] = float(mask_utils.area(ann["segmentation"]))
                else:
                    ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
                gts.append(ann)
            dt_boxes = self.detection_box[image_id].tolist() if iou_type == "bbox" else None
            scores = self.detection_scores[image_id].reshape(-1).tolist()
            for k, label in enumerate(self.detection_labels[image_id].reshape(-1).tolist()):
                ann = {"image_id": image_id, "category_id": int(label), "score": float(scores[k]), "iscrowd": 0}
                if iou_type == "bbox":  # as COCO.loadRes: a box result's area is the box area
                    ann["bbox"] = dt_boxes[k]
                    ann["area"] = float(dt_boxes[k][2] * dt_boxes[k][3])
                else:  # a mask result's area is the mask area
                    ann["segmentation"] = {"size": list(dt_masks[k][0]), "counts": dt_masks[k][1]}
                    ann["area"] = float(mask_utils.area(ann["segmentation"]))
                dts.append(ann)
        for anns in (gts, dts):
            for ann_id, ann in enumerate(anns, start=1):  # COCOeval needs ids > 0
                ann["id"] = ann_id
        labels = sorted({a["category_id"] for a in (*gts, *dts)})
        categories = [{"id": c, "name": str(c)} for c in labels]
        return (
            {"images": images, "annotations": gts, "categories": categories},
            {"images": [dict(image) for image in images], "annotations": dts, "categories": categories},
        )

    def _evaluate(self, iou_type: str) -> dict[str, Any]:
        gt_dataset, dt_dataset = self._datasets(iou_type)
        if not gt_dataset["images"]:  # nothing collected: nothing to score
            stats, labels, precision, recall = [-1.0] * len(STAT_NAMES), [], None, None
        else:
            coco_eval = COCOeval_faster(
                COCO(gt_dataset, print_function=_quiet), COCO(dt_dataset, print_function=_quiet), iouType=iou_type,
                print_function=_quiet,
            )  # fmt: skip
            params = coco_eval.params
            params.iouThrs, params.recThrs, params.maxDets = IOU_THRESHOLDS.copy(), RECALL_THRESHOLDS.copy(), list(MAX_DETS)
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
            stats, labels = coco_eval.stats, [int(c) for c in params.catIds]
            precision, recall = coco_eval.eval["precision"], coco_eval.eval["recall"]
        out: dict[str, Any] = {f"{iou_type}_{name}": float(stats[i]) for i, name in enumerate(STAT_NAMES)}
        if self.class_metrics:  # COCOeval.summarize restricted to one category: area "all", 100 detections
            ap, ar = {}, {}
            for k, label in enumerate(labels):
                p, r = precision[:, :, k, 0, -1], recall[:, k, 0, -1]
                ap[label] = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
                ar[label] = float(np.mean(r[r > -1])) if (r > -1).any() else -1.0
            out[f"{iou_type}_map_per_class"], out[f"{iou_type}_mar_100_per_class"] = ap, ar
        return out

    def compute(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for iou_type in self.iou_type:
            result.update(self._evaluate(iou_type))
        return result


class COCOMAP:
    """Accumulates predictions over a set and computes COCO AP for ``iou_types`` ("bbox", "segm").

    ``update(preds, targets)``: lists (one per image) of dicts; preds ``boxes (N, 4) xyxy,
    scores (N,), labels (N,)`` and for "segm" ``masks (N, H, W)`` bool/uint8 or ``(N, 1, H, W)``
    probabilities (thresholded at ``mask_threshold``); targets ``boxes (M, 4), labels (M,)``,
    ``masks (M, H, W)`` for "segm", optional ``iscrowd (M,)`` and ``area (M,)``.
    Boxes and masks must be at the original image resolution. ``compute()`` returns a dict of floats
    (``{iou_type}_map``, ``_map_50``, ``_map_75``, ``_map_small``/``medium``/``large``,
    ``_mar_1``/``10``/``100``, ``_mar_small``/``medium``/``large``; -1 where COCO has nothing to
    score), equal to pycocotools' COCOeval on the same images; with ``class_metrics`` also
    ``{iou_type}_map_per_class`` and ``{iou_type}_mar_100_per_class`` as ``{label: value}``.
    ``metric`` holds the collected states (torchmetrics list states, gathered over DDP ranks).
    """

    def __init__(self, iou_types: Sequence[str] = IOU_TYPES, mask_threshold: float = 0.5, class_metrics: bool = False) -> None:
        unknown = set(iou_types) - set(IOU_TYPES)
        if unknown or not iou_types:
            raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {tuple(iou_types)}")
        self.iou_types = tuple(iou_types)
        self.mask_threshold = mask_threshold
        self.metric = COCOEvalMAP(self.iou_types, class_metrics=class_metrics)

    def reset(self) -> None:
        self.metric.reset()

    def _convert(self, entry: dict[str, Any], is_target: bool) -> dict[str, torch.Tensor]:
        out = {"labels": torch.as_tensor(entry["labels"]).long().reshape(-1)}
        if "bbox" in self.iou_types:  # float64: xyxy -> xywh without float32 rounding
            out["boxes"] = torch.as_tensor(entry["boxes"]).double().reshape(-1, 4)
        if "segm" in self.iou_types:
            out["masks"] = _as_bool_masks(torch.as_tensor(entry["masks"]), self.mask_threshold)
        if is_target:
            for key in ("iscrowd", "area"):
                if key in entry:
                    out[key] = torch.as_tensor(entry[key]).reshape(-1)
        else:
            out["scores"] = torch.as_tensor(entry["scores"]).double().reshape(-1)
        return {k: v.detach().cpu() for k, v in out.items()}

    def update(self, preds: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        self.metric.update([self._convert(p, False) for p in preds], [self._convert(t, True) for t in targets])

    def compute(self) -> dict[str, Any]:
        return dict(self.metric.compute())
