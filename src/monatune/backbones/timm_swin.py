"""Where things are in timm's Swin Transformer (``timm.models.swin_transformer``)."""

from __future__ import annotations

import torch
from torch import nn

from monatune.backbones.blocks import BlockOps, BlockSite


def _attn_branch(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # timm's _attn shifts, pads, partitions, attends, merges, crops and un-shifts: (B,H,W,C) in and out.
    return block._attn(block.norm1(x))


def _mlp_branch(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.mlp(block.norm2(x))


def _drop_path1(block: nn.Module) -> nn.Module:
    return block.drop_path1


def _drop_path2(block: nn.Module) -> nn.Module:
    return block.drop_path2


TIMM_SWIN_OPS = BlockOps(_attn_branch, _mlp_branch, _drop_path1, _drop_path2)


def is_timm_swin_block(module: nn.Module) -> bool:
    from timm.models.swin_transformer import SwinTransformerBlock

    return isinstance(module, SwinTransformerBlock)


def timm_swin_sites(model: nn.Module) -> list[BlockSite]:
    """Every SwinTransformerBlock in ``model`` (any timm ``swin_*`` variant), in forward order."""
    sites: list[BlockSite] = []
    stage_of: dict[str, int] = {}
    for name, module in model.named_modules():
        if not is_timm_swin_block(module):
            continue
        stage_prefix = name.rsplit(".blocks.", 1)[0]
        stage = stage_of.setdefault(stage_prefix, len(stage_of))
        index = int(name.rsplit(".", 1)[1])
        sites.append(BlockSite(name, module, stage, index, module.dim, module.attn, TIMM_SWIN_OPS))
    return sites
