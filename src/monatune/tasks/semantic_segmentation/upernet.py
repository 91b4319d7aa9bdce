"""UperNet on a DenseSwin with the auxiliary FCN head (SPEC §5, ADE20K)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monatune.backbones.dense_swin import DenseSwin
from monatune.backbones.stats import IMAGENET_MEAN, IMAGENET_STD
from monatune.tasks.semantic_segmentation.decode_heads import FCNHead, UperHead

SWIN_PATCH_SIZE = 4  # the patch embedding's stride; inputs must be a multiple of it
LOSS_AVERAGES = ("valid", "all")
TEST_PADDINGS = ("size_divisor", "patch")


def segmentation_cross_entropy(
    logits: torch.Tensor, masks: torch.Tensor, ignore_index: int = 255, average: str = "valid"
) -> torch.Tensor:
    """Pixel cross-entropy of (B, C, H, W) logits against (B, H, W) labels, ignored pixels adding 0.

    ``average="valid"`` divides the sum by the non-ignored pixels (0 when there are none);
    ``"all"`` divides by every pixel, ignored ones included, as mmseg 0.11's CrossEntropyLoss
    (``reduction="none"`` then a plain mean) does (SPEC §8.11).
    """
    if average not in LOSS_AVERAGES:
        raise ValueError(f"loss_average: {average!r} is not one of {', '.join(LOSS_AVERAGES)}")
    masks = masks.long()
    total = F.cross_entropy(logits.float(), masks, ignore_index=ignore_index, reduction="sum")
    count = masks.numel() if average == "all" else (masks != ignore_index).sum()
    # Sum / count, not "mean": a crop that is all ignore_index gives 0, not NaN.
    return total / torch.as_tensor(count, device=logits.device).clamp(min=1)


class UperNet(nn.Module):
    """DenseSwin -> UperHead (all stages) + FCN auxiliary head (one stage), logits at input size.

    Images are (B, 3, H, W) in 0-1; the model normalises them (``image_mean``/``image_std``, None =
    already normalised) and zero-pads the bottom/right to a multiple of ``size_divisor`` so any H, W
    works; logits are upsampled (bilinear) to the padded size and cropped back to H x W. With
    ``test_padding="patch"`` eval pads only to the patch size (4) and upsamples the logits straight
    to H x W, as mmseg's whole-image test (no Pad in its test pipeline; Swin's patch embedding pads).

    Train: ``model(images, masks (B, H, W) int64, ignore_index = ignored)`` -> ``{"loss_decode": CE of
    the UperHead, "loss_aux": aux_loss_weight * CE of the FCN head}`` (sum them; the 0.4 is already
    applied). CE averages over the non-ignored pixels (``loss_average="valid"``, 0 when there are
    none) or over all pixels (``"all"``), see :func:`segmentation_cross_entropy`.
    Eval: ``model(images)`` -> (B, num_classes, H, W) logits.
    """

    def __init__(
        self,
        backbone: DenseSwin,
        decode_head: UperHead,
        auxiliary_head: FCNHead | None,
        *,
        aux_map_index: int = 2,
        aux_loss_weight: float = 0.4,
        ignore_index: int = 255,
        size_divisor: int = 32,
        image_mean: Sequence[float] | None = IMAGENET_MEAN,
        image_std: Sequence[float] | None = IMAGENET_STD,
        loss_average: str = "valid",
        test_padding: str = "size_divisor",
    ) -> None:
        super().__init__()
        if loss_average not in LOSS_AVERAGES:
            raise ValueError(f"loss_average: {loss_average!r} is not one of {', '.join(LOSS_AVERAGES)}")
        if test_padding not in TEST_PADDINGS:
            raise ValueError(f"test_padding: {test_padding!r} is not one of {', '.join(TEST_PADDINGS)}")
        self.loss_average = loss_average
        self.test_padding = test_padding
        self.backbone = backbone
        self.decode_head = decode_head
        self.auxiliary_head = auxiliary_head
        self.aux_map_index = aux_map_index
        self.aux_loss_weight = aux_loss_weight
        self.ignore_index = ignore_index
        self.size_divisor = size_divisor
        self.normalize = image_mean is not None
        mean = torch.tensor(image_mean if image_mean is not None else (0.0, 0.0, 0.0)).view(1, 3, 1, 1)
        std = torch.tensor(image_std if image_std is not None else (1.0, 1.0, 1.0)).view(1, 3, 1, 1)
        self.register_buffer("image_mean", mean, persistent=False)
        self.register_buffer("image_std", std, persistent=False)

    def forward(
        self, images: torch.Tensor, masks: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor] | torch.Tensor:
        height, width = images.shape[-2:]
        x = (images - self.image_mean) / self.image_std if self.normalize else images
        whole_image_test = not self.training and self.test_padding == "patch"
        divisor = SWIN_PATCH_SIZE if whole_image_test else self.size_divisor
        x = F.pad(x, (0, (-width) % divisor, 0, (-height) % divisor))
        # Logits cover the padded frame, except in mmseg's whole-image test: there they are
        # stretched over the image itself (the padding to the patch size is the backbone's own).
        frame = (height, width) if whole_image_test else tuple(x.shape[-2:])
        maps = self.backbone(x)
        logits = self._to_input_size(self.decode_head(maps), frame, (height, width))
        if not self.training:
            return logits
        if masks is None:
            raise ValueError("masks (B, H, W) are required in training mode")
        losses = {"loss_decode": self._loss(logits, masks)}
        if self.auxiliary_head is not None:
            aux = self._to_input_size(self.auxiliary_head(maps[self.aux_map_index]), frame, (height, width))
            losses["loss_aux"] = self.aux_loss_weight * self._loss(aux, masks)
        return losses

    @staticmethod
    def _to_input_size(logits: torch.Tensor, padded: Sequence[int], size: tuple[int, int]) -> torch.Tensor:
        logits = F.interpolate(logits, size=tuple(padded), mode="bilinear", align_corners=False)
        return logits[..., : size[0], : size[1]]

    def _loss(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if masks.shape[-2:] != logits.shape[-2:]:
            raise ValueError(f"masks {tuple(masks.shape)} must be (B, H, W) of the images {tuple(logits.shape[-2:])}")
        return segmentation_cross_entropy(logits, masks, self.ignore_index, self.loss_average)


def build_upernet(
    backbone: DenseSwin,
    num_classes: int,
    *,
    channels: int = 512,
    pool_scales: Sequence[int] = (1, 2, 3, 6),
    dropout: float = 0.1,
    aux_stage: int | None = 2,
    aux_channels: int = 256,
    aux_loss_weight: float = 0.4,
    ignore_index: int = 255,
    size_divisor: int = 32,
    image_mean: Sequence[float] | None = IMAGENET_MEAN,
    image_std: Sequence[float] | None = IMAGENET_STD,
    loss_average: str = "valid",
    test_padding: str = "size_divisor",
) -> UperNet:
    """UperNet (SPEC §5) on ``backbone`` (all four stages: ``out_indices=(0, 1, 2, 3)``).

    Args:
        backbone: DenseSwin; every map it returns feeds the UperHead (PPM on the last).
        num_classes: classes predicted (150 for ADE20K after the data's shift by one).
        channels, pool_scales, dropout: UperHead width 512, PPM scales 1/2/3/6, Dropout2d 0.1.
        aux_stage: Swin stage (0-based; 2 = "stage 3") whose map feeds the FCN head; None drops it.
        aux_channels, aux_loss_weight: FCN head width 256, one conv, loss weight 0.4.
        ignore_index: label ignored by the loss (255).
        size_divisor: inputs are padded to a multiple of this before the backbone.
        image_mean, image_std: normalisation of 0-1 images inside the model; None to skip.
        loss_average: "valid" (default: CE over the non-ignored pixels) or "all" (every pixel in
            the denominator, ignored ones adding 0: mmseg 0.11, SPEC §8.11); decode and auxiliary.
        test_padding: "size_divisor" (default: eval pads to ``size_divisor`` too) or "patch"
            (eval pads only to the patch size 4 and resizes logits straight to the image:
            mmseg's whole-image test, SPEC §8.11). Training always pads to ``size_divisor``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    decode_head = UperHead(backbone.out_channels, num_classes, channels, pool_scales, dropout)
    auxiliary_head, aux_index = None, 0
    if aux_stage is not None:
        if aux_stage not in backbone.out_indices:
            raise ValueError(f"aux_stage {aux_stage} is not among the backbone's out_indices {backbone.out_indices}")
        aux_index = backbone.out_indices.index(aux_stage)
        auxiliary_head = FCNHead(backbone.out_channels[aux_index], num_classes, aux_channels, 1, dropout)
    return UperNet(
        backbone,
        decode_head,
        auxiliary_head,
        aux_map_index=aux_index,
        aux_loss_weight=aux_loss_weight,
        ignore_index=ignore_index,
        size_divisor=size_divisor,
        image_mean=image_mean,
        image_std=image_std,
        loss_average=loss_average,
        test_padding=test_padding,
    )
