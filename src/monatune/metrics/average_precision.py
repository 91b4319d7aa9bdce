"""Average precision from a ranked list of detections (shared by VOC and DOTA evaluators)."""

from __future__ import annotations

import numpy as np


def precision_recall(is_true_positive: np.ndarray, scores: np.ndarray, num_ground_truth: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (recall, precision) after sorting detections by descending score.

    Ties keep the given order (stable sort), as the reference VOC devkit does.
    ``num_ground_truth`` counts only non-difficult objects.
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.asarray(is_true_positive, dtype=np.float64)[order]
    fp = 1.0 - tp
    tp_cum, fp_cum = np.cumsum(tp), np.cumsum(fp)
    recall = tp_cum / max(num_ground_truth, 1)
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    return recall, precision


def voc07_11point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """PASCAL VOC 2007 AP: mean over t in {0, 0.1, ..., 1} of the max precision at recall >= t."""
    ap = 0.0
    for t in np.linspace(0.0, 1.0, 11):
        mask = recall >= t
        ap += (precision[mask].max() if mask.any() else 0.0) / 11.0
    return float(ap)


def area_under_pr(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC 2010+ AP: area under the monotone (max-from-the-right) precision envelope."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    idx = np.where(r[1:] != r[:-1])[0]
    return float(np.sum((r[idx + 1] - r[idx]) * p[idx + 1]))
