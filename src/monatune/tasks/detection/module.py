"""Detection (RetinaNet on VOC, SPEC §5): its head table, the model from a config and its LightningModule."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from monatune.engine.config import ExperimentConfig
from monatune.metrics.voc07_map import VOC07MAP, pixel_offset_for
from monatune.tasks.dense.build import build_dense_model
from monatune.tasks.dense.module import DetectorModule, gather_objects
from monatune.tasks.detection.data import box_convention
from monatune.tasks.detection.retinanet import build_retinanet

HEADS = {"retinanet": build_retinanet}


def build_detector(cfg: ExperimentConfig) -> nn.Module:
    """RetinaNet (``model.head: retinanet``) on the config's Swin stages 2-4, tuned by ``model.method``."""
    return build_dense_model(cfg, HEADS, (1, 2, 3), kind="a detection head", eval_resize=(600, 1000))


def _plain(x: Any) -> Any:
    return x.detach().as_subclass(torch.Tensor).cpu() if isinstance(x, torch.Tensor) else x


class DetectionModule(DetectorModule):
    """Batches are ``(images: list of (3, H, W) in 0-1, targets: list of dicts)``; training targets hold
    ``boxes`` (N, 4) xyxy and ``labels`` (N,) in 1..C, eval targets the original-image ``boxes``,
    ``labels`` and ``difficult``. Logs ``val/map``: VOC07 11-point mAP at IoU 0.5 in %, difficult ignored,
    over the whole set (all DDP ranks), with the IoU of ``data.options.box_convention`` (devkit +1 or
    mmdet's continuous one)."""

    def __init__(self, model: nn.Module, cfg: ExperimentConfig, class_names: Sequence[str] | None = None) -> None:
        super().__init__(model, cfg)
        self.class_names = tuple(class_names) if class_names is not None else None
        self.pixel_offset = pixel_offset_for(box_convention(cfg))
        self._records: list[tuple[dict, dict]] = []
        self.last_eval: dict[str, Any] = {}

    def eval_step(self, batch, stage: str) -> None:
        images, targets = batch
        for pred, target in zip(self.model(images), targets):
            kept_pred = {k: _plain(pred[k]) for k in ("boxes", "scores", "labels")}
            self._records.append((kept_pred, {k: _plain(target[k]) for k in ("boxes", "labels", "difficult")}))

    def eval_end(self, stage: str) -> None:
        records = [r for rank in gather_objects(self._records) for r in rank]
        self._records = []
        metric = VOC07MAP(self.cfg.model.num_classes, self.class_names, pixel_offset=self.pixel_offset)
        metric.update([p for p, _ in records], [t for _, t in records])
        self.last_eval = metric.compute()
        self.log(f"{stage}/map", 100.0 * self.last_eval["map"], prog_bar=True)
