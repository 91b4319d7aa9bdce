"""KLD / GWD against hand-computed values, box coders round trips, assignment, rotated RoIAlign."""

import math

import pytest
import torch
from torchvision.ops import roi_align

from monatune.ops.roi_align import map_rois_to_levels, rotated_roi_align
from monatune.ops.rotated_boxes import boxes_to_hboxes, regularize_boxes, wrap_angle
from monatune.ops.rotated_iou import rotated_box_iou_pairwise
from monatune.tasks.oriented.assign import IGNORED, NEGATIVE, horizontal_anchors, max_iou_assign, sample_assigned
from monatune.tasks.oriented.coders import DeltaXYWHACoder, MidpointOffsetCoder, PSCCoder
from monatune.tasks.oriented.gaussian_losses import gwd_distance, gwd_loss, kld_distance, kld_loss


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_kld_hand_values():
    target = t([0, 0, 2, 2, 0], [0, 0, 2, 2, 0], [0, 0, 4, 2, 0], [0, 0, 2, 2, 0])
    pred = t([0, 0, 2, 2, 0], [1, 0, 2, 2, 0], [0, 0, 4, 2, math.pi / 4], [0, 0, 4, 2, 0])
    # St = I, Sp = I: d = 0.  Shift (1, 0): dmu^T St^-1 dmu = 1.
    # St = diag(4, 1), Sp = R45 diag(4, 1) R45^T = [[2.5, 1.5], [1.5, 2.5]]: tr(St^-1 Sp) = 2.5/4 + 2.5, equal dets.
    # St = I, Sp = diag(4, 1): tr = 5, ln(|St|/|Sp|) = -ln 4.
    expected_d = torch.tensor([0.0, 1.0, 3.125 - 2, 3 - math.log(4)], dtype=torch.float64)
    torch.testing.assert_close(kld_distance(pred, target), expected_d)
    expected_loss = 1 - 1 / (1 + torch.log1p(expected_d.clamp_min(1e-6)))
    torch.testing.assert_close(kld_loss(pred, target), expected_loss)
    assert kld_loss(pred, target)[1].item() == pytest.approx(1 - 1 / (1 + math.log(2)))


def test_kld_ignores_the_angle_convention_and_is_smooth_across_it():
    target = t([5, 5, 6, 2, 0.3])
    same_box = t([5, 5, 2, 6, 0.3 + math.pi / 2], [5, 5, 6, 2, 0.3 + math.pi])
    torch.testing.assert_close(kld_distance(same_box, target.expand(2, -1)), torch.zeros(2, dtype=torch.float64))
    # Near the le90 boundary a tiny turn is a tiny loss, whatever the written angle.
    a = regularize_boxes(t([0, 0, 6, 2, math.pi / 2 - 0.01]), "le90")
    b = regularize_boxes(t([0, 0, 6, 2, math.pi / 2 + 0.01]), "le90")
    assert abs(a[0, 4] - b[0, 4]) > 3  # written angles jump by ~pi
    assert kld_loss(a, b).item() < 0.01


def test_kld_gradient_moves_prediction_towards_target():
    target = t([10, 10, 8, 3, 0.5])
    pred = t([12, 9, 5, 4, 0.1]).requires_grad_()
    opt = torch.optim.SGD([pred], lr=0.5)
    start = kld_loss(pred, target).item()
    for _ in range(50):
        opt.zero_grad()
        kld_loss(pred, target).sum().backward()
        opt.step()
    assert kld_loss(pred, target).item() < start / 4


def test_gwd_hand_values():
    target = t([0, 0, 2, 2, 0], [0, 0, 2, 2, 0], [0, 0, 2, 2, 0])
    pred = t([0, 0, 2, 2, 0.7], [3, 4, 2, 2, 0], [0, 0, 4, 2, 0])
    # Same circle: 0. Shift (3, 4): 25. Axis-aligned: ((w1-w2)^2 + (h1-h2)^2) / 4 = 1.
    torch.testing.assert_close(gwd_distance(pred, target), torch.tensor([0.0, 25.0, 1.0], dtype=torch.float64), atol=1e-9, rtol=0)
    assert gwd_loss(pred, target)[1].item() == pytest.approx(1 - 1 / (1 + math.log1p(25)))


