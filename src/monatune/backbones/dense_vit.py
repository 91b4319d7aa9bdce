"""A plain ViT as a dense backbone: ViTDet's simple feature pyramid (Li et al., 2022) over the last
block's patch map, so the dense heads (RetinaNet, UperNet, ...) take a ViT as they take a Swin.

Three libraries' ViTs, each read by a small function giving the last block's tokens, the number of
prefix tokens and the patch grid, at any input size (position embeddings interpolated): timm
``VisionTransformer`` (its ``forward_features``, with ``dynamic_img_size``), torchvision
``VisionTransformer`` (its own layers, position embedding resized bicubically), transformers
``ViTModel`` / ``Dinov2Model`` / ``Dinov2WithRegistersModel`` / ``CLIPVisionModel``
(``last_hidden_state`` with the library's own interpolation).

The tokens, prefix tokens dropped, form a map of stride p (the patch size). From it: stride 4 by two
2x2 transposed convs (C -> C/2, LayerNorm, GELU, -> C/4), stride 8 by one (C -> C/2), stride 16 the
map itself (C), stride 32 a 2x2 max-pool (C). With p != 16 each level is resized (bilinear) to the
exact size of its stride. The pyramid is new: it trains with the heads
(``new_modules``), the ViT is tuned by the method like a Swin.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

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


class Tokens(NamedTuple):
    """What the pyramid reads off a ViT: the last block's (normed) tokens (B, k + h*w, C), the number k
    of prefix tokens leading them, and the patch grid (h, w)."""

    tokens: torch.Tensor
    num_prefix: int
    grid: tuple[int, int]


def _timm_tokens(vit: nn.Module, images: torch.Tensor) -> Tokens:
    return Tokens(vit.forward_features(images), vit.num_prefix_tokens, tuple(vit.patch_embed.dynamic_feat_size(images.shape[-2:])))


def _torchvision_tokens(vit: nn.Module, images: torch.Tensor) -> Tokens:
    """torchvision's ``VisionTransformer._process_input`` + encoder, at any size: the position
    embedding of the patch grid resized bicubically to this input's grid (the class token's kept)."""
    x = vit.conv_proj(images)
    batch, width, h, w = x.shape
    x = torch.cat([vit.class_token.expand(batch, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
    pos = vit.encoder.pos_embedding
    side = math.isqrt(pos.shape[1] - 1)
    grid_pos = pos[:, 1:]
    if (h, w) != (side, side):
        grid_pos = grid_pos.reshape(1, side, side, width).permute(0, 3, 1, 2)
        grid_pos = F.interpolate(grid_pos, size=(h, w), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
    x = vit.encoder.dropout(x + torch.cat([pos[:, :1], grid_pos], dim=1))
    return Tokens(vit.encoder.ln(vit.encoder.layers(x)), 1, (h, w))


def _hf_tokens(vit: nn.Module, images: torch.Tensor) -> Tokens:
    """transformers' ViT, DINOv2 (with registers) and CLIP vision models: ``last_hidden_state``; DINOv2
    always interpolates its position embeddings, the others when asked."""
    ask = vit.config.model_type in ("vit", "clip_vision_model")
    tokens = vit(pixel_values=images, **({"interpolate_pos_encoding": True} if ask else {})).last_hidden_state
    patch = vit.config.patch_size
    h, w = images.shape[-2] // patch, images.shape[-1] // patch
    return Tokens(tokens, tokens.shape[1] - h * w, (h, w))


HF_DENSE_TYPES = ("vit", "dinov2", "dinov2_with_registers", "clip_vision_model")


def _reader(vit: nn.Module) -> tuple[Callable[[nn.Module, torch.Tensor], Tokens], int, str]:
    """(token reader, width, name of the patch-embedding submodule) of a supported ViT."""
    from timm.models.vision_transformer import VisionTransformer as TimmViT
    from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

    if isinstance(vit, TimmViT):
        return _timm_tokens, vit.embed_dim, "patch_embed"
    if isinstance(vit, TorchvisionViT):
        return _torchvision_tokens, vit.hidden_dim, "conv_proj"
    model_type = getattr(getattr(vit, "config", None), "model_type", None)
    if model_type in HF_DENSE_TYPES and type(vit).__name__.endswith("Model"):  # the base model, not a classifier
        conv = next(name for name, m in vit.named_modules() if isinstance(m, nn.Conv2d))
        return _hf_tokens, vit.config.hidden_size, conv
    raise TypeError(
        f"no dense use of {type(vit).__name__} ({model_type or 'not transformers'}): expected a timm or torchvision "
        f"VisionTransformer or a transformers model of type {', '.join(HF_DENSE_TYPES)}"
    )


class DenseViT(nn.Module):
    """``forward(images (B, 3, H, W)) -> [(B, C_i, ceil(H/s_i), ceil(W/s_i))]`` for the strides of
    ``out_indices`` (0..3: 4, 8, 16, 32), from a timm, torchvision or transformers plain ViT."""

    new_modules = ("pyramid",)  # trained with the heads (monatune.tuning.apply_with_heads)

    def __init__(self, vit: nn.Module, out_indices: Sequence[int] = (0, 1, 2, 3)) -> None:
        super().__init__()
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ValueError(f"out_indices must be a non-empty subset of 0..3, got {out_indices}")
        self.read_tokens, width, patch_embedding = _reader(vit)
        self.vit = vit
        self.patch_embedding = f"vit.{patch_embedding}"  # frozen with freeze_patch_embed
        self.out_indices = tuple(sorted(out_indices))
        self.strides = [STRIDES[i] for i in self.out_indices]
        levels = [_level(s, width) for s in self.strides]
        self.pyramid = nn.ModuleList(level for level, _ in levels)
        self.out_channels = [channels for _, channels in levels]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        tokens, num_prefix, (h, w) = self.read_tokens(self.vit, images)
        grid = tokens[:, num_prefix:].reshape(tokens.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()
        outs = []
        for stride, level in zip(self.strides, self.pyramid):
            x = level(grid)
            size = (math.ceil(images.shape[-2] / stride), math.ceil(images.shape[-1] / stride))
            outs.append(x if tuple(x.shape[-2:]) == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        return outs
