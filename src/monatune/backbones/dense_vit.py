"""A plain ViT as a dense backbone: ViTDet's simple feature pyramid (Li et al., 2022) over the last
block's patch map, so the dense heads (RetinaNet, UperNet, ...) take a ViT as they take a Swin.

The tokens after the ViT's final norm, prefix tokens dropped, form a map of stride p (the patch
size). From it: stride 4 by two 2x2 transposed convs (C -> C/2, LayerNorm, GELU, -> C/4), stride 8 by
one (C -> C/2), stride 16 the map itself (C), stride 32 a 2x2 max-pool (C). With p != 16 each level is
resized (bilinear) to the exact size of its stride. The pyramid is new: it trains with the heads
(``new_modules``), the ViT is tuned by the method like a Swin.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

STRIDES = (4, 8, 16, 32)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _level(stride: int, dim: int) -> tuple[nn.Module, int]:
    if stride == 4:
        half = nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)
        return nn.Sequential(half, LayerNorm2d(dim // 2), nn.GELU(), nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2)), dim // 4
    if stride == 8:
        return nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), dim // 2
    if stride == 16:
        return nn.Identity(), dim
    return nn.MaxPool2d(2, 2), dim


class DenseViT(nn.Module):
    """``forward(images (B, 3, H, W)) -> [(B, C_i, ceil(H/s_i), ceil(W/s_i))]`` for the strides of
    ``out_indices`` (0..3: 4, 8, 16, 32), from a timm ``VisionTransformer``."""

    patch_embedding = "vit.patch_embed"
    new_modules = ("pyramid",)  # trained with the heads (monatune.tuning.apply_with_heads)

    def __init__(self, vit: nn.Module, out_indices: Sequence[int] = (0, 1, 2, 3)) -> None:
        super().__init__()
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ValueError(f"out_indices must be a non-empty subset of 0..3, got {out_indices}")
        self.vit = vit
        self.out_indices = tuple(sorted(out_indices))
        self.strides = [STRIDES[i] for i in self.out_indices]
        levels = [_level(s, vit.embed_dim) for s in self.strides]
        self.pyramid = nn.ModuleList(level for level, _ in levels)
        self.out_channels = [channels for _, channels in levels]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        tokens = self.vit.forward_features(images)
        h, w = self.vit.patch_embed.dynamic_feat_size(images.shape[-2:])
        grid = tokens[:, self.vit.num_prefix_tokens :].reshape(tokens.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()
        outs = []
        for stride, level in zip(self.strides, self.pyramid):
            x = level(grid)
            size = (math.ceil(images.shape[-2] / stride), math.ceil(images.shape[-1] / stride))
            outs.append(x if tuple(x.shape[-2:]) == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        return outs
