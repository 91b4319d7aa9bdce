"""Detection LightningModule (RetinaNet on VOC, SPEC §5) and the pieces every dense task shares:
the tuned dense model from a config, an eval-only resize, and gathering eval records over DDP ranks."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from monatune.backbones.dense_swin import DenseSwin
from monatune.backbones.stats import input_stats as backbone_input_stats
from monatune.engine.build import backbone_from_config
from monatune.engine.config import ConfigError, ExperimentConfig
from monatune.engine.module import TunedModule
from monatune.metrics.voc07_map import VOC07MAP, pixel_offset_for
from monatune.tasks.detection.data import box_convention
from monatune.tasks.detection.retinanet import build_retinanet
from monatune.tuning import apply_with_heads

# head_options keys read here; every other key goes to the detector builder as a keyword argument
BACKBONE_KEYS = ("out_indices",)
KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def input_stats(cfg: ExperimentConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the model normalises 0-1 images with: the embedded backbone's own statistics,
    ImageNet's for hub/timm Swins; ``model.head_options.image_mean/image_std`` override both."""
    mean, std = backbone_input_stats(cfg.model.backbone)
    opts = cfg.model.head_options
    return tuple(opts.get("image_mean", mean)), tuple(opts.get("image_std", std))


def dense_backbone(cfg: ExperimentConfig, default_out_indices: Sequence[int]) -> DenseSwin:
    """The pretrained DenseSwin of ``cfg.model`` returning the stages ``head_options.out_indices``."""
    out_indices = tuple(cfg.model.head_options.get("out_indices", default_out_indices))
    return backbone_from_config(cfg.model, dense=True, out_indices=out_indices, always_partition=True)


def builder_keywords(builder: Callable[..., Any]) -> tuple[str, ...] | None:
    """The keyword arguments ``builder(backbone, num_classes, **options)`` accepts; a builder that passes
    ``**options`` on to the class it returns is followed into that class; None when they cannot be known."""
    params = inspect.signature(builder).parameters.values()
    names = tuple(p.name for p in params if p.kind in KEYWORD_KINDS and p.name not in ("self", "backbone", "num_classes"))
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return names
    try:
        returned = typing.get_type_hints(builder).get("return")
    except (NameError, TypeError):
        return None
    if not inspect.isclass(returned) or returned.__init__ is builder:
        return None
    inner = builder_keywords(returned.__init__)
    return None if inner is None else names + inner


def builder_options(cfg: ExperimentConfig, builder: Callable[..., Any], own_keys: Sequence[str] = BACKBONE_KEYS) -> dict[str, Any]:
    """``model.head_options`` minus ``own_keys`` (read by the task module itself), YAML lists -> tuples,
    for ``builder``: a key it does not take raises ConfigError naming the valid keys."""
    valid = builder_keywords(builder)
    unknown = sorted(set(cfg.model.head_options) - set(own_keys) - set(valid or ()))
    if valid is not None and unknown:
        raise ConfigError(
            f"model.head_options: unknown {unknown} for head {cfg.model.head!r}; valid: {', '.join(sorted({*own_keys, *valid}))}"
        )
    opts = {k: v for k, v in cfg.model.head_options.items() if k not in own_keys}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}


def tune_dense_model(model: nn.Module, cfg: ExperimentConfig) -> nn.Module:
    """Apply ``cfg.model.method`` to the Swin inside ``model``; neck and heads train fully
    (``monatune.tuning.apply_with_heads``). ``model.freeze_patch_embed`` keeps the Swin's patch
    embedding frozen whatever the method trains (mmdet's ``frozen_stages=1``, SPEC §8.11)."""
    frozen = [f"backbone.{model.backbone.patch_embedding}"] if cfg.model.freeze_patch_embed else []
    return apply_with_heads(model, cfg.model.method, frozen_modules=frozen, **cfg.model.method_options)


class EvalResizeTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform that resizes in eval only.

    Training images arrive already resized (and cropped) by the data pipeline, which implements the
    recipe's multi-scale and crop augmentation; at eval the model resizes the original image (short
    side ``min_size``, long side <= ``max_size``) and maps boxes and masks back to it, as mmdet's test
    pipeline does. Normalisation and padding to 32 happen in both modes.
    """

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None):
        if self.training:
            return image, target
        return super().resize(image, target)


def use_eval_resize(model: nn.Module, cfg: ExperimentConfig, default_min: int, default_max: int) -> nn.Module:
    """Give a torchvision-style detector an :class:`EvalResizeTransform` (unless ``min_size`` is null)."""
    opts = cfg.model.head_options
    min_size = opts.get("min_size", default_min)
    if min_size is not None:
        mean, std = input_stats(cfg)
        min_size = min_size[-1] if isinstance(min_size, (list, tuple)) else min_size
        model.transform = EvalResizeTransform(min_size, opts.get("max_size", default_max), list(mean), list(std))
    return model


def gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` under DDP (pickled all-gather), else ``[obj]``."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def build_detector(cfg: ExperimentConfig) -> nn.Module:
    """RetinaNet (``model.head: retinanet``) on the config's Swin stages 2-4, tuned by ``model.method``."""
    if cfg.model.head != "retinanet":
        raise ValueError(f"model.head: {cfg.model.head!r} is not a detection head; valid: retinanet")
    mean, std = input_stats(cfg)
    options = {"image_mean": mean, "image_std": std, **builder_options(cfg, build_retinanet)}
    model = build_retinanet(dense_backbone(cfg, (1, 2, 3)), cfg.model.num_classes, **options)
    return tune_dense_model(use_eval_resize(model, cfg, 600, 1000), cfg)


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
