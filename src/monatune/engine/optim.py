"""Optimizer parameter groups from trainable parameters only, with weight decay off for chosen kinds
of parameters (norm layers, biases, relative-position tables, absolute position embeddings)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
NO_DECAY_KINDS = ("norm", "bias", "rel_pos", "abs_pos")
_NAMED_KINDS = {"relative_position_bias_table": "rel_pos", "absolute_pos_embed": "abs_pos"}


def default_no_decay(task: str) -> tuple[str, ...]:
    """SPEC §8.9: classification exempts norms, biases and position tables; the dense and oriented
    tasks decay biases (the public mmdet/mmseg/mmrotate configs exempt only norms and position tables)."""
    return NO_DECAY_KINDS if task == "classification" else ("norm", "rel_pos", "abs_pos")


def parameter_kind(name: str, param: nn.Parameter, norm_params: set[int]) -> str | None:
    """The no-decay kind of a parameter (``norm``, ``bias``, ``rel_pos``, ``abs_pos``), or None."""
    if id(param) in norm_params:
        return "norm"
    leaf = name.rsplit(".", 1)[-1]
    if leaf in _NAMED_KINDS:
        return _NAMED_KINDS[leaf]
    return "bias" if leaf == "bias" else None


def parameter_groups(model: nn.Module, weight_decay: float, no_decay: Sequence[str] = NO_DECAY_KINDS) -> list[dict]:
    """Two AdamW groups over the trainable parameters: with decay, and without (the kinds named in
    ``no_decay``). Frozen parameters are never handed to the optimizer."""
    unknown = sorted(set(no_decay) - set(NO_DECAY_KINDS))
    if unknown:
        raise ValueError(f"no_decay: unknown kind(s) {unknown}; valid: {', '.join(NO_DECAY_KINDS)}")
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORM_TYPES) for p in m.parameters(recurse=False)}
    decay, exempt, seen = [], [], set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (exempt if parameter_kind(name, param, norm_params) in no_decay else decay).append(param)
    if not decay and not exempt:
        raise ValueError("no trainable parameters: check the method and train_modules")
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if exempt:
        groups.append({"params": exempt, "weight_decay": 0.0})
    return groups


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    betas=(0.9, 0.999),
    no_decay: Sequence[str] = NO_DECAY_KINDS,
) -> torch.optim.Optimizer:
    groups = parameter_groups(model, weight_decay, no_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}; valid: adamw, sgd")
