"""The shared base of every dense task (detection, instance and semantic segmentation, oriented
detection): the tuned DenseSwin from a config, the head builder's options checked against its keywords,
the backbone's input statistics, an eval-only resize, and the one generic ``build_dense_model``."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from monatune.backbones.dense_swin import DenseSwin
from monatune.backbones.stats import input_stats as backbone_input_stats
from monatune.engine.build import backbone_from_config
from monatune.engine.config import ConfigError, ExperimentConfig
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
    return backbone_from_config(cfg.model, dense=True, out_indices=out_indices)  # (a dense Swin always partitions)


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


def build_dense_model(
    cfg: ExperimentConfig,
    heads: Mapping[str, Callable[..., nn.Module]],
    default_out_indices: Sequence[int] | Mapping[str, Sequence[int]],
    *,
    kind: str,
    own_keys: Sequence[str] = BACKBONE_KEYS,
    eval_resize: tuple[int, int] | None = None,
    stats: str = "options",
    tune: bool = True,
) -> nn.Module:
    """``heads[cfg.model.head]`` on the config's DenseSwin, tuned by ``cfg.model.method``: the backbone
    is frozen except what the method trains, the neck and heads train fully.

    ``default_out_indices``: the stages read unless ``head_options.out_indices`` says (per head when a
    mapping); ``kind``: what an unknown head is not, in its error ("a detection head"); ``own_keys``: head_options read
    here, not passed to the builder; ``eval_resize``: (min, max) sizes of an eval-only resize
    (torchvision-style detectors); ``stats``: how the model gets the backbone's input statistics,
    as builder options ("options") or in its ``image_mean``/``image_std`` buffers ("buffers");
    ``tune=False``: leave every parameter trainable, no method applied."""
    head = cfg.model.head
    if head not in heads:
        raise ValueError(f"model.head: {head!r} is not {kind}; valid: {', '.join(heads)}")
    defaults = default_out_indices[head] if isinstance(default_out_indices, Mapping) else default_out_indices
    options = builder_options(cfg, heads[head], own_keys)
    mean, std = input_stats(cfg)
    if stats == "options":
        options = {"image_mean": mean, "image_std": std, **options}
    model = heads[head](dense_backbone(cfg, defaults), cfg.model.num_classes, **options)
    if stats == "buffers":
        model.image_mean.copy_(torch.tensor(mean).view(3, 1, 1))
        model.image_std.copy_(torch.tensor(std).view(3, 1, 1))
    if eval_resize is not None:
        model = use_eval_resize(model, cfg, *eval_resize)
    return tune_dense_model(model, cfg) if tune else model
