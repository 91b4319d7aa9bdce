"""Experiment configuration: YAML files checked against typed sections, with dotted command-line overrides.

A config has the sections ``model``, ``data``, ``optim`` and ``trainer`` (plus ``task``). Unknown keys
and values outside a key's choices raise ``ConfigError`` naming the key and the valid options.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from monatune.engine.tasks import TASK_NAMES

TASKS = TASK_NAMES  # the registered tasks (engine/tasks.py)
SCHEDULES = ("cosine", "step", "poly", "constant")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")  # Lightning's names
PATCH_SIZE = 4  # every Swin here (timm, torchvision, embedded) embeds 4x4 patches


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it and what is valid."""


@dataclass
class ModelConfig:
    backbone: str = "swin_tiny_patch4_window7_224"
    pretrained: bool | str = False  # True: timm hub weights for `backbone`; a string: a timm name with tag
    weights: str | None = None  # local weights file (safetensors / timm .pth / Microsoft Swin .pth)
    method: str = "mona"
    method_options: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 1000
    drop_path_rate: float = 0.2
    head: str = "linear"  # task-specific head/detector name (e.g. retinanet, cascade_mask_rcnn, upernet)
    head_options: dict[str, Any] = field(default_factory=dict)
    # activation checkpointing of the Swin blocks (monatune.checkpoint_blocks) for large inputs:
    # true = every stage, a list = these stages (0-based), false = off. Same results, ~1 extra block forward.
    checkpoint_blocks: bool | list[int] = False
    # keep the Swin's patch embedding frozen whatever the method trains (mmdet's frozen_stages=1, as the
    # public VOC configs; matters for full, bitfit, normtuning). Dense tasks; SPEC §8.11 parity option.
    freeze_patch_embed: bool = False
    # backbone tensors a weights file may leave at their initial values (fnmatch patterns on the backbone's
    # state-dict keys, e.g. ["layers.3.*"]); any other missing tensor is an error
    allow_missing: list[str] = field(default_factory=list)


@dataclass
class DataConfig:
    dataset: str = "imagefolder"
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    test_split: str | None = None
    image_size: int = 224
    resize_size: int = 256  # eval: resize to this, then centre crop image_size
    batch_size: int = 16
    eval_batch_size: int | None = None
    num_workers: int = 4
    strict: bool = False  # corrupt images: error instead of skip-with-warning
    verify_images: bool = True  # open every image once up front to find corrupt files
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific extras


@dataclass
class OptimConfig:
    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    warmup_steps: int = 0  # used when warmup_epochs == 0
    warmup_ratio: float = 0.001  # start lr = lr * warmup_ratio
    min_lr_ratio: float = 0.01  # cosine ends at lr * min_lr_ratio
    milestones: list[float] = field(default_factory=list)  # step schedule, in epochs (or steps with max_steps)
    gamma: float = 0.1
    poly_power: float = 1.0
    grad_clip: float | None = None
    # parameter kinds trained without weight decay, from NO_DECAY_KINDS; null = the task's default
    # (engine.optim.default_no_decay, SPEC §8.9: classification [norm, bias, rel_pos, abs_pos]; detection,
    # segmentation, oriented [norm_name, rel_pos, abs_pos]; H2RBox-v2p [])
    no_decay: list[str] | None = None


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    max_steps: int = -1  # > 0: iteration-based training (milestones/warmup then count steps)
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # auto: 16-mixed on CUDA, 32 on CPU
    out_dir: str = "runs/experiment"
    seed: int = 0
    log_every_n_steps: int = 10
    val_every_n_epochs: int = 1
    checkpoint_every_n_steps: int | None = None  # also checkpoint mid-epoch (long epochs)
    progress_bar: bool | str = "auto"  # auto: only on a terminal
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    deterministic: bool = False
    accumulate_grad_batches: int = 1  # one optimizer step per this many batches (schedules count optimizer steps)
    sync_batchnorm: bool = False  # BatchNorm statistics over every device's images (DDP); SPEC §8.6


