"""Optimizer parameter groups from trainable parameters only, with weight decay off for chosen kinds
of parameters (norm layers, biases, relative-position tables, absolute position embeddings)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
NO_DECAY_KINDS = ("norm", "norm_name", "bias", "rel_pos", "abs_pos")
_NAMED_KINDS = {"relative_position_bias_table": "rel_pos", "absolute_pos_embed": "abs_pos"}


def default_no_decay(task: str, head: str | None = None, head_options: dict | None = None) -> tuple[str, ...]:
    """The parameter kinds trained without weight decay by the public code (SPEC §8.9).

    - classification (mmcls: ``norm_decay_mult=0``, ``bias_decay_mult=0``, position tables): every
      norm layer's parameters, biases, relative-position tables, absolute position embeddings;
    - detection, segmentation, oriented (mmdet/mmseg/mmrotate ``custom_keys``): parameters whose name
      holds "norm", and the position tables; biases are decayed, and so are head BatchNorms that
      their frameworks name ``bn`` (ours: torchvision's ``Conv2dNormActivation`` index names);
    - H2RBox-v2p (``head: h2rbox_v2``, the default variant): nothing exempt, everything decayed.
    """
    if task == "classification":
        return ("norm", "bias", "rel_pos", "abs_pos")
    if head == "h2rbox_v2" and (head_options or {}).get("variant", "v2p") == "v2p":
        return ()
    return ("norm_name", "rel_pos", "abs_pos")


def parameter_kinds(name: str, param: nn.Parameter, norm_params: set[int]) -> set[str]:
    """The no-decay kinds a parameter belongs to: ``norm`` (of a norm layer), ``norm_name`` ("norm"
    in its qualified name), ``bias``, ``rel_pos``, ``abs_pos``."""
    kinds = set()
    if id(param) in norm_params:
        kinds.add("norm")
    if "norm" in name:
        kinds.add("norm_name")
    leaf = name.rsplit(".", 1)[-1]
    if leaf in _NAMED_KINDS:
        kinds.add(_NAMED_KINDS[leaf])
    if leaf == "bias":
        kinds.add("bias")
    return kinds


def parameter_groups(
    model: nn.Module, weight_decay: float, no_decay: Sequence[str] = ("norm", "bias", "rel_pos", "abs_pos")
) -> list[dict]:
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
        (exempt if parameter_kinds(name, param, norm_params) & set(no_decay) else decay).append(param)
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
    no_decay: Sequence[str] = ("norm", "bias", "rel_pos", "abs_pos"),
) -> torch.optim.Optimizer:
    groups = parameter_groups(model, weight_decay, no_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}; valid: adamw, sgd")
