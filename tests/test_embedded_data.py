"""Offline data of the embedded backbone: the procedural pretraining images and sklearn's digits."""

import numpy as np
import pytest
import torch

from monatune.data.digits import DIGIT_CLASSES, NUM_DIGITS, Digits, digits_split
from monatune.data.synthetic_images import CLASS_NAMES, MEAN, NUM_CLASSES, STD, SyntheticShapes, normalize, render_synthetic


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    return render_synthetic(range(480), seed=0)


def test_synthetic_shapes_ranges_and_classes(batch):
    images, labels = batch
    assert images.shape == (480, 64, 64, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and set(labels.tolist()) == set(range(NUM_CLASSES)) and NUM_CLASSES == len(CLASS_NAMES) == 24
    assert images.min() == 0 and images.max() == 255


def test_documented_statistics_standardise_the_images(batch):
    x = normalize(batch[0][:256])
    assert x.shape == (256, 3, 64, 64) and x.dtype == torch.float32
    assert x.mean((0, 2, 3)).abs().max() < 0.05
    assert (x.std((0, 2, 3)) - 1).abs().max() < 0.05
    assert len(MEAN) == len(STD) == 3


def test_synthetic_image_depends_only_on_seed_split_and_index(batch):
    images, labels = batch
    alone, label = render_synthetic([7], seed=0)
    assert np.array_equal(alone[0], images[7]) and label[0] == labels[7]
    again, _ = render_synthetic([7, 3], seed=0)
    assert np.array_equal(again, images[[7, 3]])
    assert not np.array_equal(render_synthetic([7], seed=1)[0][0], images[7])
    assert not np.array_equal(render_synthetic([7], seed=0, split="val")[0][0], images[7])
    with pytest.raises(ValueError):
        render_synthetic([0], split="nope")


def test_masks_mark_the_drawn_objects(batch):
    images, labels = batch
    again, labels_again, masks = render_synthetic(range(480), seed=0, with_masks=True)
    assert np.array_equal(again, images) and np.array_equal(labels_again, labels)  # masks change nothing
    assert masks.shape == (480, 64, 64) and masks.dtype == np.uint8
    grey = images.mean(-1)
    for image, label, mask in zip(grey, labels, masks):
        shape_value = label // 4 + 1  # shape id + 1; every image shows at least one object
        assert set(np.unique(mask).tolist()) == {0, shape_value}
        # objects and background contrast by construction: the mask sits on the drawn objects
        assert abs(image[mask > 0].mean() - image[mask == 0].mean()) > 40
    empty = render_synthetic([], with_masks=True)
    assert [a.shape[0] for a in empty] == [0, 0, 0]


def test_synthetic_dataset_items_equal_its_batches():
    ds = SyntheticShapes(10, seed=0, split="val")
    x, y = ds.get_batch([2, 5])
    assert x.shape == (2, 3, 64, 64) and y.dtype == torch.int64
    item, label = ds[5]
    assert torch.equal(item, x[1]) and label == int(y[1])
    assert len(ds) == 10 and ds.classes == CLASS_NAMES
    with pytest.raises(IndexError):
        ds[10]


def test_digits_split_is_stratified_disjoint_complete_and_seeded():
    train, val = digits_split(seed=0)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == NUM_DIGITS
    labels = np.concatenate([Digits("train").labels.numpy(), Digits("val").labels.numpy()])
    all_labels = Digits("all").labels.numpy()
    per_class = np.bincount(all_labels, minlength=10)
    val_per_class = np.bincount(Digits("val").labels.numpy(), minlength=10)
    assert np.all(np.abs(val_per_class - 0.2 * per_class) <= 1)
    assert np.array_equal(np.sort(labels), np.sort(all_labels))
    assert np.array_equal(digits_split(seed=0)[1], val)
    assert not np.array_equal(digits_split(seed=1)[1], val)


def test_digits_items_are_upsampled_grey_standardised_like_pretraining():
    ds = Digits("val")
    image, label = ds[0]
    assert image.shape == (3, 64, 64) and 0 <= label <= 9 and ds.classes == DIGIT_CLASSES
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    paper, ink = (0 - MEAN[0]) / STD[0], (1 - MEAN[0]) / STD[0]
    assert image.min() >= paper - 1e-5 and image.max() <= ink + 1e-5
    assert image[0, 0, 0] == pytest.approx(paper)  # the corner of an 8x8 digit scan is blank
    x, y = ds.tensors()
    assert x.shape == (len(ds), 3, 64, 64) and torch.equal(x[0], image) and y[0] == label


def test_digits_augmentation_moves_ink_but_keeps_paper_and_shape():
    plain, augmented = Digits("train"), Digits("train", augment=True)
    torch.manual_seed(0)
    image, label = augmented[0]
    reference, same_label = plain[0]
    assert image.shape == reference.shape and label == same_label
    assert not torch.allclose(image, reference)
    paper = (0 - MEAN[0]) / STD[0]
    assert image[0, 0, 0] == pytest.approx(paper, abs=1e-5)
    assert image.min() >= paper - 1e-4
