"""Dropout whose keep mask costs one generator draw per two elements.

``torch.bernoulli_`` on CPU draws one 32-bit word per element through torch's (serial) generator
and converts it to a float: about 6 ns an element on the benchmark CPU, 14 % of a Mona training
step at Swin stage-1 sizes. ``keep_mask`` draws one 63-bit word per *two* elements from the same
generator (so ``torch.manual_seed`` governs it) and compares its two halves with integer
thresholds: the low 32 bits are uniform over int32, the high 31 bits uniform over [0, 2^31).
Each element is dropped with probability round(p * 2^32) / 2^32 (low half) or
round(p * 2^31) / 2^31 (high half): within 2^-31 of p, finer than the 24-bit float uniforms that
``bernoulli_`` compares against.

On other devices (CUDA) torch's own ``bernoulli_`` is one fused kernel and the word trick only adds
launches (issue 13), so ``keep_mask`` uses it there (``native=None`` picks by device).
"""

from __future__ import annotations

import math
import sys

import torch
from torch import nn


def keep_mask(
    shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu", native: bool | None = None
) -> torch.Tensor:
    """A bool tensor of ``shape``: True (keep) with probability 1 - p, independently per element.

    ``native``: draw with torch's ``bernoulli_`` (one kernel) instead of the two-per-word trick;
    None = on every device but the CPU."""
    shape = tuple(int(size) for size in shape)
    if p <= 0.0:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if p >= 1.0:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    device = torch.device(device)
    if native if native is not None else device.type != "cpu":
        return torch.empty(shape, dtype=torch.bool, device=device).bernoulli_(1.0 - p)
    return _keep_mask(math.prod(shape), float(p), device).view(shape)


@torch.library.custom_op("monatune::keep_mask", mutates_args=())
def _keep_mask(numel: int, p: float, device: torch.device) -> torch.Tensor:
    # An opaque op for torch.compile (dynamo does not trace Tensor.random_): compiled and eager
    # code draw the same mask from the same generator state.
    words = torch.empty((numel + 1) // 2, dtype=torch.int64, device=device).random_()  # [0, 2^63)
    low = round(p * 2**32) - 2**31  # low half, as int32, is uniform on [-2^31, 2^31)
    high = round(p * 2**31)  # high half is uniform on [0, 2^31)
    thresholds = [low, high] if sys.byteorder == "little" else [high, low]
    keep = words.view(torch.int32).view(-1, 2) >= torch.tensor(thresholds, dtype=torch.int32, device=device)
    return keep.view(-1)[:numel].clone() if numel % 2 else keep.view(-1)


@_keep_mask.register_fake
def _(numel: int, p: float, device: torch.device) -> torch.Tensor:
    return torch.empty(numel, dtype=torch.bool, device=device)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the mask of ``keep_mask``: same function and distribution, drawn faster.

    Mona's plain and fast forms both draw through ``keep_mask``, so with the same seed they drop the
    same units (the tests compare the two forms in training mode).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = keep_mask(x.shape, self.p, x.device)
        scale = 1.0 / (1.0 - self.p) if self.p < 1.0 else 0.0
        return x.mul_(keep).mul_(scale) if self.inplace else x * keep * scale
