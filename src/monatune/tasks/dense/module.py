"""The LightningModule base of torchvision-contract detectors (detection, instance segmentation, oriented
detection), and gathering eval records over DDP ranks."""

from __future__ import annotations

from typing import Any

import torch

from monatune.engine.module import TunedModule


def gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` under DDP (pickled all-gather), else ``[obj]``."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _plain(x: Any) -> Any:
    return x.detach().as_subclass(torch.Tensor).cpu() if isinstance(x, torch.Tensor) else x


class DetectorModule(TunedModule):
    """Base for the modules of detectors with torchvision's contract: ``model(images)`` -> one dict of
    detections per image; ``model(images, targets)`` in training -> dict of losses. Batches are
    ``(images, targets)``; the model trains on the targets' ``training_target_keys``."""

    training_target_keys: tuple[str, ...] = ("boxes", "labels")

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.model(images)

    def compute_losses(self, batch) -> dict[str, torch.Tensor]:
        images, targets = batch
        return self.model(images, [{k: t[k] for k in self.training_target_keys} for t in targets])
