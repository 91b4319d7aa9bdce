"""RetinaNet on a tiny DenseSwin: the torchvision contract, the SPEC §5 layout, training and Mona gradients."""

from __future__ import annotations

import pytest
import torch

from monatune.backbones import TimmDenseSwin
from monatune.tasks.detection import build_retinanet

from dense_model_helpers import assert_mona_trains_only_mona_in_the_backbone, finite_loss_history, scene_batch, tiny_dense_swin

NUM_CLASSES = 3


def tiny_backbone() -> TimmDenseSwin:
    return tiny_dense_swin(out_indices=(1, 2, 3))


def synthetic_batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images of coloured rectangles/ellipses on a noisy grey background, with boxes and labels."""
    return scene_batch(with_masks=False)


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
    history = finite_loss_history(tiny_retinanet().train(), *synthetic_batch(), steps=14, lr=3e-4)
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
    assert_mona_trains_only_mona_in_the_backbone(tiny_retinanet().train(), *synthetic_batch())
