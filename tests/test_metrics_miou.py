"""Whole-set mIoU against hand-computed numbers, and against the (different) per-image average."""

import math

import pytest
import torch

from monatune.metrics.miou import MeanIoU

# image A (2x2): one class-1 pixel predicted as 0; image B (2x4): all class 1, all right
A_TARGET, A_PRED = torch.tensor([[0, 0], [0, 1]]), torch.zeros(2, 2, dtype=torch.int64)
B_TARGET, B_PRED = torch.ones(2, 4, dtype=torch.int64), torch.ones(2, 4, dtype=torch.int64)


def test_whole_set_numbers():
    metric = MeanIoU(num_classes=2)
    metric.update(A_PRED, A_TARGET)
    metric.update(B_PRED, B_TARGET)
    out = metric.compute()
    # class 0: I = 3, U = 4; class 1: I = 8, U = 9
    assert out["iou_per_class"].tolist() == pytest.approx([3 / 4, 8 / 9])
    assert out["miou"] == pytest.approx((3 / 4 + 8 / 9) / 2)
    assert out["pixel_accuracy"] == pytest.approx(11 / 12)
    assert out["mean_accuracy"] == pytest.approx((1.0 + 8 / 9) / 2)


def test_differs_from_per_image_average():
    per_image = []
    for pred, target in ((A_PRED, A_TARGET), (B_PRED, B_TARGET)):
        metric = MeanIoU(num_classes=2)
        metric.update(pred, target)
        per_image.append(metric.compute()["miou"])
    assert per_image == pytest.approx([(3 / 4 + 0.0) / 2, 1.0])  # B: class 0 absent, left out
    whole = MeanIoU(num_classes=2)
    whole.update(torch.stack([A_PRED, A_PRED]), torch.stack([A_TARGET, A_TARGET]))  # batched update
    whole.update(B_PRED, B_TARGET)
    whole.update(B_PRED, B_TARGET)
    assert whole.compute()["miou"] == pytest.approx((6 / 8 + 16 / 18) / 2)
    assert whole.compute()["miou"] != pytest.approx(sum(per_image) / 2)


def test_ignore_index_pixels_count_nowhere():
    metric = MeanIoU(num_classes=2, ignore_index=255)
    target = torch.tensor([[0, 255], [255, 1]])
    metric.update(torch.tensor([[0, 1], [1, 1]]), target)
    out = metric.compute()
    assert out["miou"] == 1.0 and out["pixel_accuracy"] == 1.0


def test_logits_are_argmaxed_and_unseen_class_is_nan():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = 1.0  # predicts class 1 everywhere
    metric = MeanIoU(num_classes=3)
    metric.update(logits, torch.ones(1, 2, 2, dtype=torch.int64))
    iou = metric.compute()["iou_per_class"]
    assert iou[1] == 1.0 and math.isnan(iou[0]) and math.isnan(iou[2])


def test_out_of_range_labels_raise():
    metric = MeanIoU(num_classes=2)
    with pytest.raises(ValueError, match="label"):
        metric.update(torch.zeros(2, 2, dtype=torch.int64), torch.full((2, 2), 7))
    with pytest.raises(ValueError, match="shape"):
        metric.update(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 2, dtype=torch.int64))
