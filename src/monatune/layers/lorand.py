"""LoRand (Yin et al., CVPR 2023): low-rank multi-branch projections with shared-free kernels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRandLinear(nn.Module):
    """A Linear whose weight is sum_i A_i (in x beta) @ K_i (beta x beta) @ B_i (beta x out), plus bias.

    ``alpha`` branches of rank ``beta``. Input (..., in) -> (..., out).
    """

    def __init__(self, in_features: int, out_features: int, alpha: int = 4, beta: int = 16) -> None:
        super().__init__()
        if alpha < 1 or beta < 1:
            raise ValueError(f"LoRand needs alpha >= 1 and beta >= 1, got alpha={alpha}, beta={beta}")
        self.in_features, self.out_features = in_features, out_features
        self.lorand_A = nn.Parameter(torch.empty(alpha, in_features, beta))
        self.lorand_K = nn.Parameter(torch.empty(alpha, beta, beta))
        self.lorand_B = nn.Parameter(torch.empty(alpha, beta, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        for p in (self.lorand_A, self.lorand_K, self.lorand_B):
            for branch in p:
                nn.init.kaiming_uniform_(branch, a=math.sqrt(5))

    def composed_weight(self) -> torch.Tensor:
        """(in, out) weight: sum over branches of A_i K_i B_i."""
        return torch.einsum("aib,abc,aco->io", self.lorand_A, self.lorand_K, self.lorand_B)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.composed_weight().t(), self.bias)


class LoRandAdapter(nn.Module):
    """x + P2(GELU(P1(x))) with hidden width dim // 2; P1, P2 are LoRand projections. (..., d) -> (..., d)."""

    def __init__(self, dim: int, alpha: int = 4, beta: int = 16) -> None:
        super().__init__()
        hidden = max(dim // 2, 1)
        self.P1 = LoRandLinear(dim, hidden, alpha, beta)
        self.P2 = LoRandLinear(hidden, dim, alpha, beta)
        # Start as an identity so the frozen backbone's function is untouched at step 0.
        nn.init.zeros_(self.P2.lorand_K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.P2(F.gelu(self.P1(x)))
