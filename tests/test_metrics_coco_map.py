"""COCO box / mask AP equal to pycocotools' COCOeval: perfect predictions, a shifted box, crowd regions, matches and
recalls exactly on a threshold (hand-computed), false positives on images without ground-truth masks, and random
sets scored by pycocotools itself."""

import contextlib
import io

import numpy as np
import pytest
import torch

from monatune.metrics.coco_map import COCOMAP

H = W = 120


def square_mask(x1: int, y1: int, x2: int, y2: int, h: int = H, w: int = W) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.uint8)
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


# ---- hand-computed cases on a threshold --------------------------------------------------------------------------
# COCOeval's thresholds are np.linspace(.5, .95, 10) and np.linspace(0, 1, 101) in float64: a match needs
# IoU >= t, a recall threshold r counts the precision at the first detection whose recall is >= r. These cases put
# an IoU or a recall exactly on one (float32-rounded thresholds, 0.550000011920929 for 0.55, scored them otherwise).


@pytest.mark.parametrize(
    "width, hits",
    [(11, 2), (12, 3), (15, 6), (16, 7), (17, 8), (18, 9), (19, 10)],  # IoU 0.55 0.60 0.75 0.80 0.85 0.90 0.95
)
def test_match_iou_exactly_on_a_threshold_counts(width, hits):
    # ground truth 20 x 10, prediction its left ``width`` x 10: IoU = width / 20 exactly, boxes and masks alike,
    # a hit at the ``hits`` thresholds .50 ... width / 20 (0.90 is 0.8999999999999999 in COCOeval, still a hit)
    gt = target([[0, 0, 20, 10]], [square_mask(0, 0, 20, 10)], [1])
    pred = {"boxes": torch.tensor([[0.0, 0, width, 10]]), "masks": square_mask(0, 0, width, 10)[None],
            "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}  # fmt: skip
    metric = COCOMAP()
    metric.update([pred], [gt])
    out = metric.compute()
    for kind in ("bbox", "segm"):
        assert out[f"{kind}_map"] == pytest.approx(hits / 10, abs=1e-12)
        assert out[f"{kind}_map_50"] == 1.0
        assert out[f"{kind}_map_75"] == (1.0 if hits >= 6 else 0.0)  # IoU exactly 0.75 is a hit at .75
        assert out[f"{kind}_map_small"] == pytest.approx(hits / 10, abs=1e-12)  # area 200 < 32^2
        assert out[f"{kind}_mar_100"] == pytest.approx(hits / 10, abs=1e-12)


def _row_of_boxes(outcomes: str, n_gt: int):
    """One image with ``n_gt`` disjoint 10 x 10 objects; detections by falling score: ``T`` the next object
    exactly (IoU 1 at every threshold), ``F`` a box on no object."""
    gt_boxes = [[20 * i, 0, 20 * i + 10, 10] for i in range(n_gt)]
    gt = target(gt_boxes, [square_mask(*b, h=40, w=20 * n_gt) for b in gt_boxes], [1] * n_gt)
    boxes, matched = [], 0
    for outcome in outcomes:
        boxes.append(gt_boxes[matched] if outcome == "T" else [0, 25, 10, 35])
        matched += outcome == "T"
    pred = {"boxes": torch.tensor(boxes, dtype=torch.float32), "masks": torch.stack([square_mask(*b, h=40, w=20 * n_gt) for b in boxes]),
            "scores": torch.linspace(0.9, 0.5, len(boxes)), "labels": torch.ones(len(boxes), dtype=torch.long)}  # fmt: skip
    return pred, gt


@pytest.mark.parametrize(
    "outcomes, n_gt, ap, ar_1, ar_10",
    [
        # recall .2 .4 .6 .6 .8, interpolated precision 1 1 1 .8 .8: recall thresholds 0 ... 0.60 (61 of them;
        # recall 3/5 == 0.6 reaches the 0.60 threshold) score 1, 0.61 ... 0.80 (20; 4/5 reaches 0.80) score 0.8
        ("TTTFT", 5, (61 + 20 * 0.8) / 101, 0.2, 0.8),
        # recall .1 ... .7 .7 .8, interpolated precision 1 (x7) 8/9 8/9: COCOeval's 0.70 recall threshold is
        # 0.7000000000000001, which recall 7/10 == 0.7 does not reach: 0 ... 0.69 (70) score 1, 0.70 ... 0.80 (11) 8/9
        ("TTTTTTTFT", 10, (70 + 11 * 8 / 9) / 101, 0.1, 0.8),
    ],
)
def test_recall_exactly_on_a_recall_threshold(outcomes, n_gt, ap, ar_1, ar_10):
    pred, gt = _row_of_boxes(outcomes, n_gt)
    metric = COCOMAP()
    metric.update([pred], [gt])
    out = metric.compute()
    for kind in ("bbox", "segm"):  # IoU 1 or 0 everywhere: the same at every IoU threshold
        for name in ("map", "map_50", "map_75"):
            assert out[f"{kind}_{name}"] == pytest.approx(ap, abs=1e-12), (kind, name)
        assert out[f"{kind}_mar_1"] == pytest.approx(ar_1, abs=1e-12)
        assert out[f"{kind}_mar_10"] == pytest.approx(ar_10, abs=1e-12)
        assert out[f"{kind}_mar_100"] == pytest.approx(ar_10, abs=1e-12)


# ---- images without ground truth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("iou_types", [("segm",), ("bbox", "segm"), ("bbox",)])
def test_false_positive_on_an_image_without_ground_truth_counts(iou_types):
    # image 1: one object found exactly (score .8); image 2: no object, one false positive scored higher (.9).
    # Detections by score: FP, TP -> precision 0, 1/2, interpolated 1/2 at every recall threshold: AP 0.5.
    gt = target([[10, 10, 50, 50]], [square_mask(10, 10, 50, 50)], [1])
    hit = {**gt, "scores": torch.tensor([0.8])}
    empty = {"boxes": torch.zeros(0, 4), "masks": torch.zeros(0, H, W, dtype=torch.uint8), "labels": torch.zeros(0, dtype=torch.long)}
    miss = {"boxes": torch.tensor([[60.0, 60, 100, 100]]), "masks": square_mask(60, 60, 100, 100)[None].float()[:, None],
            "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}  # fmt: skip
    metric = COCOMAP(iou_types)
    metric.update([hit, miss], [gt, empty])
    out = metric.compute()
    for kind in iou_types:
        assert out[f"{kind}_map"] == pytest.approx(0.5, abs=1e-12)
        assert out[f"{kind}_map_50"] == pytest.approx(0.5, abs=1e-12)
        assert out[f"{kind}_mar_100"] == 1.0


def test_no_detections_at_all_score_zero_not_minus_one():
    # COCOeval: categories with ground truth and no detection have precision and recall 0; -1 only without ground truth
    gt = target([[10, 10, 50, 50]], [square_mask(10, 10, 50, 50)], [1])
    none = {"boxes": torch.zeros(0, 4), "masks": torch.zeros(0, H, W, dtype=torch.uint8), "labels": torch.zeros(0, dtype=torch.long),
            "scores": torch.zeros(0)}  # fmt: skip
    for iou_types in (("segm",), ("bbox",), ("bbox", "segm")):
        metric = COCOMAP(iou_types, class_metrics=True)
        metric.update([none], [gt])
        out = metric.compute()
        for kind in iou_types:
            assert out[f"{kind}_map"] == 0.0 and out[f"{kind}_mar_100"] == 0.0
            assert out[f"{kind}_map_medium"] == 0.0 and out[f"{kind}_map_small"] == -1.0  # 40 x 40: medium only
            assert out[f"{kind}_map_per_class"] == {1: 0.0}
    metric = COCOMAP()
    with pytest.warns(UserWarning, match="before the ``update``"):
        out = metric.compute()
    assert all(v == -1.0 for v in out.values())  # nothing collected


# ---- random sets against pycocotools -------------------------------------------------------------------------------

RH, RW, CLASSES = 112, 144, 3
STATS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
         "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")  # fmt: skip


def _blob(box: list[float]) -> torch.Tensor:
    """The superellipse |x|^4 + |y|^4 <= 1 inscribed in ``box`` (pixel centers; ~93 % of the box), at least one pixel."""
    x1, y1, x2, y2 = box
    ys, xs = torch.meshgrid(torch.arange(RH) + 0.5, torch.arange(RW) + 0.5, indexing="ij")
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, max((x2 - x1) / 2, 0.5), max((y2 - y1) / 2, 0.5)
    mask = ((xs - cx) / rx) ** 4 + ((ys - cy) / ry) ** 4 <= 1
    if not mask.any():
        mask[min(int(cy), RH - 1), min(int(cx), RW - 1)] = True
    return mask


def _random_box(g: torch.Generator, integer: bool) -> list[float]:
    """A small, medium or large box (sides 3-30, 34-90 or 98-110 px) anywhere in the image."""
    low, high = [(3, 30), (34, 90), (98, 110)][int(torch.randint(0, 3, (1,), generator=g))]
    w, h = (low + (high - low) * torch.rand(1, generator=g).item() for _ in range(2))
    x1, y1 = torch.rand(1, generator=g).item() * (RW - w), torch.rand(1, generator=g).item() * (RH - h)
    box = [x1, y1, x1 + w, y1 + h]
    return [float(round(v)) for v in box] if integer else box


def _random_set(seed: int, integer: bool, tied_scores: bool, crowded: bool = False):
    """Images with 0-6 objects of 3 classes (sizes over all COCO ranges; masks are blobs in the boxes), each found
    with a jittered box (sometimes with the wrong class), plus false positives; image 0 has no object but false
    positives, image 1 no detection; ``crowded``: one image with 120 detections (beyond maxDets 100)."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for image in range(6):
        n_gt = 0 if image == 0 else int(torch.randint(1, 7, (1,), generator=g))
        gt_boxes = [_random_box(g, integer) for _ in range(n_gt)]
        gt_labels = torch.randint(1, CLASSES + 1, (n_gt,), generator=g).tolist()
        boxes, labels = [], []
        n_repeat = 20 if crowded and image == 2 else 1
        for box, label in zip(gt_boxes, gt_labels):
            for _ in range(n_repeat):
                if torch.rand(1, generator=g).item() > 0.85:
                    continue
                size = torch.tensor([box[2] - box[0], box[3] - box[1]] * 2)
                jittered = (torch.tensor(box) + 0.08 * size * torch.randn(4, generator=g)).tolist()
                jittered = [min(max(v, 0.0), lim) for v, lim in zip(jittered, (RW, RH, RW, RH))]
                jittered[2], jittered[3] = max(jittered[2], jittered[0] + 1), max(jittered[3], jittered[1] + 1)
                boxes.append([float(round(v)) for v in jittered] if integer else jittered)
                labels.append(label if torch.rand(1, generator=g).item() < 0.9 else int(torch.randint(1, CLASSES + 1, (1,), generator=g)))
        for _ in range(int(torch.randint(1 if image == 0 else 0, 4, (1,), generator=g))):
            boxes.append(_random_box(g, integer))
            labels.append(int(torch.randint(1, CLASSES + 1, (1,), generator=g)))
        if crowded and image == 2:
            while len(boxes) < 120:
                boxes.append(_random_box(g, integer))
                labels.append(int(torch.randint(1, CLASSES + 1, (1,), generator=g)))
        if image == 1:
            boxes, labels = [], []
        n = len(boxes)
        scores = torch.randint(1, 4, (n,), generator=g).float() / 4 if tied_scores else torch.rand(n, generator=g)
        pred_masks = torch.stack([_blob(b) for b in boxes]) if n else torch.zeros(0, RH, RW, dtype=torch.bool)
        preds.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "scores": scores,
                      "labels": torch.tensor(labels, dtype=torch.long),
                      "masks": (pred_masks.float() * 0.9 + 0.05)[:, None]})  # fmt: skip  # probabilities, > 0.5 inside
        gt_masks = torch.stack([_blob(b) for b in gt_boxes]).to(torch.uint8) if n_gt else torch.zeros(0, RH, RW, dtype=torch.uint8)
        targets.append({"boxes": torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4),
                        "labels": torch.tensor(gt_labels, dtype=torch.long), "masks": gt_masks})  # fmt: skip
    return preds, targets


def _pycocotools(preds, targets, iou_type: str, mask_area: bool, cat_ids=None) -> np.ndarray:
    """COCOeval.stats as a COCO user computes them: ground truth in a COCO dataset (area: the mask area, or the box
    area without masks), detections through ``loadRes`` (bbox results or RLE segm results)."""
    from pycocotools import mask as mask_api
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box: torch.Tensor) -> list[float]:
        x1, y1, x2, y2 = (float(v) for v in box)  # float32 -> float64 exactly, then the differences in float64
        return [x1, y1, x2 - x1, y2 - y1]

    def rle(mask: torch.Tensor) -> dict:
        return mask_api.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))

    images, gts, results = [], [], []
    for image_id, (pred, tgt) in enumerate(zip(preds, targets), start=1):
        images.append({"id": image_id, "height": RH, "width": RW})
        for box, mask, label in zip(tgt["boxes"], tgt["masks"], tgt["labels"].tolist()):
            ann = {"id": len(gts) + 1, "image_id": image_id, "category_id": label, "iscrowd": 0, "bbox": xywh(box),
                   "segmentation": rle(mask)}  # fmt: skip
            ann["area"] = float(mask.sum()) if mask_area else ann["bbox"][2] * ann["bbox"][3]
            gts.append(ann)
        for box, mask, score, label in zip(pred["boxes"], pred["masks"][:, 0] > 0.5, pred["scores"].tolist(), pred["labels"].tolist()):
            result = {"image_id": image_id, "category_id": label, "score": score}
            result.update({"bbox": xywh(box)} if iou_type == "bbox" else {"segmentation": rle(mask)})
            results.append(result)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gts, "categories": [{"id": c} for c in range(1, CLASSES + 1)]}
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), iou_type)
        if cat_ids is not None:
            coco_eval.params.catIds = cat_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


@pytest.mark.filterwarnings("ignore:Encountered more than 100 detections")
@pytest.mark.parametrize("iou_types", [("bbox", "segm"), ("segm",), ("bbox",)])
@pytest.mark.parametrize(
    "seed, integer, tied_scores, crowded",
    [(0, False, False, False), (1, True, False, False), (2, True, True, False), (3, False, False, True), (4, True, False, True)],
)
def test_random_sets_equal_pycocotools(seed, integer, tied_scores, crowded, iou_types):
    pytest.importorskip("pycocotools")
    preds, targets = _random_set(seed, integer, tied_scores, crowded)
    metric = COCOMAP(iou_types, class_metrics=True)
    metric.update(preds[:3], targets[:3])  # in two updates, as over eval batches
    metric.update(preds[3:], targets[3:])
    out = metric.compute()
    for kind in iou_types:
        expected = _pycocotools(preds, targets, kind, mask_area="segm" in iou_types)
        got = np.array([out[f"{kind}_{name}"] for name in STATS])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, err_msg=f"{kind}: {STATS}")
        for label, ap in out[f"{kind}_map_per_class"].items():
            stats = _pycocotools(preds, targets, kind, mask_area="segm" in iou_types, cat_ids=[label])
            assert ap == pytest.approx(stats[0], abs=1e-12), (kind, label)
            assert out[f"{kind}_mar_100_per_class"][label] == pytest.approx(stats[8], abs=1e-12), (kind, label)


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    import json
    from pathlib import Path

    import torch.distributed as dist

    from monatune.tasks.instance_segmentation.module import merge_states_over_ranks

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        preds, targets = _random_set(1, integer=True, tied_scores=False)
        part = slice(0, 2) if rank == 0 else slice(2, 6)  # uneven: 2 and 4 images
        metric = COCOMAP(class_metrics=True)
        metric.update(preds[part], targets[part])
        merge_states_over_ranks(metric.metric)
        out = metric.compute()
        Path(out_dir, f"{rank}.json").write_text(json.dumps({k: v for k, v in out.items() if "per_class" not in k}))
    finally:
        dist.destroy_process_group()


def test_ranks_merged_score_as_one_process(tmp_path):
    """Under DDP each rank holds its own images; merged, every rank scores the whole set."""
    import json

    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    preds, targets = _random_set(1, integer=True, tied_scores=False)
    metric = COCOMAP()
    metric.update(preds, targets)
    expected = metric.compute()
    assert expected["segm_map"] > 0
    for rank in (0, 1):
        assert json.loads((tmp_path / f"{rank}.json").read_text()) == pytest.approx(expected, abs=1e-12)
