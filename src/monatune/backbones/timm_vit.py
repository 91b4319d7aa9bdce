"""Where things are in timm's plain ViTs (``timm.models.vision_transformer.Block``: vit_*, deit_*
including distilled, DINOv2 with register tokens, CLIP ViTs; and ``timm.models.eva.EvaBlock``: EVA,
EVA-02 with rotary embeddings): pre-norm blocks with LayerScale (``ls1``/``ls2``, or EVA's
``gamma_1``/``gamma_2``) and drop-path, on (B, N, C) token sequences whose first
``num_prefix_tokens`` are class/distillation/register tokens."""

from __future__ import annotations

import torch
from torch import nn

from monatune.backbones.blocks import BlockOps, BlockSite
from monatune.layers.tokens import token_layout


def _attn_branch(block: nn.Module, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return block.ls1(block.attn(block.norm1(x), *args, **kwargs))


def _mlp_branch(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.ls2(block.mlp(block.norm2(x)))


def _eva_attn_branch(block: nn.Module, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    h = block.attn(block.norm1(x), *args, **kwargs)  # rope, attn_mask from the model's forward
    return h if block.gamma_1 is None else block.gamma_1 * h


def _eva_mlp_branch(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    h = block.mlp(block.norm2(x))
    return h if block.gamma_2 is None else block.gamma_2 * h


TIMM_VIT_OPS = BlockOps(_attn_branch, _mlp_branch, lambda block: block.drop_path1, lambda block: block.drop_path2)
EVA_OPS = BlockOps(_eva_attn_branch, _eva_mlp_branch, lambda block: block.drop_path1, lambda block: block.drop_path2)


def _grid(patch_embed: nn.Module, inputs: tuple, output: torch.Tensor) -> tuple[int, int]:
    if output.dim() == 4:  # dynamic_img_size: NHWC patches
        return output.shape[1], output.shape[2]
    return tuple(patch_embed.dynamic_feat_size(inputs[0].shape[-2:]))


def timm_vit_sites(model: nn.Module) -> list[BlockSite]:
    """Every block of every timm ``VisionTransformer`` or ``Eva`` in ``model``, in forward order (stage 0)."""
    from timm.models.eva import Eva, EvaBlock
    from timm.models.vision_transformer import Block, VisionTransformer

    sites: list[BlockSite] = []
    for vit_name, vit in model.named_modules():
        if not isinstance(vit, (VisionTransformer, Eva)):
            continue
        layout = token_layout(vit, vit.patch_embed, vit.num_prefix_tokens, _grid)
        prefix = f"{vit_name}." if vit_name else ""
        for index, block in enumerate(vit.blocks):
            ops = {Block: TIMM_VIT_OPS, EvaBlock: EVA_OPS}.get(type(block))
            if ops is None:
                raise ValueError(f"{prefix}blocks.{index}: timm {type(block).__name__} blocks are not supported yet (Block, EvaBlock)")
            dim = block.norm1.normalized_shape[0]
            sites.append(BlockSite(f"{prefix}blocks.{index}", block, 0, index, dim, block.attn, ops, layout))
    return sites
