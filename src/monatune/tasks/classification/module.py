"""Classification LightningModule: cross-entropy training, top-1/top-5 accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from monatune.engine.build import backbone_from_config
from monatune.engine.config import ConfigError, ExperimentConfig
from monatune.engine.module import TunedModule
from monatune.tuning import apply


def build_classifier(cfg: ExperimentConfig) -> nn.Module:
    """Swin classifier with ``cfg.model.num_classes`` outputs, tuned by ``cfg.model.method`` (head trains)."""
    if cfg.model.head_options:
        raise ConfigError(f"model.head_options: the classification head takes no options, got {sorted(cfg.model.head_options)}; remove them")
    model = backbone_from_config(cfg.model, num_classes=cfg.model.num_classes)
    frozen = ["patch_embed"] if cfg.model.freeze_patch_embed else []  # timm classifiers; SPEC §8.11 option
    names = dict(model.named_modules())
    head = next(h for h in ("head", "heads", "hf.classifier") if h in names)  # timm, torchvision ViT, transformers
    return apply(model, cfg.model.method, train_modules=[head], frozen_modules=frozen, **cfg.model.method_options)


class ClassificationModule(TunedModule):
    """Batches are (images (B,3,H,W), labels (B,)); logs val/loss, val/top1, val/top5 (in %)."""

    def __init__(self, model: nn.Module, cfg: ExperimentConfig) -> None:
        super().__init__(model, cfg)
        n = cfg.model.num_classes
        self.top1 = MulticlassAccuracy(num_classes=n, top_k=1, average="micro")
        self.top5 = MulticlassAccuracy(num_classes=n, top_k=min(5, n), average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def compute_losses(self, batch) -> dict[str, torch.Tensor]:
        images, labels = batch
        return {"loss_cls": F.cross_entropy(self.model(images), labels)}

    def eval_step(self, batch, stage: str) -> None:
        images, labels = batch
        logits = self.model(images)
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), batch_size=len(labels), sync_dist=True)
        self.top1.update(logits, labels)
        self.top5.update(logits, labels)

    def eval_end(self, stage: str) -> None:
        self.log(f"{stage}/top1", 100 * self.top1.compute(), prog_bar=True, sync_dist=True)
        self.log(f"{stage}/top5", 100 * self.top5.compute(), sync_dist=True)
        self.top1.reset()
        self.top5.reset()
