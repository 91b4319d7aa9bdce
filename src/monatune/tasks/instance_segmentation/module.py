"""Instance segmentation LightningModule: Cascade Mask R-CNN / Mask R-CNN losses, COCO box and mask AP."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from monatune.engine.config import ExperimentConfig
from monatune.metrics.coco_map import COCOMAP
from monatune.tasks.dense.build import build_dense_model
from monatune.tasks.dense.module import DetectorModule, gather_objects
from monatune.tasks.instance_segmentation.cascade_mask_rcnn import build_cascade_mask_rcnn
from monatune.tasks.instance_segmentation.mask_rcnn import build_mask_rcnn

HEADS = {"cascade_mask_rcnn": build_cascade_mask_rcnn, "mask_rcnn": build_mask_rcnn}
LOGGED = ("map", "map_50", "map_75")  # per IoU type, as val/bbox_map, val/segm_map_50, ...


def build_instance_segmenter(cfg: ExperimentConfig) -> nn.Module:
    """``model.head`` (cascade_mask_rcnn | mask_rcnn) on an FPN over all four Swin stages, tuned by ``model.method``."""
    return build_dense_model(cfg, HEADS, (0, 1, 2, 3), kind="an instance segmentation head", eval_resize=(800, 1333))


def merge_states_over_ranks(metric: Any) -> None:
    """Concatenate a torchmetrics metric's list states over DDP ranks in place, then compute locally.

    torchmetrics gathers list states one tensor at a time, which hangs when ranks hold different
    numbers of images; one pickled all-gather per state list does not.
    """
    states = {name: value for name, value in metric.metric_state.items() if isinstance(value, list)}
    gathered = gather_objects({k: [v.cpu() if isinstance(v, torch.Tensor) else v for v in vs] for k, vs in states.items()})
    if len(gathered) == 1:
        return
    for name in states:
        setattr(metric, name, [item for rank in gathered for item in rank[name]])
    metric._to_sync = False  # the states are complete now; no second sync inside compute()


class InstanceSegmentationModule(DetectorModule):
    """Batches are ``(images: list of (3, H, W) in 0-1, targets: list of dicts)``; training targets hold
    ``boxes`` (N, 4) xyxy, ``labels`` (N,) in 1..C and ``masks`` (N, H, W) uint8, eval targets the
    same at the original size plus ``iscrowd`` and ``area``. Logs ``val/bbox_map``, ``val/segm_map``
    (COCO AP@[.5:.95] in %) and their ``_50``/``_75`` variants; -1 (nothing to score) is logged as NaN."""

    training_target_keys = ("boxes", "labels", "masks")

    def __init__(self, model: nn.Module, cfg: ExperimentConfig) -> None:
        super().__init__(model, cfg)
        self.coco = COCOMAP(("bbox", "segm"))
        self.last_eval: dict[str, Any] = {}

    def eval_step(self, batch, stage: str) -> None:
        images, targets = batch
        preds = self.model(images)
        self.coco.update(preds, [{k: t[k] for k in ("boxes", "labels", "masks", "iscrowd", "area")} for t in targets])

    def eval_end(self, stage: str) -> None:
        merge_states_over_ranks(self.coco.metric)
        self.last_eval = self.coco.compute()
        self.coco.reset()
        for iou_type in self.coco.iou_types:
            for name in LOGGED:
                value = self.last_eval[f"{iou_type}_{name}"]
                self.log(f"{stage}/{iou_type}_{name}", 100.0 * value if value >= 0 else float("nan"), prog_bar=name == "map")
