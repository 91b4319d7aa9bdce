"""SPEC §8 corrections for oriented detection, each against a hand-computed expectation:
§8.2 Oriented R-CNN reads all four Swin stages, §8.3 the KLD loss scale of rotated RetinaNet, §8.4 merging
patches and scoring per dataset, §8.5 H2RBox-v2 as the public v2p variant; the paper configs carrying them
(with §8.9 no_decay, §8.10 LoRand options) and the §8.11 mean-pixel patch padding option."""

from __future__ import annotations

import math
from pathlib import Path

import json

import pytest
import torch

from monatune.engine.config import load_config
from monatune.metrics.dota_map import evaluate_dota
from monatune.tasks.oriented import build_oriented_detector
from monatune.tasks.oriented.coders import PSCCoder
from monatune.tasks.oriented.h2rbox_v2 import H2RBoxV2, snap_to_axis
from monatune.tasks.oriented.h2rbox_views import choose_view, rotate_images, view_symmetry_loss
from monatune.tasks.oriented.module import OrientedModule, build_oriented
from monatune.tasks.oriented.patches import crop_patch
from monatune.tasks.oriented.patches import patch_pad_value
from monatune.tasks.oriented.protocol import MergeSettings, merge_detections, merge_settings, score_settings
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


# --- §8.4 ----------------------------------------------------------------------------------------
def _square(cx: float, cy: float, side: float = 10.0) -> list[float]:
    return [cx, cy, side, side, 0.0]


def _patch_results():
    """Image "img": patch (0, 0) holds A (class 0, 0.9) and, 5 px to its right, C (class 0, 0.7):
    IoU(A, C) = 50 / 150 = 1/3. Patch (20, 0) holds B (class 1, 0.8) exactly on A once shifted back."""
    return {
        "img__1__0___0": {"boxes": torch.tensor([_square(10, 10), _square(15, 10)]),
                          "scores": torch.tensor([0.9, 0.7]), "labels": torch.tensor([0, 0])},
        "img__1__20___0": {"boxes": torch.tensor([_square(-10, 10)]), "scores": torch.tensor([0.8]),
                           "labels": torch.tensor([1])},
    }  # fmt: skip


def _kept(merged) -> list[tuple[float, int]]:
    out = merged["img"]
    return [(round(float(s), 4), int(lab)) for s, lab in zip(out["scores"], out["labels"])]


def test_merge_class_wise_versus_class_agnostic_by_hand():
    # DOTA: class-wise at 0.1: B (other class) stays, C (1/3 > 0.1 with A) goes.
    assert _kept(merge_detections(_patch_results(), MergeSettings(0.1))) == [(0.9, 0), (0.8, 1)]
    # STAR Oriented R-CNN: class-wise at 0.4: all three stay.
    assert _kept(merge_detections(_patch_results(), MergeSettings(0.4))) == [(0.9, 0), (0.8, 1), (0.7, 0)]
    # STAR single-stage: class-agnostic at 0.4: B (IoU 1 with A) goes whatever its class, C stays.
    agnostic = merge_detections(_patch_results(), MergeSettings(0.4, class_agnostic=True))
    assert _kept(agnostic) == [(0.9, 0), (0.7, 0)]
    torch.testing.assert_close(agnostic["img"]["boxes"][0], torch.tensor(_square(10, 10)))


