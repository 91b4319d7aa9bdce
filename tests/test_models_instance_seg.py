"""Cascade Mask R-CNN and Mask R-CNN on a tiny DenseSwin: contract, cascade settings, training, Mona gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monatune.backbones import TimmDenseSwin
from monatune.tasks.instance_segmentation import build_cascade_mask_rcnn, build_mask_rcnn

from dense_model_helpers import assert_mona_trains_only_mona_in_the_backbone, finite_loss_history, scene_batch, tiny_dense_swin

NUM_CLASSES = 3
# Paper-scale heads are far too slow on one CPU thread; the structure is the same.
SMALL = dict(
    min_size=96, max_size=128, fpn_channels=32, mask_channels=16, box_fc_channels=64, box_batch_size_per_image=64,
    rpn_pre_nms_top_n=(200, 100), rpn_post_nms_top_n=(100, 50),
)  # fmt: skip


def tiny_backbone() -> TimmDenseSwin:
    return tiny_dense_swin(out_indices=(0, 1, 2, 3))


def synthetic_batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images of coloured rectangles/ellipses with boxes, labels and (N, H, W) uint8 masks."""
    return scene_batch(with_masks=True)


def tiny_cascade(**kwargs):
    return build_cascade_mask_rcnn(tiny_backbone(), NUM_CLASSES, box_conv_channels=32, **SMALL, **kwargs)


def tiny_mask_rcnn(**kwargs):
    return build_mask_rcnn(tiny_backbone(), NUM_CLASSES, **SMALL, **kwargs)


RPN_LOSSES = {"loss_objectness", "loss_rpn_box_reg"}
CASCADE_LOSSES = RPN_LOSSES | {f"loss_{k}_stage{s}" for k in ("classifier", "box_reg", "mask") for s in range(3)}
MASK_RCNN_LOSSES = RPN_LOSSES | {"loss_classifier", "loss_box_reg", "loss_mask"}


def tiny_agnostic_cascade(**kwargs):
    return tiny_cascade(class_agnostic=True, box_head_norm="gn", **kwargs)


@pytest.mark.parametrize(
    "build, keys",
    [(tiny_cascade, CASCADE_LOSSES), (tiny_agnostic_cascade, CASCADE_LOSSES), (tiny_mask_rcnn, MASK_RCNN_LOSSES)],
)
def test_training_returns_finite_losses(build, keys):
    model = build().train()
    images, targets = synthetic_batch()
    losses = model(images, targets)
    assert set(losses) == keys
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())


def test_cascade_stages_use_the_recipe_settings():
    model = tiny_cascade()
    heads = model.roi_heads
    stds = [(0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067)]
    assert [s.iou_threshold for s in heads.stages] == [0.5, 0.6, 0.7]
    for stage, std, t in zip(heads.stages, stds, (0.5, 0.6, 0.7)):
        assert stage.box_coder.weights == pytest.approx(tuple(1 / v for v in std))
        assert (stage.matcher.high_threshold, stage.matcher.low_threshold) == (t, t)
        assert not stage.matcher.allow_low_quality_matches
        convs = [m for m in stage.box_head.modules() if isinstance(m, torch.nn.Conv2d)]
        fcs = [m for m in stage.box_head.modules() if isinstance(m, torch.nn.Linear)]
        norms = [m for m in stage.box_head.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert len(convs) == 4 and len(fcs) == 1 and len(norms) == 4  # "4conv1fc" with BN
        assert stage.bbox_pred.out_features == 4 * (NUM_CLASSES + 1)  # class-specific, as the Swin config
        assert stage.mask_head is not None
    assert heads.stage_loss_weights == (1.0, 0.5, 0.25)
    assert heads.box_loss_weight == 10.0
    agnostic = tiny_agnostic_cascade()
    assert all(s.bbox_pred.out_features == 4 for s in agnostic.roi_heads.stages)
    assert all(isinstance(s.box_head[0][1], torch.nn.GroupNorm) for s in agnostic.roi_heads.stages)


@pytest.mark.parametrize("build", [tiny_cascade, tiny_agnostic_cascade, tiny_mask_rcnn])
def test_eval_returns_boxes_scores_labels_and_pasted_masks(build):
    model = build(score_thresh=0.0, detections_per_img=10).eval()
    images, _ = synthetic_batch()
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == 2
    for out, image in zip(outputs, images):
        assert set(out) == {"boxes", "scores", "labels", "masks"}
        k = len(out["scores"])
        assert 0 < k <= 10 and out["boxes"].shape == (k, 4)
        assert out["labels"].min() >= 1 and out["labels"].max() <= NUM_CLASSES
        assert out["masks"].shape == (k, 1, *image.shape[-2:]) and out["masks"].dtype == torch.float32
        assert 0 <= out["masks"].min() and out["masks"].max() <= 1


def test_cascade_scores_average_the_stage_logits():
    model = tiny_cascade(score_thresh=0.0).eval()
    logits = []
    hooks = [s.cls_score.register_forward_hook(lambda m, i, o: logits.append(o)) for s in model.roi_heads.stages]
    images, _ = synthetic_batch()
    with torch.no_grad():
        outputs = model(images[:1])
    for h in hooks:
        h.remove()
    # A box's score is softmax(mean of the three stages' logits); NMS keeps the best one.
    expected = F.softmax(torch.stack(logits).mean(dim=0), dim=-1)[:, 1:]
    assert outputs[0]["scores"].max().item() == pytest.approx(expected.max().item(), rel=1e-5)
    last_only = F.softmax(logits[-1], dim=-1)[:, 1:]
    assert last_only.max().item() != pytest.approx(expected.max().item(), rel=1e-5)


@pytest.mark.parametrize("build", [tiny_cascade, tiny_mask_rcnn])
def test_a_few_steps_lower_the_loss(build):
    history = finite_loss_history(build().train(), *synthetic_batch(), steps=10, lr=3e-4)
    # RoI sampling is random: compare averages, not single steps.
    assert sum(history[-3:]) < 0.95 * sum(history[:3]), history


def test_image_without_objects_trains():
    model = tiny_cascade().train()
    images, targets = synthetic_batch()
    h, w = images[1].shape[-2:]
    targets[1] = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, h, w, dtype=torch.uint8),
    }
    assert all(torch.isfinite(v) for v in model(images, targets).values())


def test_mona_backbone_trains_only_mona_neck_and_heads():
    assert_mona_trains_only_mona_in_the_backbone(tiny_cascade().train(), *synthetic_batch())
