"""The one injection mechanism: a Swin block's forward re-expressed with named insertion points.

A tuning method never edits backbone code. It adds child modules to a block and names the point
where each one acts; ``tuned_block_forward`` then runs the block's own submodules (norms,
attention, MLP, drop-path) with those points in place:

    h = attn_branch(x);  h = attn_out(h);   x = x + drop_path1(h);   x = after_attn(x)
    h = mlp_branch(x);   h = mlp_out(h);    x = x + drop_path2(h) + mlp_parallel(x);   x = after_mlp(x)

``attn_out``/``mlp_out`` transform a branch output before its residual add (Houlsby adapters,
LoRand), ``mlp_parallel`` adds a branch fed the un-normalised stream (AdaptFormer), and
``after_attn``/``after_mlp`` act on the residual stream as a (B, H, W, C) map with window padding
cropped and the cyclic shift undone (Mona). Tensors stay channels-last (B, H, W, C) throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from monatune.layers.tokens import TokenLayout

INSERTION_POINTS = ("attn_out", "after_attn", "mlp_out", "mlp_parallel", "after_mlp")
_POINTS_ATTR = "monatune_points"
_OPS_ATTR = "_monatune_block_ops"
# set by ``monatune.checkpoint_blocks`` on a block it wraps: the forward it runs checkpointed
CHECKPOINTED_FORWARD_ATTR = "_monatune_unckpt_forward"


@dataclass(frozen=True)
class BlockOps:
    """How one backbone family's block computes its two branches (input and output: (B, H, W, C) maps
    on Swins, (B, N, C) token sequences on plain ViTs)."""

    attn_branch: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    mlp_branch: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    drop_path1: Callable[[nn.Module], nn.Module]
    drop_path2: Callable[[nn.Module], nn.Module]
    # what the block's own forward returns, made from the output tensor (transformers' Swin: a tuple)
    output: Callable[[torch.Tensor], object] = staticmethod(lambda y: y)

@dataclass
class BlockSite:
    """One transformer block of a backbone and what a method needs to know about it."""

    name: str  # qualified module name inside the model passed to ``apply``
    block: nn.Module
    stage: int
    index: int  # index within its stage
    dim: int
    qkv_parent: nn.Module  # the attention holding a fused ``qkv`` Linear, or an nn.MultiheadAttention (packed)
    ops: BlockOps = field(repr=False)
    tokens: TokenLayout | None = field(default=None, repr=False)  # a ViT's token sequence (None: a (B, H, W, C) map)


def _point(block: nn.Module, point: str) -> nn.Module | None:
    child = getattr(block, _POINTS_ATTR, {}).get(point)
    return None if child is None else getattr(block, child)


def tuned_block_forward(block: nn.Module, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """Forward of a block with the method modules attached at their insertion points (extra arguments,
    e.g. timm's ``attn_mask``, go to the attention branch)."""
    ops: BlockOps = getattr(block, _OPS_ATTR)
    h = ops.attn_branch(block, x, *args, **kwargs)
    if (m := _point(block, "attn_out")) is not None:
        h = m(h)
    x = x + ops.drop_path1(block)(h)
    if (m := _point(block, "after_attn")) is not None:
        x = m(x)
    h = ops.mlp_branch(block, x)
    if (m := _point(block, "mlp_out")) is not None:
        h = m(h)
    out = x + ops.drop_path2(block)(h)
    if (m := _point(block, "mlp_parallel")) is not None:
        out = out + m(x)
    if (m := _point(block, "after_mlp")) is not None:
        out = m(out)
    return ops.output(out)


class _TunedForward:
    """The instance-level ``forward`` of a tuned block: a plain object (not a bound method) so tuned
    models survive pickling (``torch.save(model)``, DDP spawn) and ``copy.deepcopy``."""

    def __init__(self, block: nn.Module) -> None:
        self.block = block

    def __call__(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return tuned_block_forward(self.block, x, *args, **kwargs)


def attach(site: BlockSite, point: str, child_name: str, module: nn.Module) -> None:
    """Add ``module`` to the block as ``child_name`` and run it at ``point``."""
    if point not in INSERTION_POINTS:
        raise ValueError(f"unknown insertion point {point!r}; valid: {', '.join(INSERTION_POINTS)}")
    block = site.block
    points: dict[str, str] = getattr(block, _POINTS_ATTR, None) or {}
    if point in points:
        raise ValueError(f"{site.name}: insertion point {point!r} already holds {points[point]!r}")
    ref = next(block.parameters(), None)
    if ref is not None:
        module = module.to(device=ref.device, dtype=ref.dtype)
    module.train(block.training)  # a model put in eval mode before ``apply`` stays in eval mode (dropout off)
    block.add_module(child_name, module)
    points[point] = child_name
    setattr(block, _POINTS_ATTR, points)
    setattr(block, _OPS_ATTR, site.ops)
    # Instance-level forward: the backbone's class and code stay untouched. A checkpointed block
    # keeps its checkpointing: the tuned forward is what it runs checkpointed.
    if CHECKPOINTED_FORWARD_ATTR in block.__dict__:
        block.__dict__[CHECKPOINTED_FORWARD_ATTR] = _TunedForward(block)
    else:
        block.forward = _TunedForward(block)
