"""VOC07 mAP on hand-computed cases: ranking, duplicates, difficult, ties, empty classes, IoU conventions."""

import math

import numpy as np
import pytest
import torch

from monatune.metrics.voc07_map import VOC07MAP, box_iou_matrix

G1, G2 = [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]
FAR = [100.0, 100.0, 110.0, 110.0]


def pred(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes).reshape(-1, 4), "scores": torch.tensor(scores), "labels": torch.tensor(labels)}


def gt(boxes, labels, difficult=None):
    t = {"boxes": torch.tensor(boxes).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64)}
    if difficult is not None:
        t["difficult"] = torch.tensor(difficult)
    return t


def ap_of(preds, targets, num_classes=1, **kwargs):
    metric = VOC07MAP(num_classes=num_classes, **kwargs)
    metric.update(preds, targets)
    return metric.compute()


def test_perfect_detections_give_one():
    out = ap_of([pred([G1, G2], [0.9, 0.8], [1, 1])], [gt([G1, G2], [1, 1])])
    assert out["map"] == pytest.approx(1.0)


def test_ranked_tp_fp_tp_is_28_over_33():
    # tp = [1, 0, 1], 2 GT: recall [.5, .5, 1], precision [1, .5, 2/3];
    # 11-point: t <= 0.5 -> 1 (6 points), t >= 0.6 -> 2/3 (5 points) => (6 + 10/3) / 11
    preds = [pred([G1, FAR], [0.9, 0.8], [1, 1]), pred([G2], [0.7], [1])]
    out = ap_of(preds, [gt([G1], [1]), gt([G2], [1])])
    assert out["map"] == pytest.approx(28 / 33)


def test_duplicate_detection_is_false_positive():
    preds = [pred([G1, G1], [0.9, 0.8], [1, 1]), pred([G2], [0.7], [1])]
    out = ap_of(preds, [gt([G1], [1]), gt([G2], [1])])
    assert out["map"] == pytest.approx(28 / 33)


def test_no_fallback_to_second_best_ground_truth():
    # the 0.8 detection overlaps A best (already taken) and B above 0.5: the devkit scores it FP
    a, b = [0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0]
    preds = [pred([a, [1.0, 0.0, 11.0, 10.0]], [0.9, 0.8], [1, 1])]
    out = ap_of(preds, [gt([a, b], [1, 1])], pixel_offset=0.0)
    assert out["map"] == pytest.approx(6 / 11)


def test_detection_on_difficult_is_ignored():
    # without the rule the first detection would be FP: precision [0, .5] -> AP 0.5
    out = ap_of([pred([G1, G2], [0.9, 0.8], [1, 1])], [gt([G1, G2], [1, 1], [True, False])])
    assert out["map"] == pytest.approx(1.0)
    assert out["num_ground_truth"]["1"] == 1


def test_difficult_only_image_keeps_its_false_positives():
    # image B holds only a difficult object: the detection on it is ignored, the far one is FP
    preds = [pred([G1], [0.5], [1]), pred([G2, FAR], [0.9, 0.8], [1, 1])]
    targets = [gt([G1], [1]), gt([G2], [1], [True])]
    assert ap_of(preds, targets)["map"] == pytest.approx(0.5)  # ranked: FP, TP -> precision 0.5 at every recall


def test_class_with_only_difficult_or_no_ground_truth_is_left_out_of_the_mean():
    preds = [pred([G1, G2, FAR], [0.9, 0.9, 0.9], [1, 2, 3])]
    targets = [gt([G1, G2], [1, 2], [False, True])]
    out = ap_of(preds, targets, num_classes=3, class_names=["a", "b", "c"])
    assert out["ap_per_class"]["a"] == pytest.approx(1.0)
    assert math.isnan(out["ap_per_class"]["b"]) and math.isnan(out["ap_per_class"]["c"])
    assert out["map"] == pytest.approx(1.0)


def test_class_without_detections_scores_zero_and_counts():
    out = ap_of([pred([G1], [0.9], [1])], [gt([G1, G2], [1, 2])], num_classes=2)
    assert out["ap_per_class"]["2"] == 0.0
    assert out["map"] == pytest.approx(0.5)


def test_no_detections_at_all():
    assert ap_of([pred([], [], [])], [gt([G1], [1])])["map"] == 0.0


def test_ties_keep_update_order():
    # equal scores: TP first gives precision [1, .5] (AP 1), FP first gives [0, .5] (AP 0.5)
    tp_first = ap_of([pred([G1], [0.8], [1]), pred([FAR], [0.8], [1])], [gt([G1], [1]), gt([], [])])
    fp_first = ap_of([pred([FAR], [0.8], [1]), pred([G1], [0.8], [1])], [gt([], []), gt([G1], [1])])
    assert tp_first["map"] == pytest.approx(1.0)
    assert fp_first["map"] == pytest.approx(0.5)


def test_iou_conventions():
    g, d = np.array([[0.0, 0.0, 3.0, 3.0]]), np.array([[0.0, 0.0, 3.0, 1.0]])
    assert box_iou_matrix(d, g, pixel_offset=1.0)[0, 0] == pytest.approx(4 * 2 / 16)
    assert box_iou_matrix(d, g, pixel_offset=0.0)[0, 0] == pytest.approx(3 / 9)
    targets, preds = [gt(g.tolist(), [1])], [pred(d.tolist(), [0.9], [1])]
    assert ap_of(preds, targets)["map"] == pytest.approx(1.0)  # devkit pixels: IoU 0.5
    assert ap_of(preds, targets, pixel_offset=0.0)["map"] == 0.0  # continuous: IoU 1/3


def test_threshold_is_inclusive_as_in_the_devkit():
    targets = [gt([G1], [1])]
    assert ap_of([pred([[0.0, 0.0, 10.0, 5.0]], [0.9], [1])], targets, pixel_offset=0.0)["map"] == pytest.approx(1.0)  # IoU 0.5
    assert ap_of([pred([[0.0, 0.0, 10.0, 4.9]], [0.9], [1])], targets, pixel_offset=0.0)["map"] == 0.0


def test_accumulates_over_updates_and_resets():
    metric = VOC07MAP(num_classes=1)
    metric.update([pred([G1, FAR], [0.9, 0.8], [1, 1])], [gt([G1], [1])])
    metric.update([pred([G2], [0.7], [1])], [gt([G2], [1])])
    assert metric.compute()["map"] == pytest.approx(28 / 33)
    metric.reset()
    assert math.isnan(metric.compute()["map"])


def test_labels_out_of_range_raise():
    with pytest.raises(ValueError, match="1..1"):
        ap_of([pred([G1], [0.9], [0])], [gt([G1], [1])])
