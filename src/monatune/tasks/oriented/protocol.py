"""Merging patch detections back into whole images, and how they are scored (SPEC §8.4).

The defaults are DOTA's: class-wise rotated NMS at IoU 0.1, no cap on boxes per original image,
difficult objects ignored, polygon IoU. STAR's public code differs: the single-stage detectors (KLD
RetinaNet, H2RBox-v2) merge with class-*agnostic* rotated NMS at 0.4, Oriented R-CNN class-wise at
0.4, difficult objects count as ordinary ground truth and IoU is taken between rotated boxes.

``data.options`` keys (read by :func:`merge_settings` and :func:`score_settings`):
``merge_nms_iou`` (0.1), ``merge_class_agnostic`` (false), ``merge_max_per_image`` (null: no cap),
``eval_iou_threshold`` (0.5), ``eval_difficult`` (``ignore`` | ``count``), ``eval_iou``
(``polygon`` | ``rotated``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from monatune.ops.nms import batched_rotated_nms
from monatune.tasks.oriented.patches import parse_patch_name

DIFFICULT_RULES = ("ignore", "count")
IOU_KINDS = ("polygon", "rotated")


@dataclass(frozen=True)
class MergeSettings:
    """Rotated NMS over the shifted patch detections of one original image: IoU ``nms_iou``, across
    classes when ``class_agnostic``, then at most ``max_per_image`` boxes (None: all)."""

    nms_iou: float = 0.1
    class_agnostic: bool = False
    max_per_image: int | None = None


@dataclass(frozen=True)
class ScoreSettings:
    """How detections meet ground truth: IoU above ``iou_threshold``, measured between polygons
    (``iou="polygon"``, DOTA devkit) or rotated boxes (``"rotated"``, mmrotate); ``difficult``
    objects ignored (neither true nor false positives, not counted) or counted as ordinary objects."""

    iou_threshold: float = 0.5
    difficult: str = "ignore"
    iou: str = "polygon"


def _choice(options: Mapping[str, Any], key: str, default: str, valid: tuple[str, ...]) -> str:
    value = options.get(key, default)
    if value not in valid:
        raise ValueError(f"data.options.{key}: {value!r} is not one of {', '.join(valid)}")
    return value


def merge_settings(options: Mapping[str, Any]) -> MergeSettings:
    """:class:`MergeSettings` from ``data.options`` (defaults: DOTA's)."""
    cap = options.get("merge_max_per_image")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ValueError(f"data.options.merge_max_per_image: {cap!r} must be a positive integer or null (no cap)")
    agnostic = options.get("merge_class_agnostic", False)
    if not isinstance(agnostic, bool):
        raise ValueError(f"data.options.merge_class_agnostic: {agnostic!r} must be true or false")
    return MergeSettings(float(options.get("merge_nms_iou", 0.1)), agnostic, cap)


def score_settings(options: Mapping[str, Any]) -> ScoreSettings:
    """:class:`ScoreSettings` from ``data.options`` (defaults: DOTA's)."""
    return ScoreSettings(
        float(options.get("eval_iou_threshold", 0.5)),
        _choice(options, "eval_difficult", "ignore", DIFFICULT_RULES),
        _choice(options, "eval_iou", "polygon", IOU_KINDS),
    )


def merge_detections(
    patch_results: Mapping[str, Mapping[str, torch.Tensor]], settings: MergeSettings = MergeSettings()
) -> dict[str, dict[str, torch.Tensor]]:
    """Detections per DOTA patch id (``<image>__<scale>__<x0>___<y0>``: ``boxes`` (K, 5) in patch
    pixels, ``scores`` (K,), ``labels`` (K,)) -> detections per original image: boxes shifted by their
    patch origin, then rotated NMS as ``settings`` says, best first."""
    grouped: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
    for name, result in patch_results.items():
        image_id, x0, y0 = parse_patch_name(name)
        boxes = result["boxes"].clone()
        boxes[:, 0] += x0
        boxes[:, 1] += y0
        grouped.setdefault(image_id, []).append((boxes, result["scores"], result["labels"]))
    merged = {}
    for image_id, parts in grouped.items():
        boxes, scores, labels = (torch.cat(p) for p in zip(*parts))
        groups = torch.zeros_like(labels) if settings.class_agnostic else labels
        keep = batched_rotated_nms(boxes, scores, groups, settings.nms_iou)[: settings.max_per_image]
        merged[image_id] = {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
    return merged


__all__ = [
    "DIFFICULT_RULES",
    "IOU_KINDS",
    "MergeSettings",
    "ScoreSettings",
    "merge_detections",
    "merge_settings",
    "score_settings",
]
