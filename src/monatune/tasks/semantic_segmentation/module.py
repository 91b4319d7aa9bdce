"""Semantic segmentation LightningModule: UperNet + auxiliary FCN losses, mIoU over the whole set."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from monatune.engine.config import ExperimentConfig
from monatune.engine.module import TunedModule
from monatune.metrics.miou import MeanIoU
from monatune.tasks.dense.build import build_dense_model
from monatune.tasks.semantic_segmentation.upernet import build_upernet

HEADS = {"upernet": build_upernet}


def build_segmenter(cfg: ExperimentConfig) -> nn.Module:
    """UperNet (``model.head: upernet``) over all four Swin stages, tuned by ``model.method``."""
    return build_dense_model(cfg, HEADS, (0, 1, 2, 3), kind="a semantic segmentation head")


class SemanticSegmentationModule(TunedModule):
    """Training batches are ``(images (B, 3, H, W) in 0-1, masks (B, H, W) int64, 255 = ignore)``; eval
    batches are lists (sizes differ): each image is resized for the model while its mask keeps the
    original size, so logits are upsampled (bilinear) to the mask before the argmax, as mmseg scores.
    Logs ``val/miou`` (over the whole set and all DDP ranks), ``val/aacc`` and ``val/macc``, in %."""

    def __init__(self, model: nn.Module, cfg: ExperimentConfig) -> None:
        super().__init__(model, cfg)
        self.miou = MeanIoU(cfg.model.num_classes, ignore_index=cfg.model.head_options.get("ignore_index", 255))
        self.last_eval: dict[str, Any] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def compute_losses(self, batch) -> dict[str, torch.Tensor]:
        images, masks = batch
        return self.model(images, masks)

    def eval_step(self, batch, stage: str) -> None:
        images, masks = batch
        if len({tuple(image.shape) for image in images}) == 1:
            logits = list(self.model(torch.stack(list(images))))
        else:
            logits = [self.model(image[None])[0] for image in images]
        for image_logits, mask in zip(logits, masks):
            resized = F.interpolate(image_logits[None], size=tuple(mask.shape[-2:]), mode="bilinear", align_corners=False)
            self.miou.update(resized.argmax(dim=1)[0], mask)

    def eval_end(self, stage: str) -> None:
        # Sum the confusion matrices of all ranks (a no-op on one device).
        confusion = self.trainer.strategy.reduce(self.miou.confusion.to(self.device), reduce_op="sum")
        self.miou.confusion = confusion.cpu()
        self.last_eval = self.miou.compute()
        self.miou.reset()
        self.log(f"{stage}/miou", 100.0 * self.last_eval["miou"], prog_bar=True)
        self.log(f"{stage}/aacc", 100.0 * self.last_eval["pixel_accuracy"])
        self.log(f"{stage}/macc", 100.0 * self.last_eval["mean_accuracy"])
