"""Where things are in timm's Swin Transformers (``timm.models.swin_transformer``, and the post-norm
blocks of ``swin_transformer_v2``: ``swinv2_*``)."""

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


def _v2_attn_branch(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # Swin V2 is post-norm: the branch is norm(attn(x)); Mona still acts after each residual add.
    return block.norm1(block._attn(x))


def _v2_mlp_branch(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.norm2(block.mlp(x))


TIMM_SWINV2_OPS = BlockOps(_v2_attn_branch, _v2_mlp_branch, _drop_path1, _drop_path2)


def is_timm_swin_block(module: nn.Module) -> bool:
    from timm.models.swin_transformer import SwinTransformerBlock
    from timm.models.swin_transformer_v2 import SwinTransformerV2Block

    return isinstance(module, (SwinTransformerBlock, SwinTransformerV2Block))


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
        from timm.models.swin_transformer_v2 import SwinTransformerV2Block

        ops = TIMM_SWINV2_OPS if isinstance(module, SwinTransformerV2Block) else TIMM_SWIN_OPS
        sites.append(BlockSite(name, module, stage, index, module.dim, module.attn, ops))
    return sites
