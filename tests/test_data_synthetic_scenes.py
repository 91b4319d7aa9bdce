"""Synthetic scenes: deterministic from the seed, and boxes / instance masks / semantic mask agree."""

import numpy as np
import pytest
from faster_coco_eval.core import mask as mask_api

from monatune.data.synthetic_scenes import (
    DIFFICULT_AREA_FRACTION,
    SYNTHETIC_CLASSES,
    generate_scene,
    mask_to_uncompressed_rle,
    write_ade20k,
    write_coco,
    write_voc,
)


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    for writer in (write_voc, write_coco, write_ade20k):
        a, b, c = tmp_path / f"{writer.__name__}_a", tmp_path / f"{writer.__name__}_b", tmp_path / f"{writer.__name__}_c"
        writer(a, 3, 32, seed=5)
        writer(b, 3, 32, seed=5)
        writer(c, 3, 32, seed=6)
        assert files(a) == files(b)
        assert files(a) != files(c)


def test_image_i_does_not_depend_on_n(tmp_path):
    write_ade20k(tmp_path / "few", 2, 32, seed=1)
    write_ade20k(tmp_path / "many", 5, 32, seed=1)
    name = "images/training/ADE_train_00000002.jpg"
    assert (tmp_path / "few" / name).read_bytes() == (tmp_path / "many" / name).read_bytes()


@pytest.mark.parametrize("seed", range(5))
def test_boxes_masks_and_semantic_mask_agree(seed):
    scene = generate_scene(np.random.default_rng(seed), 64, 80)
    n = len(scene.labels)
    assert 1 <= n <= 4 and scene.image.shape == (64, 80, 3) and scene.image.dtype == np.uint8
    assert set(scene.labels.tolist()) <= set(range(1, len(SYNTHETIC_CLASSES) + 1))
    assert scene.instance_masks.sum(0).max() <= 1, "objects must not overlap"
    semantic = (scene.instance_masks * scene.labels[:, None, None]).sum(0)
    np.testing.assert_array_equal(scene.semantic_mask, semantic)
    for box, mask, difficult in zip(scene.boxes, scene.instance_masks, scene.difficult):
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert difficult == (mask.sum() < DIFFICULT_AREA_FRACTION * 64 * 80)


def test_uncompressed_rle_round_trips_through_the_coco_decoder():
    rng = np.random.default_rng(0)
    for mask in (rng.random((7, 9)) < 0.4, np.ones((3, 4), bool), np.zeros((3, 4), bool)):
        rle = mask_to_uncompressed_rle(mask.astype(np.uint8))
        decoded = mask_api.decode(mask_api.frPyObjects(rle, *mask.shape))
        np.testing.assert_array_equal(decoded, mask)


def test_written_sets_run_through_readers_transforms_and_metrics(tmp_path):
    import torch

    from monatune.data import dense_transforms as T
    from monatune.data.ade20k import ADE20KSegmentation
    from monatune.data.coco import COCODetection
    from monatune.data.voc import VOCDetection
    from monatune.metrics.coco_map import COCOMAP
    from monatune.metrics.miou import MeanIoU
    from monatune.metrics.voc07_map import VOC07MAP

    voc = VOCDetection(write_voc(tmp_path, 4, 48), class_names=SYNTHETIC_CLASSES)
    metric = VOC07MAP(num_classes=len(SYNTHETIC_CLASSES), class_names=SYNTHETIC_CLASSES)
    for i in range(len(voc)):
        image, target = T.detection_train_transforms(scale=(64, 40))(*voc[i])
        assert image.shape == (3, 40, 40) and target["boxes"].canvas_size == (40, 40)
        _, target = voc[i]
        metric.update([{**target, "scores": torch.ones(len(target["labels"]))}], [target])
    assert metric.compute()["map"] == pytest.approx(1.0)

    coco = COCODetection(tmp_path / "coco" / "val2017", write_coco(tmp_path / "coco", 3, 48, split="val2017"), include_crowd=True)
    transform = T.instance_train_transforms(short_sides=(40, 48), max_size=80, crop_short_sides=(32,), crop_size=(24, 32))
    coco_metric = COCOMAP()
    for i in range(len(coco)):
        image, target = transform(*coco[i])
        assert len(target["masks"]) == len(target["boxes"]) == len(target["labels"]) == len(target["iscrowd"])
        _, target = coco[i]
        coco_metric.update([{**target, "scores": torch.ones(len(target["labels"]))}], [target])
    assert coco_metric.compute()["segm_map"] == pytest.approx(1.0)

    ade = ADE20KSegmentation(write_ade20k(tmp_path / "ade", 3, 48), num_classes=6)
    miou = MeanIoU(num_classes=6)
    for i in range(len(ade)):
        image, mask = T.semantic_train_transforms(scale=(128, 32), crop_size=32)(*ade[i])
        assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
        miou.update(mask.clone().masked_fill_(mask == 255, 0), mask)
    assert miou.compute()["miou"] == pytest.approx(1.0)
