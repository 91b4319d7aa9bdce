"""Where things are in torchvision's ViTs (``vit_b_16`` .. ``vit_h_14``: ``EncoderBlock``): pre-norm
blocks whose attention is ``nn.MultiheadAttention`` (q, k, v packed in ``in_proj_weight``, no qkv
Linear), on (B, 1 + H*W, C) sequences led by the class token."""

from __future__ import annotations

import torch
from torch import nn

from monatune.backbones.blocks import BlockOps, BlockSite
from monatune.layers.tokens import token_layout


def _attn_branch(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    h = block.ln_1(x)
    return block.dropout(block.self_attention(h, h, h, need_weights=False)[0])


def _mlp_branch(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.mlp(block.ln_2(x))


TV_VIT_OPS = BlockOps(_attn_branch, _mlp_branch, lambda block: nn.Identity(), lambda block: nn.Identity())


def _grid(conv_proj: nn.Module, inputs: tuple, output: torch.Tensor) -> tuple[int, int]:
    return output.shape[-2], output.shape[-1]


def torchvision_vit_sites(model: nn.Module) -> list[BlockSite]:
    """Every EncoderBlock of every torchvision ``VisionTransformer`` in ``model``, in forward order."""
    from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer

    sites: list[BlockSite] = []
    for vit_name, vit in model.named_modules():
        if not isinstance(vit, VisionTransformer):
            continue
        layout = token_layout(vit, vit.conv_proj, 1, _grid)
        blocks = [(n, m) for n, m in vit.encoder.layers.named_children() if isinstance(m, EncoderBlock)]
        prefix = f"{vit_name}." if vit_name else ""
        for index, (name, block) in enumerate(blocks):
            dim = block.ln_1.normalized_shape[0]
            sites.append(BlockSite(f"{prefix}encoder.layers.{name}", block, 0, index, dim, block.self_attention, TV_VIT_OPS, layout))
    return sites
