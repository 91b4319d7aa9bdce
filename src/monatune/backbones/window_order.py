"""Shifted-window attention of timm Swin blocks in the original detection/segmentation order (SPEC §8.1).

The Swin detection and segmentation code (and torchvision's Swin) pads the (H, W) map at the
bottom/right to a multiple of the window *first*, then rolls by -shift, masks regions on the padded
Hp x Wp frame, attends per window, reverses the partition, rolls back and crops. timm's block rolls
*before* padding: whenever a stage grid is not a multiple of the window (ADE20K 512 crops, COCO, VOC
and DOTA sizes), many tokens attend to other tokens than in the original. At 224 classification
every grid is a multiple of 7 and both orders compute the same thing.

``use_original_window_order(model)`` gives every timm ``SwinTransformerBlock`` inside ``model`` an
instance-level ``_attn`` in the original order; the block's class, parameters and state dict stay
as they are, so every tuning method (or none) runs on the same corrected blocks.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

MASK_VALUE = -100.0  # added to attention logits between tokens of different shifted regions


@lru_cache(maxsize=16)  # per (frame, device, dtype): one entry per stage and input size in use
def _region_mask(
    hp: int, wp: int, window: tuple[int, int], shift: tuple[int, int], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    regions = torch.zeros(hp, wp)
    label = 0
    for rows in (slice(0, -window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
        for cols in (slice(0, -window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
            regions[rows, cols] = label
            label += 1
    ids = _partition(regions[None, :, :, None], window).squeeze(-1)  # (num_windows, window area)
    differ = ids[:, None, :] != ids[:, :, None]
    return torch.zeros(differ.shape).masked_fill(differ, MASK_VALUE).to(device=device, dtype=dtype)


def shifted_window_mask(
    hp: int, wp: int, window: tuple[int, int], shift: tuple[int, int], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """(num_windows, area, area) additive mask of a padded, rolled Hp x Wp frame: 0 within a region,
    -100 across regions (regions: slices [0:-ws], [-ws:-shift], [-shift:] in each axis)."""
    return _region_mask(hp, wp, tuple(window), tuple(shift), torch.device(device), dtype)


def _partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """(B, Hp, Wp, C) -> (B * num_windows, wh * ww, C), windows in row-major order."""
    b, hp, wp, c = x.shape
    x = x.view(b, hp // window[0], window[0], wp // window[1], window[1], c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window[0] * window[1], c)


def _reverse(windows: torch.Tensor, window: tuple[int, int], b: int, hp: int, wp: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.view(b, hp // window[0], wp // window[1], window[0], window[1], c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)


def original_order_attention(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Window attention of a timm Swin block on a normalised (B, H, W, C) map: pad, roll, mask the
    padded frame, attend, reverse, roll back, crop. Output (B, H, W, C)."""
    window = tuple(block.window_size)
    shift = tuple(block.shift_size)
    b, h, w, _ = x.shape
    pad_h, pad_w = (-h) % window[0], (-w) % window[1]
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    mask = None
    if any(shift):
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        mask = shifted_window_mask(hp, wp, window, shift, x.device, x.dtype)
    out = _reverse(block.attn(_partition(x, window), mask=mask), window, b, hp, wp)
    if any(shift):
        out = torch.roll(out, shifts=shift, dims=(1, 2))
    return out[:, :h, :w, :].contiguous()


class _OriginalOrderAttention:
    """A block's instance-level ``_attn`` (a plain object, so tuned models pickle and deep-copy)."""

    def __init__(self, block: nn.Module) -> None:
        self.block = block

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return original_order_attention(self.block, x)


def use_original_window_order(model: nn.Module) -> int:
    """Make every timm Swin block in ``model`` attend in the original pad-then-roll order; returns
    how many blocks were changed. Idempotent; torchvision's Swin already uses this order."""
    from timm.models.swin_transformer import SwinTransformerBlock

    count = 0
    for module in model.modules():
        if isinstance(module, SwinTransformerBlock):
            module._attn = _OriginalOrderAttention(module)
            count += 1
    return count


def uses_original_window_order(block: nn.Module) -> bool:
    return isinstance(getattr(block, "_attn", None), _OriginalOrderAttention)
