"""Shared pieces of the dense-model tests (detection, instance and semantic segmentation): a tiny
DenseSwin, two synthetic scenes of coloured shapes, a short AdamW run and the Mona training check."""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.models.swin_transformer import SwinTransformer
from torch import nn

import monatune
from monatune.backbones import TimmDenseSwin
from monatune.layers.mona import Mona

SCENE_COLORS = {1: (0.9, 0.1, 0.1), 2: (0.1, 0.9, 0.1), 3: (0.1, 0.1, 0.9)}
SCENES = [  # (height, width), [(label, shape, (x1, y1, x2, y2))]
    ((96, 128), [(1, "rect", (8, 10, 56, 60)), (2, "ellipse", (64, 30, 120, 90))]),
    ((112, 96), [(3, "rect", (10, 50, 60, 104)), (2, "ellipse", (40, 4, 92, 48))]),
]


def tiny_dense_swin(out_indices: tuple[int, ...] = (0, 1, 2, 3)) -> TimmDenseSwin:
    swin = SwinTransformer(
        img_size=64, patch_size=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
        num_classes=0, strict_img_size=False, always_partition=True, drop_path_rate=0.0,
    )  # fmt: skip
    return TimmDenseSwin(swin, out_indices=out_indices)


def scene_batch(with_masks: bool) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The SCENES drawn on a noisy grey background, with boxes, labels and, if asked, (N, H, W) uint8 masks."""
    gen = torch.Generator().manual_seed(0)
    images, targets = [], []
    for (h, w), objects in SCENES:
        image = 0.3 + 0.1 * torch.rand(3, h, w, generator=gen)
        yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        masks = []
        for label, shape, (x1, y1, x2, y2) in objects:
            if shape == "rect":
                inside = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
            else:
                inside = ((2 * xx - x1 - x2) / (x2 - x1)) ** 2 + ((2 * yy - y1 - y2) / (y2 - y1)) ** 2 <= 1
            image[:, inside] = torch.tensor(SCENE_COLORS[label]).view(3, 1)
            masks.append(inside.to(torch.uint8))
        images.append(image)
        target = {
            "boxes": torch.tensor([o[2] for o in objects], dtype=torch.float32),
            "labels": torch.tensor([o[0] for o in objects], dtype=torch.int64),
        }
        if with_masks:
            target["masks"] = torch.stack(masks)
        targets.append(target)
    return images, targets


def finite_loss_history(model: nn.Module, inputs: Any, targets: Any, steps: int, lr: float) -> list[float]:
    """Run ``steps`` AdamW steps on the summed loss dict of ``model(inputs, targets)``; check every loss is finite."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    history = []
    for _ in range(steps):
        loss = sum(model(inputs, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert all(math.isfinite(v) for v in history)
    return history


def assert_mona_trains_only_mona_in_the_backbone(model: nn.Module, inputs: Any, targets: Any) -> None:
    """Apply Mona to ``model.backbone``: there only Mona's parameters train, everything outside it (neck, heads)
    trains fully, one backward gives exactly the trainable parameters a gradient, and some backbone one is non-zero."""
    monatune.apply(model.backbone, "mona")
    mona_params = {id(p) for m in model.backbone.modules() if isinstance(m, Mona) for p in m.parameters()}
    assert mona_params
    for p in model.backbone.parameters():
        assert p.requires_grad == (id(p) in mona_params)
    for name, p in model.named_parameters():
        assert name.startswith("backbone.") or p.requires_grad, name
    sum(model(inputs, targets).values()).backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    assert any(p.grad.abs().sum() > 0 for p in model.backbone.parameters() if p.requires_grad)
