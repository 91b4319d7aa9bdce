"""Adapter-only checkpoints: what a tuned model learned, in one safetensors file.

The file holds the trainable parameters and the buffers training changes (``adapter_state_dict``):
every persistent buffer of the ``train_modules`` (e.g. the BatchNorm running statistics of a UperNet
or Cascade head) and the running statistics of every BatchNorm-style layer elsewhere (train mode
updates them whether or not its affine parameters train; Swin backbones have none). The backbone's
other buffers (Swin's relative-position index, attention masks) are architecture constants and stay
out.
"""

from __future__ import annotations

import copy
import itertools
import json
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from monatune.backbones import find_block_sites
from monatune.files import write_atomically
from monatune.tuning import apply, tuning_state

FORMAT_VERSION = "2"
READABLE_VERSIONS = ("1", "2")  # 1: parameters only (read; a model's buffers are then left as they are)


class AdapterMismatchError(ValueError):
    """An adapter file does not fit the model (other backbone, method or options)."""


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors that train, by parameter name."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def learned_buffers(model: nn.Module, train_modules: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Persistent buffers that training may change, by state-dict name: every one inside the
    ``train_modules`` ("" = the whole model) and the running statistics of every BatchNorm-style layer."""
    if isinstance(train_modules, str):
        train_modules = [train_modules]
    out = {}
    for prefix, module in model.named_modules():
        in_train_module = any(name == "" or prefix == name or prefix.startswith(f"{name}.") for name in train_modules)
        if not (in_train_module or isinstance(module, _NormBase)):
            continue
        for name, buf in module.named_buffers(recurse=False):
            if buf is not None and name not in module._non_persistent_buffers_set:
                out[f"{prefix}.{name}" if prefix else name] = buf
    return out


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What ``save_adapter`` writes: trainable parameters plus ``learned_buffers``."""
    state = tuning_state(model)
    train_modules = state["train_modules"] if state is not None else ()
    return {**trainable_state_dict(model), **learned_buffers(model, train_modules)}


