"""UperNet's decode head (PPM + FPN fuse) and the auxiliary FCN head, as mmseg's UPerHead/FCNHead run them.

Every conv is conv + BatchNorm + ReLU (the configs' SyncBN on one device), bilinear resizing uses
align_corners=False, and the classifier is Dropout2d then a 1x1 conv (normal init std 0.01).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> Conv2dNormActivation:
    """Conv (no bias, padding k//2) + BatchNorm + ReLU."""
    return Conv2dNormActivation(in_channels, out_channels, kernel_size, norm_layer=nn.BatchNorm2d)


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class SegmentationClassifier(nn.Sequential):
    """Dropout2d(p) + 1x1 conv: (B, C, h, w) -> (B, num_classes, h, w)."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1) -> None:
        conv = nn.Conv2d(in_channels, num_classes, 1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        super().__init__(nn.Dropout2d(dropout), conv)


class PyramidPoolingModule(nn.Module):
    """PSPNet's PPM on the last map: average-pool to s x s per scale, 1x1 conv, upsample, concatenate
    with the input, fuse by a 3x3 conv. ``(B, in_channels, h, w) -> (B, channels, h, w)``."""

    def __init__(self, in_channels: int, channels: int, pool_scales: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(in_channels, channels, 1)) for s in pool_scales
        )
        self.bottleneck = conv_bn_relu(in_channels + len(pool_scales) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [_resize(stage(x), x.shape[-2:]) for stage in self.stages]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class UperHead(nn.Module):
    """UperNet head: PPM on the last map, top-down FPN over all maps, fuse at the finest scale.

    ``forward(maps: list of (B, C_i, H_i, W_i), finest first) -> (B, num_classes, H_0, W_0)`` logits.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        *lower, last = in_channels
        self.ppm = PyramidPoolingModule(last, channels, pool_scales)
        self.lateral_convs = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in lower)
        self.fpn_convs = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in lower)
        self.fpn_bottleneck = conv_bn_relu(len(in_channels) * channels, channels, 3)
        self.classifier = SegmentationClassifier(channels, num_classes, dropout)

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, maps)] + [self.ppm(maps[-1])]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        size = outs[0].shape[-2:]
        fused = torch.cat([outs[0]] + [_resize(x, size) for x in outs[1:]], dim=1)
        return self.classifier(self.fpn_bottleneck(fused))


class FCNHead(nn.Module):
    """Auxiliary FCN head: ``num_convs`` conv3x3 + BN + ReLU, dropout, 1x1 classifier.

    ``(B, in_channels, h, w) -> (B, num_classes, h, w)`` logits.
    """

    def __init__(
        self, in_channels: int, num_classes: int, channels: int = 256, num_convs: int = 1, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            *(conv_bn_relu(in_channels if i == 0 else channels, channels, 3) for i in range(num_convs))
        )
        self.classifier = SegmentationClassifier(channels, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.convs(x))
