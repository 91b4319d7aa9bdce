"""Small pieces the dense task models share: the torchvision-style forward prologue of a detector whose
FPN is kept apart from its Swin, and the top-k candidate selection of dense (per-location) heads."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform

Targets = list[dict[str, torch.Tensor]]


class SeparateNeckDetectorMixin:
    """For torchvision detectors with ``backbone`` (the DenseSwin) and ``neck`` (its FPN) as separate
    modules, so that ``monatune.apply(model.backbone, method)`` reaches the Swin alone. Put it before
    the torchvision base class, which supplies ``transform``."""

    backbone: nn.Module
    neck: nn.Module
    transform: GeneralizedRCNNTransform
    training: bool

    def transform_and_extract(
        self, images: list[torch.Tensor], targets: Targets | None
    ) -> tuple[ImageList, Targets | None, OrderedDict[str, torch.Tensor], list[tuple[int, int]]]:
        """Resize, normalise and batch ``images`` (and ``targets``) with ``self.transform``, then run the
        backbone and the neck -> (image list, transformed targets, FPN maps, each input's (H, W)).

        Raises ValueError in training mode without targets.
        """
        if self.training and targets is None:
            raise ValueError("targets are required in training mode")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, targets = self.transform(images, targets)
        features = self.neck(self.backbone(image_list.tensors))
        return image_list, targets, features, original_sizes


def top_scoring_candidates(
    scores: torch.Tensor, score_threshold: float, max_candidates: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The at most ``max_candidates`` highest (location, class) scores above ``score_threshold``.

    ``scores``: (N, C) per-location class scores -> (scores (K,), location indices (K,), classes (K,)),
    highest score first.
    """
    num_classes = scores.shape[-1]
    flat = scores.flatten()
    keep = torch.nonzero(flat > score_threshold).squeeze(1)
    keep = keep[flat[keep].topk(min(max_candidates, keep.numel())).indices]
    return flat[keep], keep // num_classes, keep % num_classes


__all__ = ["SeparateNeckDetectorMixin", "top_scoring_candidates"]
