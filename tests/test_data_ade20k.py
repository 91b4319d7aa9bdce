"""ADE20K reader: label shift (0 -> 255, k -> k - 1), round trip of write_ade20k, errors naming files."""

import numpy as np
import pytest
import torch
from PIL import Image

from monatune.data.ade20k import ADE20KSegmentation, reduce_zero_label
from monatune.data.errors import DatasetError
from monatune.data.synthetic_images import render_synthetic
from monatune.data.synthetic_scenes import (
    ADE_SYNTHETIC_CLASSES,
    PRETEXT_ADE_CLASSES,
    PRETEXT_SEED_OFFSET,
    split_scenes,
    write_ade20k,
)  # fmt: skip


def make_pair(root, stem, label, image_size=None, split="validation"):
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    h, w = image_size or label.shape
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "images" / split / f"{stem}.jpg")
    Image.fromarray(label).save(root / "annotations" / split / f"{stem}.png")


def test_reduce_zero_label():
    raw = np.array([[0, 1, 2], [150, 0, 75]], np.uint8)
    assert reduce_zero_label(raw).tolist() == [[255, 0, 1], [149, 255, 74]]


def test_hand_made_png(tmp_path):
    make_pair(tmp_path, "ADE_val_00000001", np.array([[0, 1], [150, 3]], np.uint8))
    image, mask = ADE20KSegmentation(tmp_path, "validation")[0]
    assert image.shape == (3, 2, 2)
    assert mask.dtype == torch.int64 and mask.tolist() == [[255, 0], [149, 2]]
    _, raw = ADE20KSegmentation(tmp_path, "validation", reduce_zero_label=False, num_classes=151)[0]
    assert raw.tolist() == [[0, 1], [150, 3]]


def test_reads_what_write_ade20k_writes(tmp_path):
    root = write_ade20k(tmp_path, 3, size=(40, 48), seed=4, split="training")
    dataset = ADE20KSegmentation(root, "training", num_classes=len(ADE_SYNTHETIC_CLASSES))
    assert len(dataset) == 3 and dataset.image_paths[0].name == "ADE_train_00000001.jpg"
    for (image, mask), scene in zip((dataset[i] for i in range(3)), split_scenes(3, (40, 48), 4, "training")):
        assert image.shape == (3, 40, 48)
        np.testing.assert_array_equal(mask.numpy(), scene.semantic_mask)  # 0 = background, k = shape k


def test_pretext_style_scenes_round_trip(tmp_path):
    root = write_ade20k(tmp_path, 3, size=128, seed=2, split="validation", style="pretext")
    dataset = ADE20KSegmentation(root, "validation", num_classes=len(PRETEXT_ADE_CLASSES))
    _, _, masks = render_synthetic(range(3), 2 + PRETEXT_SEED_OFFSET, "val", with_masks=True)
    for i in range(3):
        image, mask = dataset[i]
        assert image.shape == (3, 128, 128)
        expected = (masks[i] > 0).astype(np.int64).repeat(2, 0).repeat(2, 1)  # 64 px scaled up twice
        np.testing.assert_array_equal(mask.numpy(), expected)
    with pytest.raises(ValueError, match="style"):
        write_ade20k(tmp_path, 1, style="photo")
    with pytest.raises(ValueError, match="multiple of 64"):
        write_ade20k(tmp_path, 1, size=100, style="pretext")
    with pytest.raises(ValueError, match="splits"):
        write_ade20k(tmp_path, 1, size=64, split="extra", style="pretext")


def test_corrupt_png_is_named(tmp_path):
    make_pair(tmp_path, "a", np.ones((4, 4), np.uint8))
    png = tmp_path / "annotations" / "validation" / "a.png"
    png.write_bytes(png.read_bytes()[:30])
    with pytest.raises(DatasetError, match="a.png: cannot decode label PNG"):
        ADE20KSegmentation(tmp_path, "validation")[0]


def test_colour_png_size_mismatch_and_bad_values_are_named(tmp_path):
    make_pair(tmp_path, "a", np.ones((4, 4), np.uint8), image_size=(4, 5))
    with pytest.raises(DatasetError, match="a.png: label map is 4x4 but a.jpg is 4x5"):
        ADE20KSegmentation(tmp_path, "validation")[0]
    make_pair(tmp_path, "a", np.full((4, 4), 200, np.uint8))
    with pytest.raises(DatasetError, match="a.png: label value 199 outside 0..149"):
        ADE20KSegmentation(tmp_path, "validation")[0]
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "annotations" / "validation" / "a.png")
    with pytest.raises(DatasetError, match="must be single-channel"):
        ADE20KSegmentation(tmp_path, "validation")[0]


def test_missing_folders_and_annotations_are_named(tmp_path):
    with pytest.raises(DatasetError, match=r"images[/\\]training: folder not found"):
        ADE20KSegmentation(tmp_path, "training")
    make_pair(tmp_path, "a", np.ones((4, 4), np.uint8))
    (tmp_path / "images" / "validation" / "b.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="b.png: annotation missing for image b.jpg"):
        ADE20KSegmentation(tmp_path, "validation")
    Image.fromarray(np.ones((4, 4), np.uint8)).save(tmp_path / "annotations" / "validation" / "b.png")
    with pytest.raises(DatasetError, match="b.jpg: cannot decode image"):
        ADE20KSegmentation(tmp_path, "validation")[1]
    with pytest.raises(ValueError, match="split"):
        ADE20KSegmentation(tmp_path, "test")
