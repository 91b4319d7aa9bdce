"""Activation checkpointing of Swin blocks, for large inputs (dense 512+ maps, big batches).

With a frozen backbone most saved activations belong to the frozen attention and MLP (softmax
outputs, the 4C-wide GELU input). ``checkpoint_blocks`` keeps only each block's input and recomputes
the block (Mona included, with the same dropout/drop-path draws) during backward: results are
unchanged, memory drops to about one map per block, and a training step costs about one extra
forward of the checkpointed blocks. It works for every method, and with trainable blocks too.
"""

from __future__ import annotations

import types
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from monatune.backbones import find_block_sites
from monatune.backbones.blocks import CHECKPOINTED_FORWARD_ATTR as _INNER_ATTR


def checkpoint_blocks(model: nn.Module, enabled: bool = True, *, stages: Sequence[int] | None = None) -> nn.Module:
    """Turn activation checkpointing of the Swin blocks in ``model`` on (or off); return ``model``.

    Args:
        model: a model holding timm or torchvision Swin blocks, tuned or not; ``monatune.apply``
            before or after it (a method attached later runs checkpointed too).
        enabled: False restores the blocks' own forwards.
        stages: only blocks of these stages (0-based; the early, high-resolution stages hold most of
            the activations); None = all stages.

    Checkpointing acts only in training mode with gradients enabled; eval and no-grad runs are untouched.
    """
    sites = find_block_sites(model)
    if stages is not None:
        found = sorted({site.stage for site in sites})
        missing = sorted(set(stages) - set(found))
        if missing:
            raise ValueError(f"checkpoint_blocks: no stage(s) {missing} in this model; its stages: {found}")
    for site in sites:
        block = site.block
        wrapped = _INNER_ATTR in block.__dict__
        want = enabled and (stages is None or site.stage in stages)
        if wrapped and not want:
            inner = block.__dict__.pop(_INNER_ATTR)
            if inner is None:
                del block.forward  # back to the class's forward
            else:
                block.forward = inner
        elif want and not wrapped:
            block.__dict__[_INNER_ATTR] = block.__dict__.get("forward")  # apply's instance forward, or None
            block.forward = types.MethodType(_checkpointed_forward, block)
    return model


def checkpointed_blocks(model: nn.Module) -> list[str]:
    """Names of the blocks in ``model`` that run checkpointed."""
    return [site.name for site in find_block_sites(model) if _INNER_ATTR in site.block.__dict__]


def _checkpointed_forward(block: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
    # Bound with MethodType (like apply's forward) so deepcopy/pickle of the model rebinds it.
    inner = block.__dict__[_INNER_ATTR]
    run = inner if inner is not None else types.MethodType(type(block).forward, block)
    if block.training and torch.is_grad_enabled():
        return checkpoint(run, *args, use_reentrant=False, **kwargs)
    return run(*args, **kwargs)
