"""Schedules and optimizer groups: values at known iterations, and no decay/frozen leakage."""

import math

import pytest

import monatune
from monatune.engine.optim import parameter_groups
from monatune.engine.schedules import lr_factor

from engine_helpers import tiny_swin


def test_cosine_with_warmup():
    kw = dict(kind="cosine", total_steps=100, warmup_steps=10, warmup_ratio=0.0, min_lr_ratio=0.01)
    assert lr_factor(0, **kw) == 0.0
    cos5 = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.05))
    assert lr_factor(5, **kw) == pytest.approx(0.5 * cos5)
    assert lr_factor(50, **kw) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(100, **kw) == pytest.approx(0.01)


def test_step_and_poly():
    assert [lr_factor(s, kind="step", total_steps=12, milestones=[9, 11]) for s in (0, 8, 9, 10, 11)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01]
    )
    assert lr_factor(25, kind="poly", total_steps=100, poly_power=1.0) == pytest.approx(0.75)
    assert lr_factor(100, kind="poly", total_steps=100) == 0.0
    with pytest.raises(ValueError, match="cosine, step, poly"):
        lr_factor(0, kind="linear", total_steps=1)


def test_parameter_groups_trainable_only_and_no_decay_roles():
    model = monatune.apply(tiny_swin(), "bitfit", train_modules=["head"])
    groups = parameter_groups(model, weight_decay=0.05)
    handed = {id(p) for g in groups for p in g["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert handed == trainable
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = [names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    assert decayed == ["head.fc.weight"]  # biases and rel-pos tables: no decay

    model = monatune.apply(tiny_swin(), "mona", train_modules=["head"])
    groups = parameter_groups(model, weight_decay=0.05)
    no_decay = {names for g in groups if g["weight_decay"] == 0 for names in [id(p) for p in g["params"]]}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_norm = ".norm." in f".{name}" or name.endswith("bias")
        assert (id(p) in no_decay) == is_norm, name


def test_no_trainable_parameters_is_an_error():
    model = monatune.apply(tiny_swin(), "fixed")
    with pytest.raises(ValueError, match="no trainable parameters"):
        parameter_groups(model, 0.05)
