"""FPN neck over a DenseSwin: torchvision's FeaturePyramidNetwork fed the backbone's list of maps."""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool


class ExtraConvsOnInput(ExtraFPNBlock):
    """RetinaNet's P6/P7: P6 = conv3x3/2 of the last *backbone* map (C5), P7 = conv3x3/2 of P6.

    This is mmdet's ``add_extra_convs="on_input"`` with ``relu_before_extra_convs=False`` (the
    RetinaNet config the public Mona code trains). torchvision's ``LastLevelP6P7`` differs in two
    ways: it applies a ReLU before P7 (as the RetinaNet paper does) and switches to P5 as input
    when C5 already has ``out_channels``; ``relu_before_p7=True`` gives the former.
    """

    def __init__(self, in_channels: int, out_channels: int, *, relu_before_p7: bool = False) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        self.relu_before_p7 = relu_before_p7
        for conv in (self.p6, self.p7):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(
        self, results: list[torch.Tensor], x: list[torch.Tensor], names: list[str]
    ) -> tuple[list[torch.Tensor], list[str]]:
        p6 = self.p6(x[-1])
        p7 = self.p7(torch.relu(p6) if self.relu_before_p7 else p6)
        return results + [p6, p7], names + ["p6", "p7"]


class SwinFPN(nn.Module):
    """FPN over DenseSwin stage maps.

    ``forward(maps: list of (B, C_i, H_i, W_i), finest first) -> OrderedDict[str, (B, out_channels, h, w)]``
    with keys ``"0", "1", ...`` (one per input map, same strides) followed by the extra levels
    (``"pool"`` for max-pool P6, ``"p6", "p7"`` for RetinaNet). ``out_channels`` is an int, as
    torchvision's detection heads expect.
    """

    def __init__(
        self, in_channels: Sequence[int], out_channels: int = 256, extra_blocks: ExtraFPNBlock | None = None
    ) -> None:
        super().__init__()
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels, extra_blocks=extra_blocks)
        self.out_channels = out_channels

    def forward(self, maps: Sequence[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def fpn_strides(backbone_strides: Sequence[int], num_extra: int) -> list[int]:
    """Strides of the FPN levels: the backbone's, then ``num_extra`` levels each halving the last."""
    strides = list(backbone_strides)
    for _ in range(num_extra):
        strides.append(strides[-1] * 2)
    return strides


__all__ = ["ExtraConvsOnInput", "LastLevelMaxPool", "SwinFPN", "fpn_strides"]
