"""LoRand (Yin et al., CVPR 2023): low-rank multi-branch projections with shared-free kernels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LORAND_INITS = ("identity", "kaiming")
LORAND_BIAS_INITS = ("zeros", "uniform")


class LoRandLinear(nn.Module):
    """A Linear whose weight is sum_i A_i (in x beta) @ K_i (beta x beta) @ B_i (beta x out), plus bias.

    ``alpha`` branches of rank ``beta``. Input (..., in) -> (..., out). A, K and B start
    kaiming-uniform (a = sqrt 5, per branch); ``bias_init="uniform"`` draws the bias from
    U(-1/sqrt(in), 1/sqrt(in)) as ``nn.Linear`` does (STAR-MMRotate's LoRand), ``"zeros"`` starts at 0.
    """

    def __init__(
        self, in_features: int, out_features: int, alpha: int = 4, beta: int = 16, bias_init: str = "zeros"
    ) -> None:
        super().__init__()
        if alpha < 1 or beta < 1:
            raise ValueError(f"LoRand needs alpha >= 1 and beta >= 1, got alpha={alpha}, beta={beta}")
        if bias_init not in LORAND_BIAS_INITS:
            raise ValueError(f"LoRand bias_init {bias_init!r} is not valid; choose one of: {', '.join(LORAND_BIAS_INITS)}")
        self.in_features, self.out_features = in_features, out_features
        self.lorand_A = nn.Parameter(torch.empty(alpha, in_features, beta))
        self.lorand_K = nn.Parameter(torch.empty(alpha, beta, beta))
        self.lorand_B = nn.Parameter(torch.empty(alpha, beta, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        for p in (self.lorand_A, self.lorand_K, self.lorand_B):
            for branch in p:
                nn.init.kaiming_uniform_(branch, a=math.sqrt(5))
        if bias_init == "uniform":
            bound = 1.0 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def composed_weight(self) -> torch.Tensor:
        """(in, out) weight: sum over branches of A_i K_i B_i."""
        return torch.einsum("aib,abc,aco->io", self.lorand_A, self.lorand_K, self.lorand_B)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.composed_weight().t(), self.bias)


class LoRandAdapter(nn.Module):
    """x + P2(GELU(P1(x))) with hidden width dim // 2; P1, P2 are LoRand projections. (..., d) -> (..., d).

    ``init="identity"`` zeroes P2's kernels (and biases) so the adapter starts as an identity;
    ``init="kaiming"`` keeps every factor kaiming-uniform (STAR-MMRotate: not an identity at start).
    """

    def __init__(self, dim: int, alpha: int = 4, beta: int = 16, init: str = "identity", bias_init: str = "zeros") -> None:
        super().__init__()
        if init not in LORAND_INITS:
            raise ValueError(f"LoRand init {init!r} is not valid; choose one of: {', '.join(LORAND_INITS)}")
        hidden = max(dim // 2, 1)
        self.P1 = LoRandLinear(dim, hidden, alpha, beta, bias_init)
        self.P2 = LoRandLinear(hidden, dim, alpha, beta, bias_init)
        if init == "identity":  # the frozen backbone's function is untouched at step 0
            nn.init.zeros_(self.P2.lorand_K)
            nn.init.zeros_(self.P2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.P2(F.gelu(self.P1(x)))
