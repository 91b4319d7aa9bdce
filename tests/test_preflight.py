"""``check_data_exists``: a missing dataset is one line in the main process, before any Trainer or DDP."""

from __future__ import annotations

import pytest

from monatune.engine.config import ConfigError, parse_config
from monatune.engine.preflight import check_before_run, check_data_exists, splits_for


def cfg_for(task: str, dataset: str, root, **data) -> object:
    return parse_config({"task": task, "trainer": {"accelerator": "cpu"}, "data": {"dataset": dataset, "root": str(root), **data}})


def touch(root, *paths: str) -> None:
    for path in paths:
        target = root / path
        if path.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("")


COCO = {"train_split": "train2017", "val_split": "val2017"}
VOC = {"train_split": "2007/trainval+2012/trainval", "val_split": "2007/test"}
ADE = {"train_split": "training", "val_split": "validation"}
DOTA = {"train_split": "train+val", "val_split": "val", "test_split": "test"}


@pytest.mark.parametrize(
    "task, dataset, data, layout, missing",
    [
        ("classification", "imagefolder", {}, ["train/", "val/"], "val"),
        ("classification", "voc07_cls", {}, ["train.txt", "val.txt"], "val.txt"),
        ("classification", "flowers102", {}, ["flowers-102/jpg/", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"], "flowers-102/setid.mat"),
        ("classification", "oxford_pets", {}, ["oxford-iiit-pet/images/", "oxford-iiit-pet/annotations/"], "oxford-iiit-pet/annotations"),
        ("instance_segmentation", "coco", COCO, ["train2017/", "val2017/", "annotations/instances_train2017.json",
                                                 "annotations/instances_val2017.json"], "annotations/instances_val2017.json"),
        ("detection", "voc", VOC, [f"VOC{y}/{d}/" for y in (2007, 2012) for d in ("JPEGImages", "Annotations")]
         + ["VOC2007/ImageSets/Main/trainval.txt", "VOC2012/ImageSets/Main/trainval.txt", "VOC2007/ImageSets/Main/test.txt"],
         "VOC2012/ImageSets/Main/trainval.txt"),
        ("semantic_segmentation", "ade20k", ADE, ["images/training/", "annotations/training/", "images/validation/",
                                                  "annotations/validation/"], "annotations/training"),
        ("oriented", "dota", {**DOTA, "options": {"patch_size": 1024}}, ["train/images/", "val/images/", "test/images/"], "test/images"),
    ],
)
def test_each_layout_passes_when_complete_and_names_the_first_missing_path(tmp_path, task, dataset, data, layout, missing):
    touch(tmp_path, *layout)
    cfg = cfg_for(task, dataset, tmp_path, **data)
    check_data_exists(cfg, "fit")
    target = tmp_path / missing
    target.rmdir() if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError) as info:
        check_data_exists(cfg, "fit")
    message = str(info.value)
    assert message.startswith(f"{target} not found: ") and f"dataset {dataset!r}" in message and "\n" not in message


def test_a_missing_root_is_named_before_any_split(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"data.root: {tmp_path / 'nowhere'} is not a folder \(dataset 'coco'\)"):
        check_before_run(cfg_for("instance_segmentation", "coco", tmp_path / "nowhere", **COCO), "fit")
    with pytest.raises(ConfigError, match="data.root: dataset 'voc' needs the folder"):
        check_data_exists(parse_config({"task": "detection", "data": {"dataset": "voc"}}), "validate")


def test_only_the_splits_the_command_reads_are_needed(tmp_path):
    touch(tmp_path, "val2017/", "annotations/instances_val2017.json")  # an evaluation-only download
    cfg = cfg_for("instance_segmentation", "coco", tmp_path, **COCO)
    check_data_exists(cfg, "validate")
    check_data_exists(cfg, "test")  # no test_split: the val split
    with pytest.raises(FileNotFoundError, match="train2017"):
        check_data_exists(cfg, "fit")
    assert splits_for(cfg.data, "fit") == ["train2017", "val2017"]


def test_generated_datasets_need_nothing_beforehand(tmp_path):
    check_data_exists(cfg_for("detection", "synthetic_voc", tmp_path / "not_yet"), "fit")
    check_data_exists(parse_config({"data": {"dataset": "digits", "image_size": 64}}), "fit")
