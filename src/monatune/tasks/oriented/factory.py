"""Build an oriented detector by name, on a given DenseSwin or straight from a config's model section."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from torch import nn

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
    """Backbone by name + detector, optionally tuned: the same builder as ``monatune fit`` (``build_oriented``
    on the equivalent config: window layout, the backbone's input statistics, tuning).

    With ``method``, the backbone is frozen except what the method trains; the neck and heads train
    fully, and ``save_adapter(model)`` saves both. Without, every parameter trains.
    """
    from monatune.engine.config import parse_config
    from monatune.tasks.oriented.module import build_oriented

    head_options = {k: list(v) if isinstance(v, tuple) else v for k, v in detector_options.items()}
    if out_indices is not None:
        head_options["out_indices"] = list(out_indices)
    model = {
        "backbone": backbone, "pretrained": pretrained, "weights": weights, "drop_path_rate": drop_path_rate,
        "num_classes": num_classes, "head": detector, "head_options": head_options,
        "method": method or "full", "method_options": method_options or {},
    }  # fmt: skip
    return build_oriented(parse_config({"task": "oriented", "model": model}), tune=method is not None)


__all__ = ["DEFAULT_OUT_INDICES", "DETECTORS", "build_oriented_detector", "build_oriented_model"]
