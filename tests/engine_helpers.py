"""Tiny models and data for engine tests (fast on one CPU thread)."""

from __future__ import annotations

import torch
from timm.models.swin_transformer import SwinTransformer
from torch.utils.data import TensorDataset

from monatune.engine.config import ExperimentConfig, parse_config


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
