"""DOTA-style evaluation (Task1: oriented boxes) and the Task1 submission files.

Per class, detections of all images are ranked by score; each is compared with the ground-truth
object of its image and class with the highest IoU, matched or not (the DOTA devkit's rule). IoU > 0.5
with a non-difficult object not matched before: true positive; with a difficult one: ignored (neither
true nor false); otherwise: false positive. AP is VOC07's 11-point AP; mAP averages the classes that
have at least one (counted) object. DOTA (the default): polygon IoU (shapely), difficult ignored.
STAR's public code (SPEC §8.4): ``iou="rotated"`` (ground-truth polygons as their minimum-area
rotated rectangles, IoU between rotated boxes) and ``difficult="count"`` (difficult objects are
ordinary ground truth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from shapely.geometry import Polygon

from monatune.metrics.average_precision import precision_recall, voc07_11point_ap
from monatune.ops.rotated_boxes import boxes_to_polygons, polygons_to_boxes
from monatune.ops.rotated_iou import rotated_box_iou


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _shape(poly: np.ndarray) -> Polygon:
    shape = Polygon(np.asarray(poly, dtype=np.float64).reshape(-1, 2))
    return shape if shape.is_valid else shape.convex_hull  # self-crossing labels: use their hull


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two 4-point polygons (8,) by exact polygon clipping (shapely); 0 when the union is empty."""
    pa, pb = _shape(a), _shape(b)
    union = pa.union(pb).area
    return float(pa.intersection(pb).area / union) if union > 0 else 0.0


def detection_polygons(result: Mapping) -> np.ndarray:
    """(K, 8) polygons of a detection dict holding ``polygons`` (K, 8) or ``boxes`` (K, 5)."""
    if "polygons" in result:
        return _as_numpy(result["polygons"]).reshape(-1, 8).astype(np.float64)
    boxes = result["boxes"]
    boxes = boxes if isinstance(boxes, torch.Tensor) else torch.as_tensor(np.asarray(boxes))
    return _as_numpy(boxes_to_polygons(boxes.double().reshape(-1, 5)))


def detection_boxes(result: Mapping) -> np.ndarray:
    """(K, 5) rotated boxes of a detection dict holding ``boxes`` (K, 5) or only ``polygons`` (K, 8)."""
    if "boxes" in result:
        return _as_numpy(result["boxes"]).reshape(-1, 5).astype(np.float64)
    polygons = torch.as_tensor(_as_numpy(result["polygons"]).reshape(-1, 8), dtype=torch.float64)
    return _as_numpy(polygons_to_boxes(polygons))


def _iou_matrix(dets: np.ndarray, gts: np.ndarray, kind: str) -> np.ndarray:
    """(K, G) IoU between detections and ground truth: polygons (., 8) or rotated boxes (., 5)."""
    if kind == "rotated":
        return _as_numpy(rotated_box_iou(torch.as_tensor(dets), torch.as_tensor(gts)))
    return np.array([[polygon_iou(d, g) for g in gts] for d in dets]).reshape(len(dets), len(gts))


@dataclass
class DotaEvaluation:
    """``mean_ap`` over classes with ground truth; ``ap`` per class name (NaN without ground truth);
    ``num_ground_truth`` counts non-difficult objects per class."""

    mean_ap: float
    ap: dict[str, float]
    num_ground_truth: dict[str, int]


