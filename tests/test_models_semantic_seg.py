"""UperNet + auxiliary FCN head on a tiny DenseSwin: losses, output size, training, Mona gradients."""

from __future__ import annotations

import pytest
import torch

from monatune.backbones import TimmDenseSwin
from monatune.tasks.semantic_segmentation import build_upernet

from dense_model_helpers import assert_mona_trains_only_mona_in_the_backbone, finite_loss_history, tiny_dense_swin

NUM_CLASSES = 4
COLORS = torch.tensor([(0.4, 0.4, 0.4), (0.9, 0.1, 0.1), (0.1, 0.9, 0.1), (0.1, 0.1, 0.9)])


def tiny_backbone() -> TimmDenseSwin:
    return tiny_dense_swin(out_indices=(0, 1, 2, 3))


def tiny_upernet(**kwargs):
    return build_upernet(tiny_backbone(), NUM_CLASSES, channels=32, aux_channels=16, **kwargs)


def synthetic_batch(height: int = 64, width: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Two images: class 0 background, a rectangle (1), an ellipse (2), a bar (3); a 255 border."""
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    masks = torch.zeros(2, height, width, dtype=torch.int64)
    masks[0][(xx > 0.1 * width) & (xx < 0.5 * width) & (yy > 0.2 * height) & (yy < 0.7 * height)] = 1
    masks[0][((xx - 0.7 * width) / (0.2 * width)) ** 2 + ((yy - 0.5 * height) / (0.3 * height)) ** 2 < 1] = 2
    masks[1][(yy > 0.6 * height) & (yy < 0.8 * height)] = 3
    masks[1][((xx - 0.3 * width) / (0.2 * width)) ** 2 + ((yy - 0.3 * height) / (0.2 * height)) ** 2 < 1] = 2
    images = COLORS[masks].permute(0, 3, 1, 2) + 0.05 * torch.rand(2, 3, height, width, generator=gen)
    masks[:, :2] = 255
    return images, masks


def test_training_returns_decode_and_weighted_aux_losses():
    model = tiny_upernet(dropout=0.0).train()
    images, masks = synthetic_batch()
    losses = model(images, masks)
    assert set(losses) == {"loss_decode", "loss_aux"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    model.aux_loss_weight = 1.0
    unweighted = model(images, masks)["loss_aux"]
    assert losses["loss_aux"].item() == pytest.approx(0.4 * unweighted.item(), rel=1e-5)


def test_layout_follows_the_recipe():
    model = build_upernet(tiny_backbone(), 150)
    head = model.decode_head
    assert [stage[0].output_size for stage in head.ppm.stages] == [1, 2, 3, 6]
    assert head.fpn_bottleneck[0].out_channels == 512 and head.classifier[1].out_channels == 150
    assert isinstance(head.classifier[0], torch.nn.Dropout2d) and head.classifier[0].p == 0.1
    aux = model.auxiliary_head
    assert aux.convs[0][0].in_channels == model.backbone.out_channels[2]  # stage 3
    assert aux.convs[0][0].out_channels == 256 and model.aux_loss_weight == 0.4
    assert model.ignore_index == 255


@pytest.mark.parametrize("size", [(64, 64), (90, 70), (100, 76)])
def test_eval_logits_have_the_input_size(size):
    model = tiny_upernet().eval()
    images, _ = synthetic_batch(*size)
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (2, NUM_CLASSES, *size)


def test_ignored_pixels_do_not_count():
    model = tiny_upernet(dropout=0.0).train()
    images, masks = synthetic_batch(90, 70)
    losses = model(images, masks)
    other = masks.clone()
    other[:, :2] = 255
    other[0, :2, :10] = 255  # unchanged: already ignored
    assert model(images, other)["loss_decode"].item() == pytest.approx(losses["loss_decode"].item(), rel=1e-6)
    all_ignored = model(images, torch.full_like(masks, 255))
    assert all(v.item() == 0.0 for v in all_ignored.values())
    with pytest.raises(ValueError, match="masks"):
        model(images)


def test_a_few_steps_lower_the_loss():
    history = finite_loss_history(tiny_upernet().train(), *synthetic_batch(), steps=10, lr=3e-3)
    assert history[-1] < 0.85 * history[0], history


def test_mona_backbone_trains_only_mona_and_heads():
    assert_mona_trains_only_mona_in_the_backbone(tiny_upernet().train(), *synthetic_batch())
