"""Mona: the Multi-cognitive Visual Adapter (Yin et al., CVPR 2025).

Parameter names follow the public code (``norm``, ``gamma``, ``gammax``, ``project1``,
``adapter_conv.conv1/conv2/conv3/projector``, ``project2``) so state dicts are interchangeable.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ScaleKind = Literal["vector", "scalar"]


class MultiCognitiveConv(nn.Module):
    """Depthwise convolutions of several sizes, averaged, plus a 1x1 projector; both residual.

    Input and output: (B, n, H, W).  z -> z + mean_k(dwconv_k(z)) -> z + projector(z).
    """

    def __init__(self, channels: int, kernel_sizes: Sequence[int] = (3, 5, 7)) -> None:
        super().__init__()
        if not kernel_sizes or any(k % 2 == 0 or k < 1 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd positive integers, got {tuple(kernel_sizes)}")
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        for i, k in enumerate(self.kernel_sizes, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels))
        self.projector = nn.Conv2d(channels, channels, 1)

    def depthwise_convs(self) -> list[nn.Conv2d]:
        return [getattr(self, f"conv{i}") for i in range(1, len(self.kernel_sizes) + 1)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        convs = self.depthwise_convs()
        z = z + sum(conv(z) for conv in convs) / len(convs)
        return z + self.projector(z)


class Mona(nn.Module):
    """Mona adapter on a residual stream of width ``dim``.

    Input: (B, H, W, C) channels-last map, or (B, N, C) tokens with ``hw=(H, W)``, N = H*W row-major.
    Output: same shape. ``y = x + project2(dropout(gelu(conv(project1(gamma*LN(x) + gammax*x)))))``.

    Args:
        dim: channels C of the stream.
        mid_dim: bottleneck width n (64 in the paper).
        kernel_sizes: depthwise kernel sizes of the multi-cognitive filters.
        scale: "vector" (per-channel gamma/gammax, the public code) or "scalar" (the paper's s1, s2).
        dropout: dropout after GELU.
    """

    def __init__(
        self,
        dim: int,
        mid_dim: int = 64,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        scale: ScaleKind = "vector",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if scale not in ("vector", "scalar"):
            raise ValueError(f"scale must be 'vector' or 'scalar', got {scale!r}")
        self.dim, self.mid_dim, self.scale = dim, mid_dim, scale
        scale_shape = (dim,) if scale == "vector" else (1,)
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.gamma = nn.Parameter(torch.full(scale_shape, 1e-6))
        self.gammax = nn.Parameter(torch.ones(scale_shape))
        self.project1 = nn.Linear(dim, mid_dim)
        self.adapter_conv = MultiCognitiveConv(mid_dim, kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.project2 = nn.Linear(mid_dim, dim)
        for linear in (self.project1, self.project2):
            nn.init.trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)

    def _as_map(self, x: torch.Tensor, hw: tuple[int, int] | None) -> tuple[torch.Tensor, bool]:
        if x.dim() == 4:
            return x, False
        if x.dim() == 3:
            if hw is None:
                raise ValueError("Mona got tokens (B, N, C) without hw=(H, W); pass the token grid")
            h, w = hw
            if h * w != x.shape[1]:
                raise ValueError(f"Mona: hw={hw} does not match N={x.shape[1]} tokens")
            return x.reshape(x.shape[0], h, w, x.shape[2]), True
        raise ValueError(f"Mona expects (B, H, W, C) or (B, N, C), got shape {tuple(x.shape)}")

    def adapter_input(self, x: torch.Tensor) -> torch.Tensor:
        """Input optimisation: gamma * LN(x) + gammax * x."""
        return self.gamma * self.norm(x) + self.gammax * x

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        x_map, was_tokens = self._as_map(x, hw)
        z = self.project1(self.adapter_input(x_map))  # (B, H, W, n)
        z = self.adapter_conv(z.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        y = x_map + self.project2(self.dropout(F.gelu(z)))
        return y.reshape(x.shape) if was_tokens else y
