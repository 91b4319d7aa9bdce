"""LoRA on the query and value parts of a fused qkv projection (a Linear, or the packed in-projection of
``nn.MultiheadAttention``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LowRankDelta(nn.Module):
    """A rank-r update B @ A of a (out, in) weight; A kaiming-uniform(a=sqrt 5), B zeros (identity at init)."""

    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def weight_delta(self) -> torch.Tensor:
        return self.lora_B @ self.lora_A


class LoRAQKV(nn.Module):
    """A fused qkv Linear (3d outputs: q, k, v) whose q and v rows get low-rank updates.

    Keeps the wrapped Linear's ``weight`` and ``bias`` parameters under the same names (backbone
    state-dict keys are unchanged) and exposes ``weight`` as the merged weight, so code that calls
    the module and code that reads ``.weight`` directly (torchvision's functional attention) both see
    LoRA. Input (..., d) -> output (..., 3d).
    """

    def __init__(self, qkv: nn.Linear, rank: int = 64, alpha: float = 1.0) -> None:
        super().__init__()
        out_features, in_features = qkv.weight.shape
        if out_features % 3:
            raise ValueError(f"LoRAQKV expects a fused qkv Linear with 3*d outputs, got {out_features}")
        self.in_features, self.out_features = in_features, out_features
        # Stored directly: ``register_parameter`` would consult the ``weight`` property below.
        self._parameters["weight"] = qkv.weight
        self._parameters["bias"] = qkv.bias
        d = out_features // 3
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        self.lora_q = LowRankDelta(in_features, d, rank)
        self.lora_v = LowRankDelta(in_features, d, rank)

    @property  # type: ignore[override]
    def weight(self) -> torch.Tensor:  # noqa: F811 - the merged view shadows the stored parameter
        base = self._parameters["weight"]
        zeros_k = base.new_zeros(self.out_features // 3, self.in_features)
        delta = torch.cat([self.lora_q.weight_delta(), zeros_k, self.lora_v.weight_delta()], dim=0)
        return base + self.scaling * delta.to(base.dtype)

    def base_weight(self) -> torch.Tensor:
        return self._parameters["weight"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self._parameters["bias"])

    def unwrap(self) -> nn.Linear:
        """A plain Linear holding the merged weight (for export)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self._parameters["bias"] is not None)
        with torch.no_grad():
            linear.weight.copy_(self.weight)
            if linear.bias is not None:
                linear.bias.copy_(self._parameters["bias"])
        return linear.to(self.base_weight().device, self.base_weight().dtype)


class LoRAMultiheadAttention(nn.MultiheadAttention):
    """An ``nn.MultiheadAttention`` (packed q, k, v in ``in_proj_weight``) whose q and v rows get low-rank
    updates. Made in place from an existing module (``wrap``): its parameters keep their names, and
    ``in_proj_weight`` reads as the merged weight, which torch's attention functions take."""

    @classmethod
    def wrap(cls, mha: nn.MultiheadAttention, rank: int = 64, alpha: float = 1.0) -> "LoRAMultiheadAttention":
        if not mha._qkv_same_embed_dim:
            raise ValueError("LoRA on nn.MultiheadAttention needs packed q, k, v (kdim == vdim == embed_dim)")
        weight = mha._parameters["in_proj_weight"]
        d = mha.embed_dim
        mha.__class__ = cls
        mha.rank, mha.alpha, mha.scaling = rank, alpha, alpha / rank
        mha.lora_q = LowRankDelta(d, d, rank).to(weight.device, weight.dtype)
        mha.lora_v = LowRankDelta(d, d, rank).to(weight.device, weight.dtype)
        return mha

    def merge_(self) -> nn.MultiheadAttention:
        """In place: the merged weight into ``in_proj_weight``, the LoRA factors gone, a plain
        ``nn.MultiheadAttention`` again (for export)."""
        with torch.no_grad():
            merged = self.in_proj_weight.clone()
            self._parameters["in_proj_weight"].copy_(merged)
        del self.lora_q, self.lora_v
        self.__class__ = nn.MultiheadAttention
        return self

    @property  # type: ignore[override]
    def in_proj_weight(self) -> torch.Tensor:  # noqa: F811 - the merged view shadows the stored parameter
        base = self._parameters["in_proj_weight"]
        zeros_k = base.new_zeros(self.embed_dim, self.embed_dim)
        delta = torch.cat([self.lora_q.weight_delta(), zeros_k, self.lora_v.weight_delta()], dim=0)
        return base + self.scaling * delta.to(base.dtype)


class LoRALinear(nn.Module):
    """A Linear (one of split q/k/v projections) with a low-rank update; keeps ``weight``/``bias`` names."""

    def __init__(self, linear: nn.Linear, rank: int = 64, alpha: float = 1.0) -> None:
        super().__init__()
        self._parameters["weight"] = linear.weight
        self._parameters["bias"] = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        self.lora = LowRankDelta(linear.in_features, linear.out_features, rank)

    @property  # type: ignore[override]
    def weight(self) -> torch.Tensor:  # noqa: F811 - the merged view shadows the stored parameter
        base = self._parameters["weight"]
        return base + self.scaling * self.lora.weight_delta().to(base.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self._parameters["bias"])

    def unwrap(self) -> nn.Linear:
        """A plain Linear holding the merged weight (for export)."""
        base = self._parameters["weight"]
        linear = nn.Linear(self.in_features, self.out_features, bias=self._parameters["bias"] is not None)
        with torch.no_grad():
            linear.weight.copy_(self.weight)
            if linear.bias is not None:
                linear.bias.copy_(self._parameters["bias"])
        return linear.to(base.device, base.dtype)
