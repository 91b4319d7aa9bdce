"""Tiny models, data and configs for engine tests (fast on one CPU thread), and the short Mona fit the
dense and oriented engine tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from timm.models.swin_transformer import SwinTransformer
from torch.utils.data import TensorDataset

from monatune.engine.config import ExperimentConfig, parse_config
from monatune.engine.run import task_builders
from monatune.engine.trainer import build_trainer


def tiny_swin(num_classes: int = 4) -> SwinTransformer:
    return SwinTransformer(
        img_size=32, patch_size=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2),
        window_size=2, num_classes=num_classes, strict_img_size=False,
    )


def separable_data(n: int, num_classes: int = 4, seed: int = 0) -> TensorDataset:
    """Images whose class is a colour/brightness pattern: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    images = 0.3 * torch.randn(n, 3, 32, 32, generator=g)
    for c in range(num_classes):
        images[labels == c, c % 3] += 1.5 * (1 + c // 3)
    return TensorDataset(images, labels)


def tiny_config(out_dir, method: str = "mona", **overrides) -> ExperimentConfig:
    raw = {
        "task": "classification",
        "model": {"backbone": "tiny", "method": method, "num_classes": 4, "drop_path_rate": 0.0},
        "data": {"batch_size": 8, "num_workers": 0},
        "optim": {"lr": 3e-3, "weight_decay": 0.01, "schedule": "cosine", "warmup_steps": 2, "grad_clip": 5.0},
        "trainer": {"max_epochs": 3, "out_dir": str(out_dir), "accelerator": "cpu", "devices": 1, "progress_bar": False},
    }
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    return parse_config(raw)


def tiny_task_config(
    tmp_path: Path, task: str, head: str, head_options: dict[str, Any], num_classes: int, method: str,
    data: dict[str, Any], **trainer: Any,
) -> ExperimentConfig:  # fmt: skip
    """One CPU epoch of a dense or oriented ``task`` on the synthetic nano Swin, batches of 2, run dir tmp_path/run.
    ``data`` holds the dataset's own keys; ``trainer`` adds to or overrides the trainer section."""
    return parse_config(
        {
            "task": task,
            "model": {"backbone": "swin_nano_synthetic", "method": method, "num_classes": num_classes, "drop_path_rate": 0.0,
                      "head": head, "head_options": head_options},
            "data": {"batch_size": 2, "num_workers": 0, **data},
            "optim": {"lr": 1e-3, "schedule": "constant"},
            "trainer": {"max_epochs": 1, "out_dir": str(tmp_path / "run"), "accelerator": "cpu", "devices": 1,
                        "progress_bar": False, **trainer},
        }
    )  # fmt: skip


def fit_checking_only_mona_and_heads_train(cfg: ExperimentConfig) -> L.Trainer:
    """Build ``cfg``'s module and data, fit, and check: in the backbone only Mona's parameters train, every other
    part (neck, heads) trains fully, only trainable parameters changed, and some backbone one did.
    Returns the trainer, for the caller's step and metric checks."""
    build_module, build_data = task_builders(cfg.task)
    module, data = build_module(cfg), build_data(cfg)
    model = module.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = build_trainer(cfg, checkpoints=False, logging=False)
    trainer.fit(module, datamodule=data)

    for name, param in model.named_parameters():
        assert param.requires_grad == (not name.startswith("backbone.") or ".mona" in name), name
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all(model.get_parameter(n).requires_grad for n in changed)
    assert any(n.startswith("backbone.") for n in changed)  # Mona's up-projections start at zero: needs a real step
    return trainer
