"""What the three oriented detectors share: image batching/normalisation, backbone + FPN, target checks."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from monatune.backbones.dense_swin import DenseSwin
from monatune.backbones.stats import IMAGENET_MEAN, IMAGENET_STD
from monatune.ops.rotated_boxes import regularize_boxes
from monatune.tasks.dense.fpn import ExtraConvsOnInput, SwinFPN, fpn_strides


class OrientedDetector(nn.Module):
    """Base class: ``backbone`` (a DenseSwin) -> ``neck`` (FPN) -> a head defined by the subclass.

    The torchvision detection contract: ``model(images, targets)`` in training mode returns a dict
    of scalar losses; ``model(images)`` in eval mode returns one dict per image with ``boxes`` (K, 5)
    (cx, cy, w, h, theta radians in ``self.convention``), ``scores`` (K,) and ``labels`` (K,).
    ``images``: list of (3, H, W) float tensors in [0, 1]; the model normalises (ImageNet mean/std)
    and pads each batch to a multiple of ``size_divisor`` at the bottom/right (coordinates unchanged).
    """

    convention = "le90"

    def __init__(self, backbone: DenseSwin, neck: nn.Module, strides: Sequence[int], size_divisor: int = 32) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.strides = list(strides)
        self.size_divisor = size_divisor
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def batch_images(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Normalised, padded batch (B, 3, H', W') and each image's (H, W)."""
        if not images:
            raise ValueError("images must be a non-empty list of (3, H, W) tensors")
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        d = self.size_divisor
        height = -(-max(h for h, _ in sizes) // d) * d
        width = -(-max(w for _, w in sizes) // d) * d
        batch = images[0].new_zeros((len(images), 3, height, width))
        for i, im in enumerate(images):
            if im.dim() != 3 or im.shape[0] != 3:
                raise ValueError(f"image {i}: expected shape (3, H, W), got {tuple(im.shape)}")
            batch[i, :, : im.shape[1], : im.shape[2]] = (im - self.image_mean) / self.image_std
        return batch, sizes

    def features(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """FPN maps, finest first, strides ``self.strides``."""
        return list(self.neck(self.backbone(batch)).values())

    def prepare_targets(self, targets: Sequence[dict] | None, num_images: int) -> list[dict]:
        """Check training targets and rewrite their boxes in this model's convention."""
        if targets is None:
            raise ValueError("training mode needs targets: list of dict(boxes=(N, 5), labels=(N,))")
        if len(targets) != num_images:
            raise ValueError(f"got {len(targets)} targets for {num_images} images")
        out = []
        for i, t in enumerate(targets):
            boxes, labels = t["boxes"], t["labels"]
            if boxes.dim() != 2 or boxes.shape[-1] != 5 or labels.shape != boxes.shape[:1]:
                raise ValueError(
                    f"target {i}: boxes must be (N, 5) and labels (N,), got {tuple(boxes.shape)}, {tuple(labels.shape)}"
                )
            boxes = boxes.float().clone()
            # Sides under a pixel carry no signal and make Gaussian/log-ratio losses blow up.
            boxes[:, 2:4] = boxes[:, 2:4].clamp_min(1.0)
            out.append({"boxes": regularize_boxes(boxes, self.convention), "labels": labels.long()})
        return out

    def forward(self, images: Sequence[torch.Tensor], targets: Sequence[dict] | None = None):
        batch, sizes = self.batch_images(images)
        if self.training:
            return self.compute_losses(batch, sizes, self.prepare_targets(targets, len(images)))
        return self.predict(batch, sizes)

    def compute_losses(self, batch: torch.Tensor, sizes: list[tuple[int, int]], targets: list[dict]) -> dict:
        raise NotImplementedError

    def predict(self, batch: torch.Tensor, sizes: list[tuple[int, int]]) -> list[dict]:
        raise NotImplementedError


def build_fpn(backbone: DenseSwin, out_channels: int, extra: str) -> tuple[nn.Module, list[int]]:
    """FPN over the backbone maps with two extra levels (P6, P7) -> (neck, strides of its outputs).

    ``extra``: "on_input" (P6 from the last backbone map; RetinaNet), "on_output" (P6 from the last
    FPN map with a ReLU before P7; FCOS/H2RBox-v2) or "maxpool" (one max-pooled level per missing
    level; the R-CNN FPN). With a 3-map backbone all three give five levels.
    """
    in_channels = list(backbone.out_channels)
    if extra == "on_input":
        block, num_extra = ExtraConvsOnInput(in_channels[-1], out_channels), 2
    elif extra == "on_output":
        block, num_extra = _ExtraConvsOnOutput(out_channels), 2
    elif extra == "maxpool":
        num_extra = max(0, 5 - len(in_channels))
        block = _MaxPoolLevels(num_extra)
    else:
        raise ValueError(f"unknown FPN extra levels {extra!r}; valid: on_input, on_output, maxpool")
    return SwinFPN(in_channels, out_channels, block), fpn_strides(backbone.strides, num_extra)


class _ExtraConvsOnOutput(ExtraFPNBlock):
    """P6 = conv3x3/2 of the last FPN map, P7 = conv3x3/2 of ReLU(P6) (mmdet's "on_output" + ReLU)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        for conv in (self.p6, self.p7):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, results, x, names):
        p6 = self.p6(results[-1])
        return results + [p6, self.p7(torch.relu(p6))], names + ["p6", "p7"]


class _MaxPoolLevels(ExtraFPNBlock):
    """Extra FPN levels by stride-2 subsampling of the last FPN map (mmdet's FPN without extra convs)."""

    def __init__(self, num_levels: int) -> None:
        super().__init__()
        self.num_levels = num_levels

    def forward(self, results, x, names):
        for i in range(self.num_levels):
            results = results + [F.max_pool2d(results[-1], kernel_size=1, stride=2)]
            names = names + [f"pool{i}"]
        return results, names


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "OrientedDetector", "build_fpn"]
