"""Every data family checks its files before training (one helper, the classification contract):
unreadable images or annotations skipped with one warning naming them, an error under ``data.strict``,
nothing checked with ``verify_images: false``; the result kept so a second check (another DDP process)
decodes nothing. ``data.options`` keys are checked per family; too few ``num_classes`` is refused."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from lightning.pytorch.trainer.states import TrainerFn
from PIL import Image

from monatune.data.verify import CorruptImageError
from monatune.data.voc import VOCDetection
from monatune.engine.config import load_config, parse_config
from monatune.engine.datamodule import CHECK_FOLDER
from monatune.engine.run import task_builders

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = {
    "detection": ("synthetic_voc", "trainval", "test", 5),
    "instance_segmentation": ("synthetic_coco", "train", "val", 5),
    "semantic_segmentation": ("synthetic_ade20k", "training", "validation", 6),
    "oriented": ("synthetic_dota", "train", "val", 3),
}


def config(tmp_path: Path, task: str, **data):
    dataset, train, val, num_classes = SYNTHETIC[task]
    options = {"num_train_images": 4, "num_val_images": 2}
    return parse_config(
        {
            "task": task,
            "model": {"backbone": "swin_nano_synthetic", "num_classes": num_classes},
            "data": {"dataset": dataset, "root": str(tmp_path / "data"), "train_split": train, "val_split": val,
                     "image_size": 64, "num_workers": 0, "options": options, **data},
            "trainer": {"out_dir": str(tmp_path / "run"), "accelerator": "cpu"},
        }
    )  # fmt: skip


def corrupt(task: str, root: Path) -> list[Path]:
    """Break one training image and one training annotation of the synthetic layout; the broken files."""
    if task == "detection":
        year = root / "VOCdevkit" / "VOC2007"
        image, annotation = sorted((year / "JPEGImages").glob("trainval_*.jpg"))[0], sorted((year / "Annotations").glob("trainval_*.xml"))[1]
        annotation.write_text("<annotation><size><width>64</width>")  # malformed XML
    elif task == "instance_segmentation":  # the JSON is checked when read; its images are decoded
        image, annotation = sorted((root / "train").glob("*.jpg"))[0], None
    elif task == "semantic_segmentation":
        image, annotation = sorted((root / "images" / "training").glob("*.jpg"))[0], sorted((root / "annotations" / "training").glob("*.png"))[1]
        annotation.write_bytes(annotation.read_bytes()[:40])  # truncated PNG
    else:
        image, annotation = sorted((root / "train" / "images").glob("*.png"))[0], sorted((root / "train" / "labelTxt").glob("*.txt"))[1]
        annotation.write_text("1 2 3 4 5 6 7 8\n")  # no class name
    image.write_bytes(image.read_bytes()[:60])  # truncated image
    return [p for p in (image, annotation) if p is not None]


@pytest.mark.parametrize("task", list(SYNTHETIC))
def test_unreadable_files_are_skipped_with_one_warning_or_refused_when_strict(tmp_path, task):
    cfg = config(tmp_path, task)
    data = task_builders(task)[1](cfg)
    data.prepare_data()
    broken = corrupt(task, tmp_path / "data")
    with pytest.warns(UserWarning) as record:
        data.setup("fit")
    messages = [str(w.message) for w in record if "unreadable" in str(w.message)]
    assert len(messages) == 1 and f"skipping {len(broken)} of 4" in messages[0]
    assert all(str(path) in messages[0] for path in broken)
    assert len(data.train_set) == 4 - len(broken)
    data.train_set[0]  # what is left reads

    strict = task_builders(task)[1](config(tmp_path / "strict", task, strict=True, root=str(tmp_path / "data")))
    with pytest.raises(CorruptImageError, match=str(broken[0])):
        strict.setup("fit")

    unchecked = task_builders(task)[1](config(tmp_path / "off", task, verify_images=False, root=str(tmp_path / "data")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unchecked.setup("fit")
    assert len(unchecked.train_set) == 4  # nothing decoded up front: the bad files fail when read


def test_checked_once_per_machine_and_read_back_by_the_other_processes(tmp_path, monkeypatch):
    cfg = config(tmp_path, "detection")
    first = task_builders("detection")[1](cfg)
    first.trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING))  # as Lightning attaches it
    first.prepare_data()  # writes the data, then builds and checks the fit datasets
    assert len(list((tmp_path / "run" / CHECK_FOLDER).glob("*.json"))) == 2  # train and val
    prepared = first._prepared[("trainval", True)]
    first.setup("fit")
    assert first.train_set is prepared  # not built (nor checked) twice in this process

    broken = corrupt("detection", tmp_path / "data")  # new files: the kept results no longer apply
    data = task_builders("detection")[1](cfg)
    with pytest.warns(UserWarning, match="skipping 2 of 4"):
        data.setup("fit")

    def no_decoding(self, index):
        raise AssertionError("decoded again")

    monkeypatch.setattr(VOCDetection, "check_sample", no_decoding)
    other_rank = task_builders("detection")[1](cfg)
    with pytest.warns(UserWarning, match="skipping 2 of 4") as record:
        other_rank.setup("fit")  # the same files: the result is read back, nothing decoded
    assert all(str(path) in str(record[0].message) for path in broken)
    assert len(other_rank.train_set) == 2


@pytest.mark.parametrize("task", [*SYNTHETIC, "classification"])
def test_unknown_data_option_is_refused_naming_it_and_the_valid_ones(tmp_path, task):
    cfg = config(tmp_path, task) if task != "classification" else parse_config(
        {"task": task, "model": {"backbone": "tiny", "num_classes": 2}, "data": {"root": str(tmp_path)}}
    )
    cfg.data.options["flip_prb"] = 0.5
    with pytest.raises(ValueError, match=r"data\.options\.flip_prb: not an option of dataset .*; valid: ") as info:
        task_builders(task)[1](cfg)
    assert "\n" not in str(info.value)
    if task != "classification":
        assert "flip_prob" in str(info.value) and "num_train_images" in str(info.value)


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_builds_its_data_module(path):
    cfg = load_config(path)
    task_builders(cfg.task)[1](cfg)  # options checked here; no file is read


def write_image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def test_more_class_folders_than_num_classes_is_refused_before_training(tmp_path):
    for split in ("train", "val"):
        for name in ("ant", "bee", "cat"):
            write_image(tmp_path / split / name / "0.png", 10)
    cfg = parse_config(
        {"task": "classification", "model": {"backbone": "tiny", "num_classes": 2},
         "data": {"dataset": "imagefolder", "root": str(tmp_path), "image_size": 8, "resize_size": 8, "num_workers": 0},
         "trainer": {"out_dir": str(tmp_path / "run")}}
    )  # fmt: skip
    data = task_builders("classification")[1](cfg)
    with pytest.raises(ValueError, match="3 classes but model.num_classes is 2"):
        data.setup("fit")
