"""Backbones: where blocks, attention, MLP and norms are in each library's Swin, and how to build them."""

from __future__ import annotations

from torch import nn

from monatune.backbones.blocks import INSERTION_POINTS, BlockOps, BlockSite, attach
from monatune.backbones.dense_swin import DenseSwin, TimmDenseSwin, TorchvisionDenseSwin
from monatune.backbones.factory import available_backbones, create_backbone
from monatune.backbones.timm_swin import timm_swin_sites
from monatune.backbones.torchvision_swin import torchvision_swin_sites


def find_block_sites(model: nn.Module) -> list[BlockSite]:
    """All Swin blocks (timm or torchvision) inside ``model``, in forward order.

    Raises ValueError when ``model`` holds no supported block.
    """
    sites = timm_swin_sites(model) + torchvision_swin_sites(model)
    if not sites:
        raise ValueError(
            f"no supported transformer block found in {type(model).__name__}; monatune supports "
            "timm Swin (swin_*) and torchvision Swin (swin_t/s/b, swin_v2_t/s/b) backbones"
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
