"""Backbones that ship inside the package (filled in by the engine issue)."""

from __future__ import annotations

from torch import nn

EMBEDDED_BACKBONES: dict[str, dict] = {}


def create_embedded(name: str, *, num_classes: int = 0, load_weights: bool = True, **kwargs) -> nn.Module:
    raise ValueError(f"unknown embedded backbone {name!r}")
