"""Classification readers on tiny folders written here: layouts, corrupt images, missing roots."""

import numpy as np
import pytest
from PIL import Image

from monatune.data.classification import build_classification_dataset
from monatune.data.classification_transforms import eval_transform
from monatune.data.image_list import CorruptImageError


def write_image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 24, 3), value, dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    for split in ("train", "val"):
        for c, value in (("cat", 10), ("dog", 200)):
            for i in range(3):
                write_image(tmp_path / split / c / f"{i}.png", value)
    return tmp_path


def test_image_folder(folder):
    ds = build_classification_dataset("imagefolder", folder, "train", eval_transform(16, 18))
    assert ds.classes == ["cat", "dog"] and len(ds) == 6
    image, label = ds[5]
    assert image.shape == (3, 16, 16) and label == 1


def test_corrupt_image_skipped_with_warning_or_error_when_strict(folder):
    bad = folder / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    truncated = folder / "train" / "cat" / "cut.png"
    full = (folder / "train" / "cat" / "0.png").read_bytes()
    truncated.write_bytes(full[: len(full) // 2])
    with pytest.warns(UserWarning) as record:
        ds = build_classification_dataset("imagefolder", folder, "train", None)
    message = str(record[0].message)
    assert "broken.jpg" in message and "cut.png" in message and "skipping 2" in message
    assert len(ds) == 6
    with pytest.raises(CorruptImageError, match="broken.jpg"):
        build_classification_dataset("imagefolder", folder, "train", None, strict=True)


def test_missing_roots_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train")):
        build_classification_dataset("imagefolder", tmp_path, "train", None)
    with pytest.raises(FileNotFoundError, match="flowers-102"):
        build_classification_dataset("flowers102", tmp_path, "train", None)
    with pytest.raises(FileNotFoundError, match="oxford-iiit-pet"):
        build_classification_dataset("oxford_pets", tmp_path, "train", None)
    with pytest.raises(ValueError, match="imagefolder, flowers102"):
        build_classification_dataset("imagenet", tmp_path, "train", None)


def test_voc07_cls_list(tmp_path):
    write_image(tmp_path / "JPEGImages" / "a.jpg", 50)
    write_image(tmp_path / "JPEGImages" / "b.jpg", 90)
    (tmp_path / "trainval.txt").write_text("JPEGImages/a.jpg 3\nJPEGImages/b.jpg 19\n")
    ds = build_classification_dataset("voc07_cls", tmp_path, "trainval", None)
    assert [label for _, label in ds.samples] == [3, 19] and ds.classes[19] == "tvmonitor"
    (tmp_path / "test.txt").write_text("JPEGImages/a.jpg 3\nJPEGImages/b.jpg\n")
    with pytest.raises(ValueError, match=r"test.txt:2: expected 'path label'"):
        build_classification_dataset("voc07_cls", tmp_path, "test", None)
    (tmp_path / "test.txt").write_text("JPEGImages/a.jpg 20\n")
    with pytest.raises(ValueError, match=r"test.txt:1: label 20 outside 0..19"):
        build_classification_dataset("voc07_cls", tmp_path, "test", None)
    (tmp_path / "test.txt").write_text("JPEGImages/missing.jpg 1\n")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        build_classification_dataset("voc07_cls", tmp_path, "test", None)


def _digits_data(tmp_path, **options):
    from monatune.engine.config import parse_config
    from monatune.tasks.classification.data import ClassificationData

    cfg = parse_config(
        {
            "task": "classification",
            "model": {"backbone": "swin_nano_synthetic", "method": "mona", "num_classes": 10},
            "data": {"dataset": options.pop("dataset", "digits"), "image_size": 64, "options": options},
            "trainer": {"out_dir": str(tmp_path)},
        }
    )
    return ClassificationData(cfg)


def test_digits_num_train_images_takes_the_first_n_of_the_train_split_only(tmp_path):
    data = _digits_data(tmp_path, num_train_images=40)
    assert len(data.make_dataset("train", train=True)) == 40
    assert len(data.make_dataset("val", train=False)) == 360  # evaluation keeps its whole split
    assert len(_digits_data(tmp_path, num_train_images=None).make_dataset("train", train=True)) == 1437


@pytest.mark.parametrize(("options", "message"), [({"num_train_images": 0}, "positive integer"), ({"num_train_images": "40"}, "positive integer"),
                                                  ({"dataset": "imagefolder", "num_train_images": 8}, "only the 'digits' dataset")])  # fmt: skip
def test_num_train_images_refuses_bad_values_and_other_datasets(tmp_path, options, message):
    with pytest.raises(ValueError, match=f"data.options.num_train_images: .*{message}"):
        _digits_data(tmp_path, **options).make_dataset("train", train=True)
