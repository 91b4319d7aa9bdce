"""``apply``: put a tuning method on a model with an unmodified Swin backbone and freeze the rest."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from torch import nn

from monatune.backbones import find_block_sites
from monatune.methods import build_method

STATE_ATTR = "monatune_state"


def apply(
    model: nn.Module, method: str, *, train_modules: Sequence[str] = (), frozen_modules: Sequence[str] = (), **options: Any
) -> nn.Module:
    """Apply ``method`` to every Swin block inside ``model``; return ``model`` (changed in place).

    Afterwards exactly the method's parameters require grad: its added modules and the backbone
    parameters it selects. Every other parameter of ``model`` is frozen, except the submodules
    named in ``train_modules`` (e.g. ``["head"]`` for a timm classifier), which train fully.
    ``frozen_modules`` stay frozen whatever the method trains (e.g. ``["patch_embed"]``: mmdet's
    ``frozen_stages=1`` for full, bitfit and normtuning).

    Raises ValueError for an unknown method, option or module name, or a model tuned already.
    """
    if getattr(model, STATE_ATTR, None) is not None:
        raise ValueError(f"model already tuned with {getattr(model, STATE_ATTR)['method']!r}; apply once per model")
    for name in (*train_modules, *frozen_modules):
        _get_submodule(model, name)
    tuning = build_method(method, **options)
    sites = find_block_sites(model)
    added = tuning.add_modules(model, sites)
    model.requires_grad_(False)
    for param in tuning.trainable(model, sites):
        param.requires_grad_(True)
    for module in added:
        module.requires_grad_(True)
    for name in train_modules:
        _get_submodule(model, name).requires_grad_(True)
    for name in frozen_modules:
        _get_submodule(model, name).requires_grad_(False)
    state = {"method": method, "options": dataclasses.asdict(tuning.options), "train_modules": list(train_modules)}
    if frozen_modules:
        state["frozen_modules"] = list(frozen_modules)
    setattr(model, STATE_ATTR, state)
    return model


def apply_with_heads(model: nn.Module, method: str, *, frozen_modules: Sequence[str] = (), **options: Any) -> nn.Module:
    """``apply`` to a dense model (``model.backbone`` + neck + heads): the Swin is frozen except what
    the method trains, every other top-level child with parameters trains fully.

    The tuning state is recorded on ``model`` itself, so ``save_adapter(model)`` and checkpoints carry
    the method together with the trained neck and heads.
    """
    if not isinstance(getattr(model, "backbone", None), nn.Module):
        raise ValueError(f"{type(model).__name__} has no .backbone module; use apply(model, method, train_modules=...)")
    heads = [name for name, child in model.named_children() if name != "backbone" and any(True for _ in child.parameters())]
    heads += [f"backbone.{name}" for name in getattr(model.backbone, "new_modules", ())]  # e.g. a ViT's feature pyramid
    return apply(model, method, train_modules=heads, frozen_modules=frozen_modules, **options)


def tuning_state(model: nn.Module) -> dict[str, Any] | None:
    """``{"method", "options", "train_modules"}`` of a tuned model, or None."""
    return getattr(model, STATE_ATTR, None)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts (shared tensors counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total


def _get_submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        children = [n for n, _ in model.named_children()]
        raise ValueError(f"train_modules: no submodule {name!r} in {type(model).__name__}; top-level: {children}") from None
