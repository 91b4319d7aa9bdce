"""Where things are in torchvision's Swin Transformer (v1 ``swin_t/s/b`` and v2 ``swin_v2_*``)."""

from __future__ import annotations

import torch
from torch import nn

from monatune.backbones.blocks import BlockOps, BlockSite


def _v1_attn(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.attn(block.norm1(x))


def _v1_mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.mlp(block.norm2(x))


def _v2_attn(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.norm1(block.attn(x))  # v2 is post-norm: the branch output is normalised


def _v2_mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.norm2(block.mlp(x))


def _stochastic_depth(block: nn.Module) -> nn.Module:
    return block.stochastic_depth


TV_SWIN_V1_OPS = BlockOps(_v1_attn, _v1_mlp, _stochastic_depth, _stochastic_depth)
TV_SWIN_V2_OPS = BlockOps(_v2_attn, _v2_mlp, _stochastic_depth, _stochastic_depth)


def torchvision_swin_sites(model: nn.Module) -> list[BlockSite]:
    """Every torchvision SwinTransformerBlock(V2) in ``model``, in forward order."""
    from torchvision.models.swin_transformer import SwinTransformerBlock, SwinTransformerBlockV2

    sites: list[BlockSite] = []
    stage_of: dict[str, int] = {}
    for name, module in model.named_modules():
        if not isinstance(module, SwinTransformerBlock):
            continue
        stage_prefix, index = name.rsplit(".", 1)
        stage = stage_of.setdefault(stage_prefix, len(stage_of))
        ops = TV_SWIN_V2_OPS if isinstance(module, SwinTransformerBlockV2) else TV_SWIN_V1_OPS
        dim = module.norm1.normalized_shape[0]
        sites.append(BlockSite(name, module, stage, int(index), dim, module.attn, ops))
    return sites
