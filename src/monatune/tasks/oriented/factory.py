"""Build an oriented detector by name, on a given DenseSwin or straight from a config's model section."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from monatune.backbones.stats import input_stats
from monatune.tasks.oriented.h2rbox_v2 import build_h2rbox_v2
from monatune.tasks.oriented.oriented_rcnn import build_oriented_rcnn
from monatune.tasks.oriented.retinanet import build_rotated_retinanet

DETECTORS: dict[str, Callable[..., nn.Module]] = {
    "rotated_retinanet": build_rotated_retinanet,
    "oriented_rcnn": build_oriented_rcnn,
    "h2rbox_v2": build_h2rbox_v2,
}

# Backbone stages each detector reads by default (SPEC §8.2): Oriented R-CNN all four (FPN strides
# 4-32 + one max-pooled level: anchors at 4-64, RoIs pooled at 4-32), the single-stage detectors
# stages 2-4 (FPN strides 8-128).
DEFAULT_OUT_INDICES: dict[str, tuple[int, ...]] = {
    "rotated_retinanet": (1, 2, 3),
    "oriented_rcnn": (0, 1, 2, 3),
    "h2rbox_v2": (1, 2, 3),
}


def build_oriented_detector(name: str, backbone: nn.Module, num_classes: int, **options: Any) -> nn.Module:
    """``DETECTORS[name](backbone, num_classes, **options)``; an unknown name lists the valid ones."""
    if name not in DETECTORS:
        raise ValueError(f"unknown oriented detector {name!r}; valid: {', '.join(DETECTORS)}")
    return DETECTORS[name](backbone, num_classes, **options)


def build_oriented_model(
    detector: str,
    backbone: str,
    num_classes: int,
    *,
    out_indices: Sequence[int] | None = None,
    pretrained: bool | str = False,
    weights: str | None = None,
    drop_path_rate: float = 0.2,
    method: str | None = None,
    method_options: dict[str, Any] | None = None,
    **detector_options: Any,
) -> nn.Module:
    """Backbone by name (``monatune.create_backbone(..., dense=True)``) + detector, optionally tuned.

    With ``method``, ``monatune.tuning.apply_with_heads(model, method)`` freezes the backbone except
    what the method trains; the neck and heads train fully, and ``save_adapter(model)`` saves both.
    """
    from monatune.backbones import create_backbone
    from monatune.tuning import apply_with_heads

    name = pretrained if isinstance(pretrained, str) else backbone
    body = create_backbone(
        name,
        dense=True,
        out_indices=tuple(out_indices if out_indices is not None else DEFAULT_OUT_INDICES.get(detector, (1, 2, 3))),
        pretrained=bool(pretrained),
        weights=weights,
        drop_path_rate=drop_path_rate,
    )
    model = build_oriented_detector(detector, body, num_classes, **detector_options)
    mean, std = input_stats(name)  # the backbone's own statistics, as build_oriented does
    model.image_mean.copy_(torch.tensor(mean).view(3, 1, 1))
    model.image_std.copy_(torch.tensor(std).view(3, 1, 1))
    if method is not None:
        apply_with_heads(model, method, **(method_options or {}))
    return model


__all__ = ["DEFAULT_OUT_INDICES", "DETECTORS", "build_oriented_detector", "build_oriented_model"]