def random_boxes(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = torch.rand(n, 5, generator=g, dtype=torch.float64)
    b[:, :2] *= 100
    b[:, 2:4] = b[:, 2:4] * 50 + 2
    b[:, 4] = (b[:, 4] - 0.5) * 2 * math.pi
    b[:5, 4] = 0.0  # horizontal
    b[5:10, 3] = b[5:10, 2]  # squares
    b[10:15, 4] = math.pi / 2  # vertical
    return b


@pytest.mark.parametrize(
    "coder",
    [DeltaXYWHACoder("le90", proj_xy=True, edge_swap=True, stds=(0.1, 0.1, 0.2, 0.2, 0.1)), DeltaXYWHACoder("oc")],
)
def test_delta_coder_round_trip(coder):
    target = random_boxes(200)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(200, 5, generator=g, dtype=torch.float64) * torch.tensor([4, 4, 3, 3, 0.4], dtype=torch.float64)
    refs = regularize_boxes(target + noise, coder.convention)
    refs[:, 2:4] = refs[:, 2:4].abs() + 1
    decoded = coder.decode(refs, coder.encode(refs, target))
    assert rotated_box_iou_pairwise(decoded, target).min() > 1 - 1e-9


def test_edge_swap_picks_the_smaller_turn():
    coder = DeltaXYWHACoder("le90", edge_swap=True)
    ref = t([0, 0, 10, 4, 0.0])
    target = t([0, 0, 10, 4, 1.4])  # turned 1.4 rad = the (4, 10) form turned -0.17 rad
    deltas = coder.encode(ref, target)
    assert deltas[0, 4].item() == pytest.approx(1.4 - math.pi / 2)
    assert deltas[0, 2].item() == pytest.approx(math.log(4 / 10))


def test_midpoint_offset_round_trip_and_hand_value():
    coder = MidpointOffsetCoder()
    target = random_boxes(200, seed=2)
    anchors = boxes_to_hboxes(target) + torch.randn(200, 4, dtype=torch.float64) * 2
    anchors[:, 2:] = torch.maximum(anchors[:, 2:], anchors[:, :2] + 4)
    decoded = coder.decode(anchors, coder.encode(anchors, target))
    assert rotated_box_iou_pairwise(decoded, target).min() > 1 - 1e-9
    # A horizontal box against its own horizontal box: top vertex at the right end (alpha = w/2),
    # right vertex at the bottom (beta = h/2); stds 0.5 scale those two codes by 2.
    box = t([10, 20, 8, 4, 0.0])
    code = coder.encode(boxes_to_hboxes(box), box)
    torch.testing.assert_close(code, t([0, 0, 0, 0, 1.0, 1.0]))


def test_psc_coder_round_trip():
    coder = PSCCoder(3)
    theta = torch.linspace(-math.pi / 2, math.pi / 2, 97, dtype=torch.float64)
    assert wrap_angle(coder.decode(coder.encode(theta)) - theta).abs().max() < 1e-12
    assert coder.encode(theta).shape == (97, 3)


def test_max_iou_assign_thresholds_and_low_quality_matches():
    iou = t([0.8, 0.45, 0.2, 0.0, 0.3], [0.1, 0.0, 0.35, 0.0, 0.3])
    assigned = max_iou_assign(iou, pos_threshold=0.5, neg_threshold=0.4, min_pos_iou=0.0)
    # 0: positive of target 0; 1: between the thresholds; 2: target 1's best anchor (low-quality
    # match, IoU 0.35 < 0.5); 3 and 4: best IoU below 0.4, negative.
    assert assigned.tolist() == [0, IGNORED, 1, NEGATIVE, NEGATIVE]
    assert (max_iou_assign(iou[:0], pos_threshold=0.5, neg_threshold=0.4) == NEGATIVE).all()
    pos, neg = sample_assigned(torch.tensor([0, 1, -1, -1, -1, -2]), num=4, pos_fraction=0.25)
    assert pos.numel() == 1 and neg.numel() == 3 and set(neg.tolist()) <= {2, 3, 4}


def test_anchor_layout():
    (anchors,) = horizontal_anchors([(2, 3)], [8], scales=[4.0], ratios=[0.5, 1.0, 2.0])
    assert anchors.shape == (2 * 3 * 3, 4)
    wh = anchors[:3, 2:] - anchors[:3, :2]
    torch.testing.assert_close(wh[:, 1] / wh[:, 0], torch.tensor([0.5, 1.0, 2.0]))  # ratio = h / w
    torch.testing.assert_close((anchors[3, :2] + anchors[3, 2:]) / 2, torch.tensor([12.0, 4.0]))  # cell (0, 1) centre


def test_rotated_roi_align_matches_torchvision_when_horizontal_and_turns_with_the_roi():
    feats = torch.randn(2, 3, 20, 24, dtype=torch.float64)
    rois = t([0, 24, 20, 24, 16, 0], [1, 20, 18, 30, 10, 0])
    out = rotated_roi_align(feats, rois, 7, 0.5, 2)
    half = rois[:, 3:5] / 2
    boxes = torch.cat((rois[:, :1], rois[:, 1:3] - half, rois[:, 1:3] + half), 1)
    torch.testing.assert_close(out, roi_align(feats, boxes, 7, 0.5, 2, aligned=True))
    # The same region as a quarter-turned RoI with swapped sides: the pooled grid turns with it.
    turned = rois.clone()
    turned[:, 3], turned[:, 4], turned[:, 5] = rois[:, 4], rois[:, 3], math.pi / 2
    torch.testing.assert_close(rotated_roi_align(feats, turned, 7, 0.5, 2).transpose(-1, -2).flip(-1), out)
    assert map_rois_to_levels(t([0, 0, 0, 50, 50, 0], [0, 0, 0, 120, 120, 0], [0, 0, 0, 2000, 2000, 0]), 4).tolist() == [0, 1, 3]