def save_adapter(model: nn.Module, path: str | Path, *, backbone: str | None = None, task: str | None = None) -> Path:
    """Write the trainable tensors of a tuned model (with method and options as metadata), atomically.

    ``backbone`` (e.g. ``swin_base_patch4_window7_224``) and ``task`` (e.g. ``detection``) are recorded
    when given, so that loading the file onto another backbone can say what it was trained on.
    """
    from safetensors.torch import save_file

    from monatune.version import __version__

    state = tuning_state(model)
    if state is None:
        raise ValueError("save_adapter: model is not tuned; call monatune.apply(model, method) first")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in adapter_state_dict(model).items()}
    metadata = {
        "format": "monatune-adapter",
        "format_version": FORMAT_VERSION,
        "monatune_version": __version__,
        "method": state["method"],
        "options": json.dumps(state["options"]),
        "train_modules": json.dumps(state["train_modules"]),
        "frozen_modules": json.dumps(state.get("frozen_modules", [])),
    }
    for key, value in (("backbone", backbone), ("task", task)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"save_adapter: {key} must be a name (str) or None, got {value!r}")
        if value is not None:
            metadata[key] = value
    return write_atomically(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """(tensors, {"format_version", "method", "options", "train_modules", "frozen_modules", "backbone",
    "task"}) of an adapter file; ``backbone``/``task`` are None when the file does not record them."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"adapter file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise AdapterMismatchError(f"{path} is not a readable safetensors file: {exc}") from exc
    if meta.get("format") != "monatune-adapter":
        raise AdapterMismatchError(f"{path} is not a monatune adapter file (metadata 'format' missing)")
    version = meta.get("format_version", "1")
    if version not in READABLE_VERSIONS:
        raise AdapterMismatchError(
            f"{path} has adapter format version {version} (written by monatune {meta.get('monatune_version', '?')}); "
            f"this monatune reads versions {', '.join(READABLE_VERSIONS)}: upgrade monatune"
        )
    info = {
        "format_version": version,
        "method": meta["method"],
        "options": json.loads(meta.get("options", "{}")),
        "train_modules": json.loads(meta.get("train_modules", "[]")),
        "frozen_modules": json.loads(meta.get("frozen_modules", "[]")),
        "backbone": meta.get("backbone"),
        "task": meta.get("task"),
    }
    return tensors, info


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an adapter file into ``model``; applies the file's method first if ``model`` is plain.

    Every key and shape is checked before any tensor is copied (and, for a plain model, before the
    method is applied): a file from another backbone, method or option set raises
    AdapterMismatchError naming the mismatched keys and shapes, and leaves the model untouched.
    """
    tensors, info = read_adapter(path)
    state = tuning_state(model)
    if state is None:
        # Rehearse on a shape-only copy so that a file that does not fit leaves the model plain.
        skeleton = _meta_copy(model)
        apply(skeleton, info["method"], train_modules=info["train_modules"], frozen_modules=info["frozen_modules"], **info["options"])
        _check_fit(_expected_in_file(skeleton, info, path, warn=False), tensors, path, info, model)
        apply(model, info["method"], train_modules=info["train_modules"], frozen_modules=info["frozen_modules"], **info["options"])
    elif state["method"] != info["method"] or json.loads(json.dumps(state["options"])) != info["options"]:
        # (compared in JSON form: the file stores tuples as lists)
        raise AdapterMismatchError(
            f"{path} holds method {info['method']!r} {info['options']}, the model is tuned with "
            f"{state['method']!r} {state['options']}"
        )
    expected = _expected_in_file(model, info, path)
    _check_fit(expected, tensors, path, info, model)
    with torch.no_grad():
        for key, target in expected.items():
            target.copy_(tensors[key].to(target.device, target.dtype))
    return model


def _expected_in_file(model: nn.Module, info: dict[str, object], path: str | Path, warn: bool = True) -> dict[str, torch.Tensor]:
    """The tensors a file of ``info``'s format version holds for this (tuned) model."""
    if info["format_version"] == "1":
        left = sorted(set(adapter_state_dict(model)) - set(trainable_state_dict(model)))
        if left and warn:
            warnings.warn(
                f"{path} is a format-1 adapter file (parameters only): {len(left)} buffer(s) keep the "
                f"model's values, e.g. {', '.join(left[:4])}; save the adapter again to include them",
                stacklevel=3,
            )
        return trainable_state_dict(model)
    return adapter_state_dict(model)


def _check_fit(
    expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], path: str | Path, info: dict[str, object], model: nn.Module
) -> None:
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(tensors))
        if tensors[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or wrong_shape):
        return
    if info.get("backbone"):
        task = f" (task {info['task']})" if info.get("task") else ""
        differences = [
            f"{len(items)} {label}"
            for label, items in (
                ("tensor(s) differ in shape", wrong_shape),
                ("missing from the file", missing),
                ("not in this model", unexpected),
            )
            if items
        ]
        examples = (wrong_shape + missing + unexpected)[:3]
        raise AdapterMismatchError(
            f"{path} was trained on {info['backbone']}{task}; this model is {describe_backbone(model)}: "
            + ", ".join(differences)
            + f" (e.g. {'; '.join(examples)})"
        )
    lines = [f"{path} does not fit this model ({info['method']}):"]
    for label, items in (("missing in file", missing), ("not in model", unexpected), ("shape", wrong_shape)):
        if items:
            lines.append(f"  {label} ({len(items)}): " + "; ".join(items[:8]) + (" ..." if len(items) > 8 else ""))
    raise AdapterMismatchError("\n".join(lines))


def describe_backbone(model: nn.Module) -> str:
    """``swin_tiny_patch4_window7_224 (stage widths 96-192-384-768, depths 2-2-6-2)``: the timm name
    when the model records one, and the shape of its Swin blocks."""
    names = [
        cfg["architecture"]
        for m in model.modules()
        if isinstance(cfg := getattr(m, "pretrained_cfg", None), dict) and cfg.get("architecture")
    ]
    try:
        sites = find_block_sites(model)
    except ValueError:
        return names[0] if names else f"a {type(model).__name__} without Swin blocks"
    stages = sorted({site.stage for site in sites})
    widths = "-".join(str(next(s.dim for s in sites if s.stage == stage)) for stage in stages)
    depths = "-".join(str(sum(s.stage == stage for s in sites)) for stage in stages)
    shape = f"stage widths {widths}, depths {depths}"
    return f"{names[0]} ({shape})" if names else f"a Swin with {shape}"


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers live on the meta device (no memory, no data)."""
    memo: dict[int, object] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)
