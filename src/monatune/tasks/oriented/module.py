"""Oriented detection LightningModule (rotated RetinaNet + KLD, Oriented R-CNN, H2RBox-v2; SPEC §5) and
the tuned detector built from a config: patch detections merged per original image, DOTA mAP, Task1 files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from monatune.engine.config import ExperimentConfig
from monatune.metrics.dota_map import DotaEvaluation, evaluate_dota, write_task1_submission
from monatune.tasks.dense.build import build_dense_model
from monatune.tasks.dense.module import DetectorModule, gather_objects
from monatune.tasks.oriented.factory import DEFAULT_OUT_INDICES, DETECTORS
from monatune.tasks.oriented.protocol import MergeSettings, merge_detections, merge_settings, score_settings

# head_options keys read here; every other key is a keyword argument of the detector
MODEL_KEYS = ("out_indices", "image_mean", "image_std")


def build_oriented(cfg: ExperimentConfig, tune: bool = True) -> nn.Module:
    """The detector ``cfg.model.head`` on the config's Swin (stages ``head_options.out_indices``; default
    ``DEFAULT_OUT_INDICES``: all four for Oriented R-CNN, 2-4 for the others, SPEC §8.2), normalising inputs with the backbone's statistics, tuned by ``cfg.model.method``: the
    backbone is frozen except what the method trains, the FPN and heads train fully."""
    return build_dense_model(
        cfg, DETECTORS, DEFAULT_OUT_INDICES, kind="an oriented detector", own_keys=MODEL_KEYS, stats="buffers", tune=tune
    )


def _cpu(x: Any) -> Any:
    return x.detach().as_subclass(torch.Tensor).cpu() if isinstance(x, torch.Tensor) else x


class OrientedModule(DetectorModule):
    """Batches are ``(images: list of (3, H, W) in [0, 1], targets: list of dicts)`` with ``boxes`` (N, 5),
    ``labels`` (N,), ``difficult``, ``polygons`` and ``image_id`` (see ``DotaDataset``).

    Evaluation runs the model on every (patch) image; when the data module cut the images into patches,
    the detections are merged per original image (rotated NMS, ``data.options.merge_*``) and scored
    against the original labels. Logs ``<stage>/map``: Task1 mAP in % (VOC07 11-point AP; by default
    DOTA's polygon IoU 0.5 with difficult objects ignored, ``data.options.eval_*``; SPEC §8.4)
    whenever the split has labels. ``test`` also writes the submission files
    ``Task1_<class>.txt`` to ``<trainer.out_dir>/task1/``.
    """

    def __init__(self, model: nn.Module, cfg: ExperimentConfig, class_names: Sequence[str]) -> None:
        super().__init__(model, cfg)
        self.class_names = tuple(class_names)
        self._detections: dict[str, dict[str, torch.Tensor]] = {}
        self._targets: dict[str, dict[str, torch.Tensor]] = {}
        self.last_eval: DotaEvaluation | None = None

    def eval_step(self, batch, stage: str) -> None:
        images, targets = batch
        for pred, target in zip(self.model(images), targets):
            image_id = target["image_id"]
            self._detections[image_id] = {k: _cpu(pred[k]) for k in ("boxes", "scores", "labels")}
            self._targets[image_id] = {k: _cpu(target[k]) for k in ("polygons", "labels", "difficult")}

    def merge_patches(
        self, detections: dict[str, dict[str, torch.Tensor]], settings: MergeSettings | None = None
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Patch detections (keyed by DOTA patch id) -> detections per original image: shifted back,
        rotated NMS as ``settings`` say (default: the config's ``data.options.merge_*``)."""
        return merge_detections(detections, settings or merge_settings(self.cfg.data.options))

    def _reference(self, stage: str):
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "eval_reference"):
            return datamodule.eval_reference("test" if stage == "test" else "validate")
        return None

    def eval_end(self, stage: str) -> None:
        detections, targets = {}, {}
        for part_dets, part_targets in gather_objects((self._detections, self._targets)):
            detections.update(part_dets)
            targets.update(part_targets)
        self._detections, self._targets = {}, {}
        reference = self._reference(stage)
        if reference is not None and reference.merge:
            detections = self.merge_patches(detections, reference.merge_settings)
        # Without a data module that knows the original labels, score what the loader gave.
        annotations = reference.annotations if reference is not None else targets
        if stage == "test" and self.trainer.is_global_zero:
            write_task1_submission(Path(self.cfg.trainer.out_dir) / "task1", detections, self.class_names)
        if annotations is not None:
            score = reference.score_settings if reference is not None else score_settings(self.cfg.data.options)
            self.last_eval = evaluate_dota(
                detections, annotations, self.class_names, score.iou_threshold, difficult=score.difficult, iou=score.iou
            )
            self.log(f"{stage}/map", 100.0 * self.last_eval.mean_ap, prog_bar=True)


__all__ = ["MODEL_KEYS", "OrientedModule", "build_oriented"]
