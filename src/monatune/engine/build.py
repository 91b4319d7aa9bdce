"""Build the tuned model of an experiment from its ``model`` section."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from monatune.backbones import create_backbone
from monatune.engine.config import ModelConfig


def backbone_from_config(m: ModelConfig, *, dense: bool = False, num_classes: int = 0, out_indices: Sequence[int] = (0, 1, 2, 3), **kwargs) -> nn.Module:
    """The (untuned) backbone with its pretrained weights: ``pretrained`` (hub) or ``weights`` (file)."""
    name = m.pretrained if isinstance(m.pretrained, str) else m.backbone
    return create_backbone(
        name,
        dense=dense,
        out_indices=out_indices,
        pretrained=bool(m.pretrained) and m.weights is None,  # a local file replaces the hub download
        weights=m.weights,
        num_classes=num_classes,
        drop_path_rate=m.drop_path_rate,
        allow_missing=m.allow_missing,
        **kwargs,
    )
