"""The detectors' input transform: torchvision's resize + normalise + pad, or normalise + pad only."""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from monatune.backbones.stats import IMAGENET_MEAN, IMAGENET_STD


class NoResizeTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform that keeps each image's size: normalise, then pad the batch to 32.

    For data pipelines that resize already (so the model does not resize a second time); boxes and
    masks pass through unchanged and predictions come back in the input images' coordinates.
    """

    def __init__(self, image_mean: Sequence[float], image_std: Sequence[float], size_divisible: int = 32) -> None:
        super().__init__(1, 1, list(image_mean), list(image_std), size_divisible=size_divisible)

    def resize(
        self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        return image, target


def build_detection_transform(
    min_size: int | tuple[int, ...] | None,
    max_size: int,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
) -> GeneralizedRCNNTransform:
    """Input transform of every detector here; images are (3, H, W) in 0-1.

    ``min_size`` int: resize so the short side is ``min_size`` unless the long side would pass
    ``max_size`` (torchvision's rule, the same as mmcv's keep-ratio rescale to (max_size, min_size));
    tuple: one drawn per batch in training, the last used in eval; None: no resize at all.
    """
    if min_size is None:
        return NoResizeTransform(image_mean, image_std)
    return GeneralizedRCNNTransform(min_size, max_size, list(image_mean), list(image_std))


def check_labels(targets: list[dict[str, torch.Tensor]], num_classes: int) -> None:
    """Raise ValueError unless every target label lies in 1..num_classes."""
    labels = torch.cat([t["labels"] for t in targets])
    if labels.numel() and (labels.min() < 1 or labels.max() > num_classes):
        raise ValueError(f"target labels must lie in 1..{num_classes} (0 is background), got {labels.tolist()}")
