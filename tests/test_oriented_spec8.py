"""SPEC §8 corrections for oriented detection, each against a hand-computed expectation:
§8.2 Oriented R-CNN reads all four Swin stages, §8.3 the KLD loss scale of rotated RetinaNet."""

from __future__ import annotations

import math

import pytest
import torch

from monatune.tasks.oriented.module import build_oriented
from monatune.tasks.oriented.retinanet import RotatedRetinaNet, per_level_mean

from engine_helpers import tiny_task_config
from test_oriented_detectors import tiny_backbone

NANO_STAGE_CHANNELS = [32, 64, 128, 256]  # swin_nano_synthetic: embed dim 32, doubled per stage


def _built(tmp_path, head: str, **options):
    data = {"dataset": "synthetic_dota", "root": str(tmp_path / "data"), "train_split": "train",
            "val_split": "val", "image_size": 64, "options": {"classes": ["a", "b", "c"]}}  # fmt: skip
    return build_oriented(tiny_task_config(tmp_path, "oriented", head, {"fpn_channels": 16, **options}, 3, "mona", data))


def _fpn_inputs(model) -> list[int]:
    return [block[0].in_channels for block in model.neck.fpn.inner_blocks]


# --- §8.2 ----------------------------------------------------------------------------------------
def test_oriented_rcnn_reads_all_four_stages_by_default(tmp_path):
    model = _built(tmp_path, "oriented_rcnn", fc_channels=32)
    assert _fpn_inputs(model) == NANO_STAGE_CHANNELS
    assert model.rpn.strides == [4, 8, 16, 32, 64]  # anchors on P2-P6
    assert model.strides[: model.num_roi_levels] == [4, 8, 16, 32]  # RoIs pooled from P2-P5
    model.eval()
    maps = model.features(torch.zeros(1, 3, 64, 64))
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2, 1]  # 64 px / strides 4..64


@pytest.mark.parametrize("head", ["rotated_retinanet", "h2rbox_v2"])
def test_single_stage_detectors_keep_stages_two_to_four(tmp_path, head):
    model = _built(tmp_path, head, head_channels=16, stacked_convs=1)
    assert _fpn_inputs(model) == NANO_STAGE_CHANNELS[1:]
    assert model.strides == [8, 16, 32, 64, 128]


def test_out_indices_option_still_overrides_the_default(tmp_path):
    model = _built(tmp_path, "oriented_rcnn", fc_channels=32, out_indices=[1, 2, 3])
    assert _fpn_inputs(model) == NANO_STAGE_CHANNELS[1:]
    assert model.rpn.strides == [8, 16, 32, 64, 128]


# --- §8.3 ----------------------------------------------------------------------------------------
def _kld_axis_aligned(pred, target) -> float:
    """1 - 1 / (1 + log1p(max(d, 1e-6))) for two axis-aligned boxes (cx, cy, w, h), written out:
    Sigma = diag(w^2/4, h^2/4), so every term of SPEC §7's d is a ratio of squared sides."""
    (px, py, pw, ph), (tx, ty, tw, th) = pred, target
    d = (px - tx) ** 2 / (tw**2 / 4) + (py - ty) ** 2 / (th**2 / 4)
    d += pw**2 / tw**2 + ph**2 / th**2 + math.log((tw**2 * th**2) / (pw**2 * ph**2)) - 2
    return 1 - 1 / (1 + math.log1p(max(d, 1e-6)))


def _xyxy_to_cxcywh(b):
    return ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1])


# Two FPN levels of fixed anchors; zero deltas make every decoded box its anchor.
LEVEL0 = [[0.0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]
LEVEL1 = [[0.0, 0, 20, 20], [100, 100, 140, 140]]
# image 0: A matches anchors 0 and 1 of level 0 (IoU 1, 9/11), B anchor 1 of level 1 (0.75);
# image 1: C matches anchor 1 of level 1 (IoU 0.875). Every other anchor has IoU < 0.4.
TARGETS_XYXY = [[[0.0, 0, 10, 10], [100, 100, 140, 130]], [[100.0, 100, 140, 135]]]


def _retinanet_on_fixed_anchors(**options) -> RotatedRetinaNet:
    model = RotatedRetinaNet(tiny_backbone(), 2, fpn_channels=8, head_channels=8, stacked_convs=1, **options)
    anchors = [torch.tensor(LEVEL0), torch.tensor(LEVEL1)]

    def head(batch):
        b = batch.shape[0]
        logits = [torch.zeros(b, len(a), 2) for a in anchors]
        deltas = [torch.zeros(b, len(a), 5, requires_grad=True) for a in anchors]
        return logits, deltas, anchors

    model.head = head
    return model.train()


def _targets():
    out = []
    for boxes in TARGETS_XYXY:
        rows = [[*_xyxy_to_cxcywh(b), 0.0] for b in boxes]
        out.append({"boxes": torch.tensor(rows), "labels": torch.zeros(len(rows), dtype=torch.long)})
    return out


def test_kld_box_loss_is_the_sum_over_levels_of_each_levels_mean():
    a, b, c = (_xyxy_to_cxcywh(x) for x in (TARGETS_XYXY[0][0], TARGETS_XYXY[0][1], TARGETS_XYXY[1][0]))
    level0 = [_kld_axis_aligned(_xyxy_to_cxcywh(LEVEL0[0]), a), _kld_axis_aligned(_xyxy_to_cxcywh(LEVEL0[1]), a)]
    level1 = [_kld_axis_aligned(_xyxy_to_cxcywh(LEVEL1[1]), b), _kld_axis_aligned(_xyxy_to_cxcywh(LEVEL1[1]), c)]
    assert level1[0] > 0.1 and level0[1] > 0.01  # the two reductions below really differ
    images = [torch.zeros(3, 32, 32)] * 2

    losses = _retinanet_on_fixed_anchors()(images, _targets())
    expected = sum(level0) / 2 + sum(level1) / 2
    assert losses["loss_bbox"].item() == pytest.approx(expected, rel=1e-5)

    weighted = _retinanet_on_fixed_anchors(box_loss_weight=2.0)(images, _targets())
    assert weighted["loss_bbox"].item() == pytest.approx(2 * expected, rel=1e-5)

    old = _retinanet_on_fixed_anchors(box_loss_reduction="per_positive")(images, _targets())
    assert old["loss_bbox"].item() == pytest.approx((sum(level0) + sum(level1)) / 4, rel=1e-5)


def test_per_level_mean_skips_levels_without_positives():
    losses = torch.tensor([1.0, 3.0, 10.0])
    levels = torch.tensor([0, 0, 3])
    assert per_level_mean(losses, levels, 5).item() == pytest.approx(2.0 + 10.0)
    assert per_level_mean(torch.zeros(0), torch.zeros(0, dtype=torch.long), 5).item() == 0.0


def test_unknown_box_loss_reduction_is_named():
    with pytest.raises(ValueError, match="box_loss_reduction 'mean'"):
        RotatedRetinaNet(tiny_backbone(), 2, fpn_channels=8, head_channels=8, stacked_convs=1, box_loss_reduction="mean")
