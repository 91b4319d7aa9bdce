"""Token sequences of plain ViTs: prefix tokens (class, distillation, register) then the patch grid.

A ViT block sees (B, N, C) tokens, not a map. ``TokenLayout`` says how many prefix tokens lead the
sequence and the (H, W) patch grid of the current forward pass; ``GridRecorder``, a forward hook on
the patch embedding, sets the grid at every forward (so timm's ``dynamic_img_size`` and rectangular
inputs work). One layout per backbone, shared by its blocks' Mona modules; hooks and layouts are plain
objects, so tuned models deep-copy and pickle with their own layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

_LAYOUT_ATTR = "_monatune_token_layout"


@dataclass
class TokenLayout:
    """``num_prefix`` tokens, then ``hw[0] * hw[1]`` patch tokens in row-major order (``num_prefix``
    None: whatever precedes the grid, read off each sequence)."""

    num_prefix: int | None
    hw: tuple[int, int] | None = None  # the patch grid of the current forward (set by GridRecorder)

    def prefix_of(self, tokens: torch.Tensor) -> int:
        h, w = self.grid(tokens)
        return tokens.shape[1] - h * w if self.num_prefix is None else self.num_prefix

    def grid(self, tokens: torch.Tensor) -> tuple[int, int]:
        """The (H, W) grid of ``tokens`` (B, N, C), checked against N."""
        if self.hw is None:
            raise RuntimeError("the token grid is unknown: the backbone's patch embedding has not run in this forward")
        h, w = self.hw
        if (self.num_prefix or 0) + h * w > tokens.shape[1] or (self.num_prefix is not None and self.num_prefix + h * w != tokens.shape[1]):
            raise ValueError(f"{tokens.shape[1]} tokens are not {self.num_prefix} prefix tokens + a {h}x{w} patch grid")
        return h, w


class GridRecorder:
    """Forward hook of a patch embedding: ``grid_of(inputs, output) -> (H, W)`` into the layout."""

    def __init__(self, layout: TokenLayout, grid_of: Callable[[nn.Module, tuple, torch.Tensor], tuple[int, int]]) -> None:
        self.layout, self.grid_of = layout, grid_of

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.layout.hw = tuple(int(s) for s in self.grid_of(module, inputs, output))


def token_layout(backbone: nn.Module, patch_embed: nn.Module, num_prefix: int | None, grid_of) -> TokenLayout:
    """The layout of ``backbone`` (created with its hook on ``patch_embed`` on first use, then reused)."""
    layout = backbone.__dict__.get(_LAYOUT_ATTR)
    if layout is None:
        layout = TokenLayout(num_prefix)
        patch_embed.register_forward_hook(GridRecorder(layout, grid_of))
        backbone.__dict__[_LAYOUT_ATTR] = layout
    return layout


__all__ = ["GridRecorder", "TokenLayout", "token_layout"]
