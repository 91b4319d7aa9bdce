"""RetinaNet on a tiny DenseSwin: the torchvision contract, the SPEC §5 layout, training and Mona gradients."""

from __future__ import annotations

import math

import pytest
import torch
from timm.models.swin_transformer import SwinTransformer

import monatune
from monatune.backbones import TimmDenseSwin
from monatune.layers.mona import Mona
from monatune.tasks.detection import build_retinanet

NUM_CLASSES = 3
COLORS = {1: (0.9, 0.1, 0.1), 2: (0.1, 0.9, 0.1), 3: (0.1, 0.1, 0.9)}
# (height, width), [(label, shape, (x1, y1, x2, y2))]
SCENES = [
    ((96, 128), [(1, "rect", (8, 10, 56, 60)), (2, "ellipse", (64, 30, 120, 90))]),
    ((112, 96), [(3, "rect", (10, 50, 60, 104)), (2, "ellipse", (40, 4, 92, 48))]),
]


def tiny_backbone(out_indices=(1, 2, 3)) -> TimmDenseSwin:
    swin = SwinTransformer(
        img_size=64, patch_size=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4,
        num_classes=0, strict_img_size=False, always_partition=True, drop_path_rate=0.0,
    )  # fmt: skip
    return TimmDenseSwin(swin, out_indices=out_indices)


def synthetic_batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images of coloured rectangles/ellipses on a noisy grey background, with boxes and labels."""
    gen = torch.Generator().manual_seed(0)
    images, targets = [], []
    for (h, w), objects in SCENES:
        image = 0.3 + 0.1 * torch.rand(3, h, w, generator=gen)
        yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        for label, shape, (x1, y1, x2, y2) in objects:
            if shape == "rect":
                inside = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
            else:
                inside = ((2 * xx - x1 - x2) / (x2 - x1)) ** 2 + ((2 * yy - y1 - y2) / (y2 - y1)) ** 2 <= 1
            image[:, inside] = torch.tensor(COLORS[label]).view(3, 1)
        images.append(image)
        targets.append(
            {
                "boxes": torch.tensor([o[2] for o in objects], dtype=torch.float32),
                "labels": torch.tensor([o[0] for o in objects], dtype=torch.int64),
            }
        )
    return images, targets


def tiny_retinanet(**kwargs):
    return build_retinanet(tiny_backbone(), NUM_CLASSES, min_size=96, max_size=128, fpn_channels=32, **kwargs)


def test_training_returns_finite_focal_and_l1_losses():
    model = tiny_retinanet().train()
    images, targets = synthetic_batch()
    losses = model(images, targets)
    assert set(losses) == {"classification", "bbox_regression"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    assert model.head.regression_head._loss_type == "l1"


def test_layout_follows_the_recipe():
    model = tiny_retinanet()
    assert model.backbone.out_indices == (1, 2, 3)
    # P3..P7: three FPN levels on stages 2-4 plus P6 from C5 and P7 from P6.
    images, _ = synthetic_batch()
    model.eval()
    with torch.no_grad():
        levels = model.neck(model.backbone(torch.stack([images[0][:, :96, :96]] * 1)))
    assert [tuple(v.shape[-2:]) for v in levels.values()] == [(12, 12), (6, 6), (3, 3), (2, 2), (1, 1)]
    assert all(v.shape[1] == 32 for v in levels.values())
    assert model.neck.fpn.extra_blocks.p6.in_channels == model.backbone.out_channels[-1]
    # 9 anchors per place; base sizes 4 * stride at strides 8..128.
    assert model.anchor_generator.num_anchors_per_location() == [9] * 5
    assert [s[0] for s in model.anchor_generator.sizes] == [32.0, 64.0, 128.0, 256.0, 512.0]
    assert model.head.classification_head.num_classes == NUM_CLASSES  # sigmoid outputs, no background


def test_eval_returns_torchvision_detections_in_input_coordinates():
    model = tiny_retinanet(score_thresh=0.0, detections_per_img=20).eval()
    images, _ = synthetic_batch()
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == len(images)
    for out, image in zip(outputs, images):
        assert set(out) == {"boxes", "scores", "labels"}
        k = len(out["scores"])
        assert 0 < k <= 20 and out["boxes"].shape == (k, 4) and out["labels"].dtype == torch.int64
        assert out["labels"].min() >= 1 and out["labels"].max() <= NUM_CLASSES
        assert out["boxes"][:, 2].max() <= image.shape[2] + 1e-3 and out["boxes"][:, 3].max() <= image.shape[1] + 1e-3


def test_min_size_none_keeps_the_input_size():
    model = build_retinanet(tiny_backbone(), NUM_CLASSES, min_size=None, fpn_channels=32)
    images, targets = synthetic_batch()
    image_list, resized = model.transform(images, targets)
    assert image_list.image_sizes == [(96, 128), (112, 96)]
    assert image_list.tensors.shape[-2:] == (128, 128)  # batched and padded to a multiple of 32
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(resized, targets))


def test_a_few_steps_lower_the_loss():
    model = tiny_retinanet().train()
    images, targets = synthetic_batch()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    history = []
    for _ in range(14):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert all(math.isfinite(v) for v in history)
    assert min(history[-3:]) < 0.9 * history[0], history


def test_background_only_image_and_bad_labels():
    model = tiny_retinanet().train()
    images, targets = synthetic_batch()
    targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    assert all(torch.isfinite(v) for v in model(images, targets).values())
    targets[1] = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}
    with pytest.raises(ValueError, match="1..3"):
        model(images, targets)


def test_mona_backbone_trains_only_mona_neck_and_head():
    model = tiny_retinanet().train()
    monatune.apply(model.backbone, "mona")
    mona_params = {id(p) for m in model.backbone.modules() if isinstance(m, Mona) for p in m.parameters()}
    assert mona_params
    for p in model.backbone.parameters():
        assert p.requires_grad == (id(p) in mona_params)
    for name, p in model.named_parameters():
        assert name.startswith("backbone.") or p.requires_grad, name
    images, targets = synthetic_batch()
    sum(model(images, targets).values()).backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    assert any(p.grad.abs().sum() > 0 for p in model.backbone.parameters() if p.requires_grad)