def evaluate_dota(
    detections: Mapping[str, Mapping],
    annotations: Mapping[str, Mapping],
    classes: Sequence[str],
    iou_threshold: float = 0.5,
    *,
    difficult: str = "ignore",
    iou: str = "polygon",
) -> DotaEvaluation:
    """Task1 mAP.

    detections: image id -> dict(``boxes`` (K, 5) or ``polygons`` (K, 8), ``scores`` (K,), ``labels`` (K,)).
    annotations: image id -> dict(``polygons`` (N, 8), ``labels`` (N,), ``difficult`` (N,) bool).
    ``difficult``: ``"ignore"`` (DOTA) or ``"count"`` (STAR: difficult objects are ordinary ground
    truth); ``iou``: ``"polygon"`` (DOTA) or ``"rotated"`` (STAR). Detections for an image without
    annotations count as false positives.
    """
    if difficult not in ("ignore", "count"):
        raise ValueError(f"difficult: {difficult!r} is not one of ignore, count")
    if iou not in ("polygon", "rotated"):
        raise ValueError(f"iou: {iou!r} is not one of polygon, rotated")
    shapes = detection_boxes if iou == "rotated" else detection_polygons
    ap, counts = {}, {}
    gt = {}
    for k, v in annotations.items():
        polys = _as_numpy(v["polygons"]).reshape(-1, 8).astype(np.float64)
        hard = _as_numpy(v["difficult"]).reshape(-1).astype(bool)
        gt_shapes = _as_numpy(polygons_to_boxes(torch.as_tensor(polys))) if iou == "rotated" else polys
        gt[k] = (gt_shapes, _as_numpy(v["labels"]).reshape(-1), hard & (difficult == "ignore"))
    dets = {
        k: (shapes(v), _as_numpy(v["scores"]).reshape(-1), _as_numpy(v["labels"]).reshape(-1))
        for k, v in detections.items()
    }
    for c, name in enumerate(classes):
        records, ious_of = [], {}
        for image_id, (det_shapes, det_scores, det_labels) in dets.items():
            mine = np.nonzero(det_labels == c)[0]
            if image_id in gt:
                gt_shapes, gt_labels, _ = gt[image_id]
                ious_of[image_id] = _iou_matrix(det_shapes[mine], gt_shapes[gt_labels == c], iou)
            records += [(float(det_scores[d]), image_id, row) for row, d in enumerate(mine)]
        records.sort(key=lambda r: -r[0])  # stable: ties keep image/detection order
        matched = {k: np.zeros(int((v[1] == c).sum()), dtype=bool) for k, v in gt.items()}
        num_gt = sum(int(((v[1] == c) & ~v[2]).sum()) for v in gt.values())
        tp, scores = [], []
        for score, image_id, row in records:
            outcome = 0.0
            if image_id in gt:
                hard = gt[image_id][2][gt[image_id][1] == c]
                ious = ious_of[image_id][row]
                if ious.size and ious.max() > iou_threshold:
                    best = int(ious.argmax())
                    if hard[best]:
                        continue  # matching an ignored (difficult) object
                    if not matched[image_id][best]:
                        matched[image_id][best] = True
                        outcome = 1.0
            tp.append(outcome)
            scores.append(score)
        counts[name] = num_gt
        if num_gt == 0:
            ap[name] = math.nan
            continue
        recall, precision = precision_recall(np.array(tp), np.array(scores), num_gt)
        ap[name] = voc07_11point_ap(recall, precision) if len(tp) else 0.0
    valid = [v for v in ap.values() if not math.isnan(v)]
    return DotaEvaluation(float(np.mean(valid)) if valid else 0.0, ap, counts)


def write_task1_submission(
    out_dir: str | Path, detections: Mapping[str, Mapping], classes: Sequence[str]
) -> list[Path]:
    """Write ``Task1_<class>.txt`` files: ``<image id> <score> x1 y1 x2 y2 x3 y3 x4 y4`` per detection.

    One file per class (empty when the class has no detection), as the DOTA/STAR servers expect.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines: list[list[str]] = [[] for _ in classes]
    for image_id, result in detections.items():
        polys, scores, labels = detection_polygons(result), _as_numpy(result["scores"]), _as_numpy(result["labels"])
        for poly, score, label in zip(polys, scores, labels):
            lines[int(label)].append(f"{image_id} {float(score):.6f} " + " ".join(f"{v:.2f}" for v in poly))
    paths = []
    for name, rows in zip(classes, lines):
        path = out_dir / f"Task1_{name}.txt"
        path.write_text("\n".join(rows) + ("\n" if rows else ""))
        paths.append(path)
    return paths


def read_task1_submission(folder: str | Path, classes: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Read ``Task1_<class>.txt`` files back into image id -> dict(polygons, scores, labels)."""
    out: dict[str, dict[str, list]] = {}
    for c, name in enumerate(classes):
        path = Path(folder) / f"Task1_{name}.txt"
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            image_id, score, *coords = line.split()
            entry = out.setdefault(image_id, {"polygons": [], "scores": [], "labels": []})
            entry["polygons"].append([float(v) for v in coords])
            entry["scores"].append(float(score))
            entry["labels"].append(c)
    return {
        k: {
            "polygons": np.asarray(v["polygons"]).reshape(-1, 8),
            "scores": np.asarray(v["scores"]),
            "labels": np.asarray(v["labels"], dtype=np.int64),
        }
        for k, v in out.items()
    }


__all__ = [
    "DotaEvaluation",
    "detection_boxes",
    "detection_polygons",
    "evaluate_dota",
    "polygon_iou",
    "read_task1_submission",
    "write_task1_submission",
]
