"""Linear bottleneck adapters: Houlsby's sequential adapter and AdaptFormer's parallel branch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    """up(dropout(GELU(down(x)))) on the last dimension; (..., dim) -> (..., dim).

    ``down`` and ``up`` are trunc_normal(0.02) with zero bias, as in the public Mona code's baselines.
    """

    def __init__(self, dim: int, mid_dim: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.down = nn.Linear(dim, mid_dim)
        self.up = nn.Linear(mid_dim, dim)
        self.dropout = nn.Dropout(dropout)
        for linear in (self.down, self.up):
            nn.init.trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(F.gelu(self.down(x))))


class HoulsbyAdapter(Bottleneck):
    """Sequential adapter: a(x) = x + bottleneck(x). Applied to a branch output before its residual add."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


class ScaledParallelAdapter(Bottleneck):
    """AdaptFormer's parallel branch: scale * bottleneck(x), added next to the MLP branch."""

    def __init__(self, dim: int, mid_dim: int = 64, dropout: float = 0.1, scale: float = 0.1) -> None:
        super().__init__(dim, mid_dim, dropout)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * super().forward(x)