@dataclass
class ExperimentConfig:
    task: str = "classification"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """Coerce/validate ``value`` for ``annotation``; raise ConfigError naming ``key``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return _check_type(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} matches none of {_type_name(annotation)}")
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_check_type(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        if origin is tuple and args and args[-1] is not Ellipsis and len(items) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(items)}")
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "")


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = prefix or "top level"
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid: {', '.join(fields)}")
    values = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value or {}, key)
        else:
            values[name] = _check_type(value, hint, key)
    return cls(**values)


def _check_choices(cfg: ExperimentConfig) -> None:
    from monatune.methods import get_method_class, option_names

    def choose(key: str, value: str, valid: typing.Sequence[str]) -> None:
        if value not in valid:
            raise ConfigError(f"{key}: {value!r} is not valid; choose one of: {', '.join(valid)}")

    choose("task", cfg.task, TASKS)
    choose("optim.schedule", cfg.optim.schedule, SCHEDULES)
    choose("optim.optimizer", cfg.optim.optimizer, ("adamw", "sgd"))
    try:
        get_method_class(cfg.model.method)
    except ValueError as exc:
        raise ConfigError(f"model.method: {exc}") from None
    unknown = sorted(set(cfg.model.method_options) - set(option_names(cfg.model.method)))
    if unknown:
        raise ConfigError(
            f"model.method_options: unknown {unknown} for {cfg.model.method!r}; "
            f"valid: {', '.join(option_names(cfg.model.method)) or '(none)'}"
        )
    if cfg.optim.no_decay is not None:
        from monatune.engine.optim import NO_DECAY_KINDS

        for i, kind in enumerate(cfg.optim.no_decay):
            choose(f"optim.no_decay[{i}]", kind, NO_DECAY_KINDS)
    if cfg.trainer.accumulate_grad_batches < 1:
        raise ConfigError(f"trainer.accumulate_grad_batches: must be at least 1, got {cfg.trainer.accumulate_grad_batches}")
    stages = cfg.model.checkpoint_blocks
    if isinstance(stages, list) and (not stages or any(s < 0 for s in stages)):
        raise ConfigError(f"model.checkpoint_blocks: a list of stage indices (0, 1, 2, ...) or true/false, got {stages}")
    choose("trainer.accelerator", cfg.trainer.accelerator, ACCELERATORS)
    _check_devices(cfg.trainer)
    if cfg.task == "classification":
        _check_classification_sizes(cfg.data)


def _check_devices(t: TrainerConfig) -> None:
    """``trainer.devices``: a count >= 1, -1 or "auto" (all), or device ids "0,1"; Lightning's 0 is an error."""
    devices = t.devices
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int):
        valid = devices >= 1 or devices == -1
    else:
        ids = devices.replace(" ", "").rstrip(",").split(",")
        valid = devices == "auto" or ("," in devices and all(i.isdigit() for i in ids))
    if not valid:
        raise ConfigError(
            f"trainer.devices: {t.devices!r} is not a device count; give 1, 2, ... (devices per node), -1 or auto (all), "
            "or device ids such as '0,1'"
        )
    if t.num_nodes < 1:
        raise ConfigError(f"trainer.num_nodes: must be at least 1, got {t.num_nodes}")


def _check_classification_sizes(d: DataConfig) -> None:
    """Classification images go into the Swin as they are: ``image_size`` must split into whole patches,
    and the eval crop must fit inside the resized image (else it is padded with black)."""
    if d.image_size < PATCH_SIZE or d.image_size % PATCH_SIZE:
        below = d.image_size // PATCH_SIZE * PATCH_SIZE
        fix = f"use {below} or {below + PATCH_SIZE}" if below >= PATCH_SIZE else f"use {PATCH_SIZE} or more"
        raise ConfigError(f"data.image_size: {d.image_size} is not a multiple of the Swin patch size {PATCH_SIZE}; {fix}")
    if d.dataset != "digits" and d.image_size > d.resize_size:  # digits are resized straight to image_size
        raise ConfigError(
            f"data.image_size {d.image_size} > data.resize_size {d.resize_size}: the eval centre crop would be "
            f"padded with black; set data.resize_size to {d.image_size} or more (the paper: 256 for 224)"
        )


def parse_config(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate a config mapping (as read from YAML) into an ExperimentConfig."""
    cfg = _build(ExperimentConfig, raw, "")
    _check_choices(cfg)
    return cfg


def apply_overrides(raw: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a raw config mapping."""
    raw = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        dotted, text = item.split("=", 1)
        value = yaml.safe_load(text) if text != "" else None
        node = raw
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return raw


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML config (or start from defaults when ``path`` is None) and apply overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return parse_config(apply_overrides(raw, overrides))
    except ConfigError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{exc}") from None
