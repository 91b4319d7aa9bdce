"""Learning-rate schedules stepped every iteration: cosine, step and poly, each with linear warmup."""

from __future__ import annotations

import math
from typing import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(
    step: int,
    *,
    kind: str,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_ratio: float = 0.001,
    min_lr_ratio: float = 0.01,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    poly_power: float = 1.0,
) -> float:
    """Multiplier of the base lr at iteration ``step`` (0-based).

    cosine: from 1 down to ``min_lr_ratio`` over ``total_steps``; step: x``gamma`` at each milestone
    step; poly: (1 - t/T)^power down to 0. Warmup scales linearly from ``warmup_ratio`` to 1 over
    ``warmup_steps`` on top of the schedule (as mmcv does).
    """
    total_steps = max(total_steps, 1)
    if kind == "cosine":
        t = min(step, total_steps) / total_steps
        factor = min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    elif kind == "step":
        factor = gamma ** sum(step >= m for m in milestones)
    elif kind == "poly":
        factor = (1 - min(step, total_steps) / total_steps) ** poly_power
    elif kind == "constant":
        factor = 1.0
    else:
        raise ValueError(f"unknown schedule {kind!r}; valid: cosine, step, poly, constant")
    if warmup_steps > 0 and step < warmup_steps:
        factor *= warmup_ratio + (1 - warmup_ratio) * step / warmup_steps
    return factor


def build_scheduler(optimizer: Optimizer, **kwargs) -> LambdaLR:
    """A LambdaLR over ``lr_factor`` (keyword arguments as there); call ``.step()`` after each iteration."""
    return LambdaLR(optimizer, lambda step: lr_factor(step, **kwargs))
