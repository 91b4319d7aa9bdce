"""Dense Swin: the four stage outputs, each through its own LayerNorm, as NCHW maps for necks/heads."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import nn

from monatune.backbones.window_order import use_original_window_order

WINDOW_ORDERS = ("original", "timm")


class DenseSwin(nn.Module):
    """Base of the dense Swin wrappers. ``forward(images (B,3,H,W)) -> [ (B, C_i, H/s_i, W/s_i) ]``.

    One LayerNorm per returned stage is registered as ``norm{i}`` (the names of the original Swin
    detection code). ``out_channels`` and ``strides`` describe the returned maps, in order;
    ``patch_embedding`` names the stem submodule (patch embedding and its norm).
    """

    patch_embedding: str = "patch_embed"

    def __init__(self, stage_channels: Sequence[int], out_indices: Sequence[int] = (0, 1, 2, 3)) -> None:
        super().__init__()
        if not out_indices or any(i not in range(len(stage_channels)) for i in out_indices):
            raise ValueError(f"out_indices must be a non-empty subset of 0..{len(stage_channels) - 1}, got {out_indices}")
        self.out_indices = tuple(sorted(out_indices))
        self.out_channels = [int(stage_channels[i]) for i in self.out_indices]
        self.strides = [4 * 2**i for i in self.out_indices]
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(stage_channels[i]))

    def stage_maps(self, images: torch.Tensor) -> Iterator[torch.Tensor]:
        """Yield each stage's (B, H, W, C) output in order."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, x in enumerate(self.stage_maps(images)):
            if i in self.out_indices:
                outs.append(getattr(self, f"norm{i}")(x).permute(0, 3, 1, 2).contiguous())
            if i == self.out_indices[-1]:
                break
        return outs


class TimmDenseSwin(DenseSwin):
    """Dense wrapper over a timm SwinTransformer (its ``patch_embed`` and ``layers``; final norm/head dropped).

    ``window_order="original"`` (default) runs the shifted-window attention in the order of the Swin
    detection/segmentation code and torchvision (pad, then roll; SPEC §8.1); ``"timm"`` keeps
    timm's roll-then-pad, which differs whenever a stage grid is not a multiple of the window.
    """

    def __init__(self, swin: nn.Module, out_indices: Sequence[int] = (0, 1, 2, 3), window_order: str = "original") -> None:
        if window_order not in WINDOW_ORDERS:
            raise ValueError(f"window_order {window_order!r} is not valid; choose one of: {', '.join(WINDOW_ORDERS)}")
        channels = [info["num_chs"] for info in swin.feature_info]
        super().__init__(channels, out_indices)
        self.patch_embed = swin.patch_embed
        self.layers = swin.layers
        if window_order == "original":
            use_original_window_order(self.layers)

    def stage_maps(self, images: torch.Tensor) -> Iterator[torch.Tensor]:
        x = self.patch_embed(images)
        for stage in self.layers:
            x = stage(x)
            yield x


class TorchvisionDenseSwin(DenseSwin):
    """Dense wrapper over a torchvision SwinTransformer (its ``features``; final norm/head dropped)."""

    patch_embedding = "features.0"

    def __init__(self, swin: nn.Module, out_indices: Sequence[int] = (0, 1, 2, 3)) -> None:
        stage_ids = list(range(1, len(swin.features), 2))  # features: stem, stage, merge, stage, ...
        channels = [swin.features[i][0].norm1.normalized_shape[0] for i in stage_ids]
        super().__init__(channels, out_indices)
        self.features = swin.features
        self._stage_ids = stage_ids

    def stage_maps(self, images: torch.Tensor) -> Iterator[torch.Tensor]:
        x = images
        for j, layer in enumerate(self.features):
            x = layer(x)
            if j in self._stage_ids:
                yield x