def test_merge_keeps_every_box_without_a_cap():
    n = 2100  # more than the 2000 a per-patch cap would leave
    boxes = torch.tensor([_square(20.0 * (i % 50) + 5, 20.0 * (i // 50) + 5) for i in range(n)])
    results = {"img__1__0___0": {"boxes": boxes, "scores": torch.linspace(1, 0.1, n), "labels": torch.zeros(n, dtype=torch.long)}}
    assert len(merge_detections(results, merge_settings({}))["img"]["scores"]) == n
    assert len(merge_detections(results, merge_settings({"merge_max_per_image": 2000}))["img"]["scores"]) == 2000


def test_module_merges_with_the_configs_settings(tmp_path):
    data = {"dataset": "synthetic_dota", "root": str(tmp_path), "train_split": "train", "val_split": "val",
            "image_size": 64, "options": {"merge_nms_iou": 0.4, "merge_class_agnostic": True}}  # fmt: skip
    cfg = tiny_task_config(tmp_path, "oriented", "rotated_retinanet", {}, 3, "mona", data)
    module = OrientedModule(torch.nn.Linear(1, 1), cfg, ["a", "b", "c"])
    assert _kept(module.merge_patches(_patch_results())) == [(0.9, 0), (0.7, 0)]


def test_merge_and_score_options_are_checked_by_name():
    assert merge_settings({}) == MergeSettings(0.1, False, None)
    assert score_settings({}).difficult == "ignore" and score_settings({}).iou == "polygon"
    with pytest.raises(ValueError, match="merge_max_per_image: 0"):
        merge_settings({"merge_max_per_image": 0})
    with pytest.raises(ValueError, match="merge_class_agnostic: 'yes'"):
        merge_settings({"merge_class_agnostic": "yes"})
    with pytest.raises(ValueError, match="eval_difficult: 'skip'"):
        score_settings({"eval_difficult": "skip"})
    with pytest.raises(ValueError, match="eval_iou: 'hbb'"):
        score_settings({"eval_iou": "hbb"})


def _poly(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _det(*rows):
    """Detections of class 0 given as (score, axis-aligned x0, y0, x1, y1)."""
    return {"polygons": torch.tensor([_poly(*r[1:]) for r in rows], dtype=torch.float64),
            "scores": torch.tensor([r[0] for r in rows]), "labels": torch.zeros(len(rows), dtype=torch.long)}  # fmt: skip


def test_difficult_counted_or_ignored_changes_ap_as_by_hand():
    gt = {"img": {"polygons": torch.tensor([_poly(0, 0, 10, 10), _poly(50, 50, 60, 60)], dtype=torch.float64),
                  "labels": torch.tensor([0, 0]), "difficult": torch.tensor([False, True])}}  # fmt: skip
    # Only the ordinary object found: ignore -> recall 1 at precision 1 -> AP 1; count -> recall 0.5
    # at precision 1: the 11-point AP takes precision 1 at recall 0, 0.1, ..., 0.5 and 0 above: 6/11.
    found = {"img": _det((0.9, 0, 0, 10, 10))}
    assert evaluate_dota(found, gt, ["c"]).mean_ap == pytest.approx(1.0)
    assert evaluate_dota(found, gt, ["c"], difficult="count").mean_ap == pytest.approx(6 / 11)
    # The difficult object first, then a false positive, then the ordinary one:
    # ignore -> [skipped], FP, TP: precision 1/2 at recall 1 -> AP 1/2;
    # count  -> TP, FP, TP: precision 1 up to recall 0.5, 2/3 up to recall 1 -> (6 + 5 * 2/3) / 11.
    ranked = {"img": _det((0.95, 50, 50, 60, 60), (0.9, 200, 200, 210, 210), (0.8, 0, 0, 10, 10))}
    assert evaluate_dota(ranked, gt, ["c"]).mean_ap == pytest.approx(0.5)
    assert evaluate_dota(ranked, gt, ["c"], difficult="count").mean_ap == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert evaluate_dota(ranked, gt, ["c"], difficult="count").num_ground_truth == {"c": 2}


def test_rotated_box_iou_scores_the_minimum_area_rectangle_of_a_label():
    from shapely.geometry import Polygon

    trapezoid = [0.0, 0, 12, 0, 8, 6, 4, 6]  # area 48; its minimum-area rectangle is 12 x 6 = 72
    assert Polygon(list(zip(trapezoid[::2], trapezoid[1::2]))).minimum_rotated_rectangle.area == pytest.approx(72)
    gt = {"img": {"polygons": torch.tensor([trapezoid], dtype=torch.float64), "labels": torch.tensor([0]),
                  "difficult": torch.tensor([False])}}  # fmt: skip
    det = {"img": {"boxes": torch.tensor([[6.0, 3.0, 12.0, 6.0, 0.0]]), "scores": torch.tensor([0.9]),
                   "labels": torch.tensor([0])}}  # fmt: skip
    # polygon IoU 48 / 72 = 2/3 < 0.7: a false positive; rotated-box IoU 1: a true positive.
    assert evaluate_dota(det, gt, ["c"], 0.7).mean_ap == 0.0
    assert evaluate_dota(det, gt, ["c"], 0.7, iou="rotated").mean_ap == pytest.approx(1.0)
    assert evaluate_dota(det, gt, ["c"], 0.6).mean_ap == pytest.approx(1.0)


# --- §8.5 ----------------------------------------------------------------------------------------
H2_SMALL = dict(fpn_channels=16, head_channels=16, stacked_convs=1)


def _h2rbox(**options) -> H2RBoxV2:
    return build_oriented_detector("h2rbox_v2", tiny_backbone(), 3, **H2_SMALL, **options)


def _h2_batch():
    images = [torch.full((3, 64, 64), 0.9), torch.full((3, 64, 64), 0.9)]
    targets = [
        {"boxes": torch.tensor([[24.0, 28, 30, 16, 0.0], [44, 40, 20, 24, 0]]), "labels": torch.tensor([0, 2])},
        {"boxes": torch.tensor([[32.0, 32, 36, 20, 0.0]]), "labels": torch.tensor([1])},
    ]
    return images, targets


def test_v2p_view_is_rotation_with_probability_095_else_vertical_flip():
    g = torch.Generator().manual_seed(0)
    draws = [choose_view(0.95, (0.25, 0.75), g) for _ in range(4000)]
    rotations = [angle for view, angle in draws if view == "rotate"]
    # binomial(4000, 0.95): standard deviation 0.0034, so 0.015 is over four of them
    assert len(rotations) / len(draws) == pytest.approx(0.95, abs=0.015)
    assert {view for view, _ in draws} == {"rotate", "flip"}
    assert all(angle == 0.0 for view, angle in draws if view == "flip")
    assert min(rotations) >= math.pi / 4 and max(rotations) <= 3 * math.pi / 4
    assert sum(rotations) / len(rotations) == pytest.approx(math.pi / 2, abs=0.02)  # uniform on the range
    again = torch.Generator().manual_seed(0)
    assert [choose_view(0.95, (0.25, 0.75), again) for _ in range(50)] == draws[:50]
    assert {choose_view(0.0, (0.25, 0.75), g)[0] for _ in range(20)} == {"flip"}
    assert {choose_view(1.0, (0.25, 0.75), g)[0] for _ in range(20)} == {"rotate"}


def _seed_for(view: str) -> int:
    """A global seed under which the model's first draw picks ``view``."""
    for seed in range(100):
        torch.manual_seed(seed)
        if choose_view(0.95, (0.25, 0.75))[0] == view:
            return seed
    raise AssertionError(view)


def _captured_views(model, seed: int) -> torch.Tensor:
    seen = []
    real_head = model.head

    def head(views):
        seen.append(views.detach().clone())
        return real_head(views)

    model.head = head
    images, targets = _h2_batch()
    torch.manual_seed(seed)
    model.train()(images, targets)
    return seen[0]


def test_v2p_sees_the_batch_and_one_zero_filled_rotated_view():
    views = _captured_views(_h2rbox(), _seed_for("rotate"))
    assert views.shape[0] == 4  # two images, two views each
    original, rotated = views[:2], views[2:]
    assert original[:, :, 0, 0].abs().min() > 0.1  # a light grey image, normalised: far from 0
    for corner in (rotated[:, :, 0, 0], rotated[:, :, 0, -1], rotated[:, :, -1, 0], rotated[:, :, -1, -1]):
        assert torch.equal(corner, torch.zeros_like(corner))  # turned by >= 45 degrees: corners come from outside
    torch.testing.assert_close(rotated[:, :, 32, 32], original[:, :, 32, 32])  # the centre stays
    flipped = _captured_views(_h2rbox(), _seed_for("flip"))
    torch.testing.assert_close(flipped[2:], flipped[:2].flip(-2))
    # the old three-view v2 keeps reflection padding: no zero corner
    v2 = _captured_views(_h2rbox(variant="v2"), 0)
    assert v2.shape[0] == 6 and v2[2:4, :, 0, 0].abs().min() > 0.1


def test_rotate_images_zero_fill_by_hand():
    turned = rotate_images(torch.ones(1, 1, 8, 8), math.pi / 4, padding_mode="zeros", mode="nearest")[0, 0]
    assert turned[0, 0] == 0 and turned[-1, -1] == 0 and turned[0, -1] == 0 and turned[-1, 0] == 0
    assert torch.all(turned[3:5, 3:5] == 1)


def test_view_symmetry_loss_weight_and_beta_by_hand():
    rot = 1.0
    original = torch.tensor([0.1, 0.2, -0.4])
    errors = torch.tensor([0.05, 0.5, 1.0])  # the third object is rotation-agnostic: it counts as 0
    # smooth-L1 with beta 0.1: 0.5 e^2 / 0.1 below 0.1, |e| - 0.05 above
    expected = 0.2 * (0.5 * 0.05**2 / 0.1 + (0.5 - 0.05) + 0.0) / 3
    agnostic = torch.tensor([False, False, True])
    loss = view_symmetry_loss(original, original + rot + errors, "rotate", rot, agnostic)
    assert loss.item() == pytest.approx(expected)
    flipped = view_symmetry_loss(original, -original + errors + math.pi, "flip", 0.0, agnostic)  # modulo pi
    assert flipped.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="view: 'turn'"):
        view_symmetry_loss(original, original, "turn")


def test_v2p_symmetry_loss_in_the_model_with_an_oracle_angle_head():
    """Codes for angle a in the original view and a + rot + 0.05 in the rotated view: every object's
    error is 0.05, so the loss is 0.2 x 0.5 x 0.05^2 / 0.1 = 0.0025 whatever the number of objects."""
    model = _h2rbox().train()
    seed = _seed_for("rotate")
    torch.manual_seed(seed)
    _, rot = choose_view(0.95, (0.25, 0.75))
    real_head, psc = model.head, PSCCoder(3)

    def head(views):
        (logits, dist, codes, ctr), points, strides = real_head(views)
        n = views.shape[0] // 2
        angles = torch.tensor([0.4] * n + [0.4 + rot + 0.05] * n)
        return (logits, dist, psc.encode(angles)[:, None, :].expand_as(codes) + 0 * codes, ctr), points, strides

    model.head = head
    images, targets = _h2_batch()
    torch.manual_seed(seed)
    assert model(images, targets)["loss_symmetry"].item() == pytest.approx(0.0025, rel=1e-4)


def test_snap_to_axis_as_the_public_v2p_code():
    theta = torch.tensor([0.0, 0.3, -0.7, 0.8, -1.2, math.pi / 2, 2.0])
    expected = torch.tensor([0.0, 0.0, 0.0, -math.pi / 2, -math.pi / 2, -math.pi / 2, -math.pi / 2])
    torch.testing.assert_close(snap_to_axis(theta), expected)


def _predict_one_point(model: H2RBoxV2, label: int, dist_over_stride: list[float], angle: float) -> torch.Tensor:
    """Run ``predict`` on a head that fires at one point (50, 50) of stride 8 for class ``label``."""
    logits = torch.full((1, 1, 3), -10.0)
    logits[0, 0, label] = 10.0
    outputs = (logits, torch.tensor([[dist_over_stride]]), PSCCoder(3).encode(torch.tensor([[angle]])), torch.full((1, 1, 1), 10.0))
    model.head = lambda batch: (outputs, [torch.tensor([[50.0, 50.0]])], torch.tensor([8.0]))
    return model.eval().predict(torch.zeros(1, 3, 64, 64), [(64, 64)])[0]["boxes"]


def test_v2p_test_time_shrink_of_resize_classes_only():
    model = _h2rbox(resize_classes=[1])
    # distances (left, top, right, bottom) 16, 24, 16, 24 px: a 32 x 48 box centred on the point
    plain = _predict_one_point(model, 0, [2.0, 3.0, 2.0, 3.0], 0.3)[0]
    shrunk = _predict_one_point(model, 1, [2.0, 3.0, 2.0, 3.0], 0.3)[0]
    assert sorted(plain[2:4].tolist()) == pytest.approx([32.0, 48.0], rel=1e-5)
    assert sorted(shrunk[2:4].tolist()) == pytest.approx([32.0 * 0.85, 48.0 * 0.85], rel=1e-5)
    torch.testing.assert_close(shrunk[[0, 1, 4]], plain[[0, 1, 4]])


def test_v2p_angle_free_classes_get_angle_zero_after_decoding_with_the_predicted_angle():
    model = _h2rbox(rotation_agnostic_classes=[2])
    # left 8, top 8, right 24, bottom 8 px: the centre lies 8 px along the box's own x axis
    box = _predict_one_point(model, 2, [1.0, 1.0, 3.0, 1.0], 0.3)[0]
    expected = torch.tensor([50 + 8 * math.cos(0.3), 50 + 8 * math.sin(0.3), 32.0, 16.0, 0.0])
    torch.testing.assert_close(box, expected, rtol=0, atol=1e-4)
    other = _predict_one_point(model, 0, [1.0, 1.0, 3.0, 1.0], 0.3)[0]
    assert other[4].item() == pytest.approx(0.3, abs=1e-5)


def test_v2_variant_and_bad_options_are_named():
    assert _h2rbox().variant == "v2p" and _h2rbox().view_padding == "zeros"
    v2 = _h2rbox(variant="v2")
    assert (v2.view_padding, v2.view_interpolation) == ("reflection", "bilinear")
    with pytest.raises(ValueError, match="variant 'v3'"):
        _h2rbox(variant="v3")
    with pytest.raises(ValueError, match="rotation_prob: 1.5"):
        _h2rbox(rotation_prob=1.5)


# --- paper configs (§8.2-§8.5, §8.9, §8.10) -----------------------------------------------------
PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper" / "oriented"


def test_paper_configs_carry_the_spec8_settings():
    rcnn = load_config(PAPER / "star" / "oriented_rcnn" / "mona.yaml")
    assert rcnn.model.head_options["out_indices"] == [0, 1, 2, 3]
    for detector in ("rotated_retinanet", "h2rbox_v2"):
        assert load_config(PAPER / "dota" / detector / "mona.yaml").model.head_options["out_indices"] == [1, 2, 3]
    # §8.4, DOTA: class-wise 0.1, no cap, difficult ignored, polygon IoU; STAR: 0.4, agnostic for single-stage
    dota = {"merge_nms_iou": 0.1, "merge_class_agnostic": False, "merge_max_per_image": None,
            "eval_difficult": "ignore", "eval_iou": "polygon", "eval_iou_threshold": 0.5}  # fmt: skip
    for detector in ("rotated_retinanet", "oriented_rcnn", "h2rbox_v2"):
        options = load_config(PAPER / "dota" / detector / "full.yaml").data.options
        assert {k: options[k] for k in dota} == dota
        star = load_config(PAPER / "star" / detector / "full.yaml").data.options
        assert star["merge_nms_iou"] == 0.4 and star["merge_max_per_image"] is None
        assert star["merge_class_agnostic"] is (detector != "oriented_rcnn")
        assert (star["eval_difficult"], star["eval_iou"]) == ("count", "rotated")
    # §8.5: v2p; DOTA baseball-diamond (1) shrunk, 1/9/11 angle-free; STAR tank (4) and roundabout (44) angle-free
    dota_h2 = load_config(PAPER / "dota" / "h2rbox_v2" / "mona.yaml").model.head_options
    assert dota_h2["variant"] == "v2p" and dota_h2["resize_classes"] == [1] and dota_h2["resize_factor"] == 0.85
    assert dota_h2["rotation_agnostic_classes"] == [1, 9, 11]
    star_h2 = load_config(PAPER / "star" / "h2rbox_v2" / "mona.yaml").model.head_options
    assert star_h2["rotation_agnostic_classes"] == [4, 44] and "resize_classes" not in star_h2
    assert (star_h2["symmetry_weight"], star_h2["symmetry_beta"], star_h2["rotation_prob"]) == (0.2, 0.1, 0.95)
    # §8.3
    assert load_config(PAPER / "star" / "rotated_retinanet" / "mona.yaml").model.head_options["box_loss_reduction"] == "per_level"
    # §8.9: biases decayed; H2RBox-v2p decays everything
    assert load_config(PAPER / "dota" / "oriented_rcnn" / "bitfit.yaml").optim.no_decay == ["norm_name", "rel_pos", "abs_pos"]
    assert load_config(PAPER / "star" / "h2rbox_v2" / "bitfit.yaml").optim.no_decay == []
    # §8.10: LoRand as STAR-MMRotate; other methods keep their defaults
    for dataset in ("dota", "star"):
        lorand = load_config(PAPER / dataset / "oriented_rcnn" / "lorand.yaml").model
        assert lorand.method_options == {"beta": 8, "init": "kaiming", "bias_init": "uniform"}
        assert load_config(PAPER / dataset / "oriented_rcnn" / "mona.yaml").model.method_options == {}


def test_paper_h2rbox_head_options_build_a_detector():
    options = {k: v for k, v in load_config(PAPER / "star" / "h2rbox_v2" / "mona.yaml").model.head_options.items() if k != "out_indices"}
    model = build_oriented_detector("h2rbox_v2", tiny_backbone(), 48, **{**options, **H2_SMALL})
    assert model.variant == "v2p" and model.agnostic_classes.tolist() == [4, 44]


# --- §8.11 parity option: DOTA patches padded with the mean pixel --------------------------------
def test_patches_past_the_border_take_the_pad_value():
    image = torch.full((3, 5, 6), 7, dtype=torch.uint8)  # 6 wide, 5 high
    padded = crop_patch(image, 2, 1, 8, (124, 116, 104))  # covers columns 2-9, rows 1-8: 4 x 4 inside the image
    assert torch.all(padded[:, :4, :4] == 7)
    for c, v in enumerate((124, 116, 104)):
        assert torch.all(padded[c, 4:, :] == v) and torch.all(padded[c, :, 4:] == v)
    whole = torch.full((3, 10, 10), 7, dtype=torch.uint8)
    assert torch.equal(crop_patch(whole, 0, 0, 8, (1, 2, 3)), whole[:, :8, :8])  # inside the image: no fill


def test_patch_pad_value_option_is_checked():
    assert patch_pad_value({}) is None
    assert patch_pad_value({"patch_pad_value": [124, 116, 104]}) == (124, 116, 104)
    with pytest.raises(ValueError, match="patch_pad_value: \\[124, 116\\]"):
        patch_pad_value({"patch_pad_value": [124, 116]})
    with pytest.raises(ValueError, match="patch_pad_value: \\[300, 0, 0\\]"):
        patch_pad_value({"patch_pad_value": [300, 0, 0]})


def test_training_patches_past_the_border_take_the_pad_value(tmp_path):
    """SPEC §8.11: with patch_pad_value the split pads patches with that pixel; a bad value is named."""
    import numpy as np
    from PIL import Image

    from monatune.tasks.oriented.datamodule import OrientedData

    data = {"dataset": "synthetic_dota", "root": str(tmp_path), "train_split": "train", "val_split": "val",
            "image_size": 48, "options": {"classes": ["a", "b", "c"], "patch_size": 64, "overlap": 0,
            "num_train_images": 1, "num_val_images": 1, "skip_empty": False, "patch_pad_value": [124, 116, 104]}}  # fmt: skip
    module = OrientedData(tiny_task_config(tmp_path, "oriented", "rotated_retinanet", {}, 3, "mona", data))
    module.prepare_data()
    (patch,) = (module.patch_root() / "val" / "images").glob("*.png")  # a 48x48 image in one 64x64 patch
    pixels = np.asarray(Image.open(patch).convert("RGB"))
    assert (pixels[48:, :] == [124, 116, 104]).all() and (pixels[:, 48:] == [124, 116, 104]).all()
    assert not (pixels[:48, :48] == [124, 116, 104]).all(-1).all()  # the image itself is untouched
    stamp = json.loads((module.patch_root() / "val" / "split.json").read_text())
    assert stamp["pad_value"] == [124, 116, 104]
    data["options"]["patch_pad_value"] = [300, 0, 0]
    with pytest.raises(ValueError, match="patch_pad_value"):
        OrientedData(tiny_task_config(tmp_path, "oriented", "rotated_retinanet", {}, 3, "mona", data))
