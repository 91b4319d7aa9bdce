"""Backbones: where blocks, attention, MLP and norms are in each library's Swin, and how to build them."""

from __future__ import annotations

from torch import nn

from monatune.backbones.blocks import INSERTION_POINTS, BlockOps, BlockSite, attach
from monatune.backbones.dense_swin import DenseSwin, TimmDenseSwin, TorchvisionDenseSwin
from monatune.backbones.factory import available_backbones, create_backbone
from monatune.backbones.hf_vit import hf_swin_sites, hf_vit_sites
from monatune.backbones.timm_swin import timm_swin_sites
from monatune.backbones.timm_vit import timm_vit_sites
from monatune.backbones.torchvision_swin import torchvision_swin_sites
from monatune.backbones.torchvision_vit import torchvision_vit_sites


def find_block_sites(model: nn.Module) -> list[BlockSite]:
    """All transformer blocks of a supported family inside ``model``, in forward order: Swins (timm,
    torchvision) and plain ViTs (timm VisionTransformer, torchvision vit_*).

    Raises ValueError when ``model`` holds no supported block.
    """
    sites = timm_swin_sites(model) + torchvision_swin_sites(model) + timm_vit_sites(model) + torchvision_vit_sites(model)
    sites += hf_vit_sites(model) + hf_swin_sites(model)
    if not sites:
        raise ValueError(
            f"no supported transformer block found in {type(model).__name__}; monatune supports timm Swin "
            "(swin_*), torchvision Swin (swin_t/s/b, swin_v2_t/s/b), timm ViTs (vit_*, deit_*, DINOv2, CLIP: "
            "VisionTransformer), torchvision ViTs (vit_b_16 .. vit_h_14) and transformers' ViTModel, "
            "Dinov2Model and CLIPVisionModel"
        )
    return sites


__all__ = [
    "INSERTION_POINTS",
    "BlockOps",
    "BlockSite",
    "DenseSwin",
    "TimmDenseSwin",
    "TorchvisionDenseSwin",
    "attach",
    "available_backbones",
    "create_backbone",
    "find_block_sites",
]
