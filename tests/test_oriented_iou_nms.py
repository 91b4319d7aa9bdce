"""Rotated IoU against shapely, and rotated NMS (greedy, class-aware) on hand-made cases."""

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon
from torchvision.ops import nms

from monatune.ops.nms import batched_rotated_nms, multiclass_rotated_nms, rotated_nms
from monatune.ops.rotated_boxes import boxes_to_polygons
from monatune.ops.rotated_iou import rotated_box_iou, rotated_box_iou_pairwise


def random_boxes(n: int, seed: int, spread: float = 40.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    b = torch.rand(n, 5, generator=g, dtype=torch.float64)
    b[:, :2] *= spread
    b[:, 2:4] = b[:, 2:4] * 30 + 0.5
    b[:, 4] = (b[:, 4] - 0.5) * 2 * math.pi
    return b


def shapely_iou(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    pa = [Polygon(p.reshape(4, 2).numpy()) for p in boxes_to_polygons(a.double())]
    pb = [Polygon(p.reshape(4, 2).numpy()) for p in boxes_to_polygons(b.double())]
    return np.array([[x.intersection(y).area / x.union(y).area for y in pb] for x in pa])


def special_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Random boxes plus identical, quarter-turned-equal, nested and edge-touching pairs."""
    a, b = random_boxes(120, 0), random_boxes(90, 1)
    b[:10] = a[:10]  # identical
    b[10:20, :4] = a[10:20, [0, 1, 3, 2]]  # same box written with w, h swapped and a quarter turn
    b[10:20, 4] = a[10:20, 4] + math.pi / 2
    b[20:30] = a[20:30]
    b[20:30, 2:4] *= 0.5  # nested
    b[30:40] = a[30:40]
    b[30:40, 0] += a[30:40, 2]  # touching along an edge (theta 0 below)
    a[30:40, 4] = b[30:40, 4] = 0.0
    return a, b


def test_rotated_iou_matches_shapely_float64():
    a, b = special_pairs()
    err = np.abs(rotated_box_iou(a, b).numpy() - shapely_iou(a, b)).max()
    assert err <= 1e-4


def test_rotated_iou_matches_shapely_float32_far_from_origin():
    a, b = special_pairs()
    shift = torch.tensor([5000.0, 3000.0, 0, 0, 0], dtype=torch.float64)
    iou32 = rotated_box_iou((a + shift).float(), (b + shift).float())
    assert iou32.dtype == torch.float32
    assert np.abs(iou32.numpy() - shapely_iou(a, b)).max() <= 1e-4


def test_rotated_iou_hand_values():
    boxes = torch.tensor([[0, 0, 2, 2, 0], [0, 0, 2, 2, math.pi / 4], [1, 0, 2, 2, 0], [10, 10, 1, 1, 0.3]], dtype=torch.float64)
    iou = rotated_box_iou(boxes, boxes)
    octagon = 8 * (math.sqrt(2) - 1)  # square and its 45-degree turn overlap in a regular octagon
    assert iou[0, 1].item() == pytest.approx(octagon / (8 - octagon), abs=1e-12)
    assert iou[0, 2].item() == pytest.approx(2 / 6, abs=1e-12)
    assert iou[0, 3].item() == 0.0
    torch.testing.assert_close(iou.diagonal(), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(iou, iou.T)
    torch.testing.assert_close(rotated_box_iou_pairwise(boxes, boxes.roll(1, 0)), iou[torch.arange(4), torch.arange(4).roll(1)])


def test_rotated_iou_degenerate_and_empty():
    zero_area = torch.tensor([[0, 0, 0, 5, 0.2], [0, 0, 0, 0, 0]], dtype=torch.float64)
    box = torch.tensor([[0, 0, 4, 4, 0.1]], dtype=torch.float64)
    assert (rotated_box_iou(zero_area, box) == 0).all()
    assert rotated_box_iou(torch.zeros(0, 5), box).shape == (0, 1)
    assert rotated_box_iou(box, torch.zeros(0, 5)).shape == (1, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_rotated_iou_same_on_gpu():
    a, b = special_pairs()
    torch.testing.assert_close(rotated_box_iou(a.cuda(), b.cuda()).cpu(), rotated_box_iou(a, b))
    keep = rotated_nms(a.cuda(), torch.rand(len(a), dtype=torch.float64).cuda(), 0.3)
    assert keep.device.type == "cuda"


def test_nms_keeps_best_and_drops_overlaps():
    boxes = torch.tensor([[0, 0, 10, 4, 0.3], [0.5, 0, 10, 4, 0.3], [30, 30, 10, 4, 0.3], [0, 0, 10, 4, 0.3 + math.pi / 2]])
    scores = torch.tensor([0.9, 0.95, 0.5, 0.8])
    keep = rotated_nms(boxes, scores, 0.5)
    # Box 1 (best) removes its near copy 0; box 3 (crossing at right angles, IoU < 0.5) and 2 stay.
    assert keep.tolist() == [1, 3, 2]


def test_nms_threshold_is_strict_and_chains_do_not_propagate():
    pair = torch.tensor([[0, 0, 2, 2, 0.4], [0, 0, 2, 1, 0.4]])  # IoU exactly 0.5
    scores = torch.tensor([0.9, 0.8])
    assert rotated_nms(pair, scores, 0.5).tolist() == [0, 1]
    assert rotated_nms(pair, scores, 0.49).tolist() == [0]
    chain = torch.tensor([[0, 0, 4, 2, 0], [2, 0, 4, 2, 0], [4, 0, 4, 2, 0]])  # neighbours IoU 1/3
    assert rotated_nms(chain, torch.tensor([0.9, 0.8, 0.7]), 0.3).tolist() == [0, 2]


def test_nms_equal_scores_keep_input_order_and_empty_input():
    boxes = torch.tensor([[0, 0, 4, 2, 0.1], [0, 0, 4, 2, 0.1]])
    assert rotated_nms(boxes, torch.tensor([0.5, 0.5]), 0.1).tolist() == [0]
    assert rotated_nms(torch.zeros(0, 5), torch.zeros(0), 0.1).shape == (0,)


@pytest.mark.parametrize("row_chunk", [1024, 7])
def test_nms_of_horizontal_boxes_equals_torchvision(monkeypatch, row_chunk):
    """Also with the IoU rows computed a few at a time (the sparse path that merges many patches)."""
    import monatune.ops.nms as nms_module

    monkeypatch.setattr(nms_module, "ROW_CHUNK", row_chunk)
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(200, 2, generator=g) * 100
    wh = torch.rand(200, 2, generator=g) * 30 + 2
    scores = torch.rand(200, generator=g)
    boxes = torch.cat((xy, wh, torch.zeros(200, 1)), 1)
    ours = rotated_nms(boxes, scores, 0.3)
    theirs = nms(torch.cat((xy - wh / 2, xy + wh / 2), 1), scores, 0.3)
    assert ours.tolist() == theirs.tolist()


def test_batched_nms_is_class_aware():
    boxes = torch.tensor([[0, 0, 10, 4, 0.3], [0, 0, 10, 4, 0.3], [0.2, 0, 10, 4, 0.3]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 1, 0])
    assert batched_rotated_nms(boxes, scores, labels, 0.1).tolist() == [0, 1]
    out = multiclass_rotated_nms(boxes, scores, labels, iou_threshold=0.1, max_per_image=1)
    assert out["labels"].tolist() == [0] and out["boxes"].shape == (1, 5)
