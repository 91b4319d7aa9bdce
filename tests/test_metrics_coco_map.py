"""COCO box / mask AP through faster-coco-eval: perfect predictions, a shifted box, crowd regions."""

import pytest
import torch

from monatune.metrics.coco_map import COCOMAP

H = W = 120


def square_mask(x1: int, y1: int, x2: int, y2: int) -> torch.Tensor:
    mask = torch.zeros(H, W, dtype=torch.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def target(boxes, masks, labels, iscrowd=None):
    t = {"boxes": torch.tensor(boxes, dtype=torch.float32), "masks": torch.stack(masks), "labels": torch.tensor(labels)}
    if iscrowd is not None:
        t["iscrowd"] = torch.tensor(iscrowd)
    return t


def test_perfect_predictions_give_one():
    gt = target([[0, 0, 100, 100], [100, 100, 120, 120]], [square_mask(0, 0, 100, 100), square_mask(100, 100, 120, 120)], [1, 2])
    pred = {**gt, "scores": torch.tensor([0.9, 0.8])}
    metric = COCOMAP()
    metric.update([pred], [gt])
    out = metric.compute()
    assert out["bbox_map"] == pytest.approx(1.0)
    assert out["segm_map"] == pytest.approx(1.0)


def test_shifted_box_and_mask():
    # shift by 20 px: IoU = 80*100 / 120*100 = 2/3, a hit at thresholds .50 .55 .60 .65 only -> AP 4/10
    gt = target([[0, 0, 100, 100]], [square_mask(0, 0, 100, 100)], [1])
    soft = square_mask(20, 0, 120, 100).float()[None, None] * 0.9  # (N, 1, H, W) probabilities
    pred = {"boxes": torch.tensor([[20.0, 0, 120, 100]]), "masks": soft, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    metric = COCOMAP(class_metrics=True)
    metric.update([pred], [gt])
    out = metric.compute()
    for kind in ("bbox", "segm"):
        assert out[f"{kind}_map"] == pytest.approx(0.4)
        assert out[f"{kind}_map_50"] == pytest.approx(1.0)
        assert out[f"{kind}_map_75"] == pytest.approx(0.0)
    assert out["bbox_map_per_class"] == {1: pytest.approx(0.4)}


def test_unmatched_crowd_region_is_not_a_miss():
    gt = target([[0, 0, 50, 50], [60, 60, 120, 120]], [square_mask(0, 0, 50, 50), square_mask(60, 60, 120, 120)], [1, 1], [0, 1])
    pred = {"boxes": gt["boxes"][:1], "masks": gt["masks"][:1], "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    metric = COCOMAP(iou_types=("bbox",))
    metric.update([pred], [gt])
    assert metric.compute()["bbox_map"] == pytest.approx(1.0)


def test_rejects_unknown_iou_type():
    with pytest.raises(ValueError, match="iou_types"):
        COCOMAP(iou_types=("keypoints",))
