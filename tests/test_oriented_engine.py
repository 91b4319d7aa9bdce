"""Oriented detection through the engine: synthetic rotated shapes written as DOTA folders, cut into
overlapping patches, read by the DOTA reader, trained a few steps by the Lightning trainer; patch
detections merged per image and scored by the DOTA evaluator; Task1 files written by ``test``."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from monatune.data.synthetic_rotated import SYNTHETIC_DOTA_CLASSES, write_synthetic_dota
from monatune.engine.config import load_config
from monatune.engine.run import task_builders
from monatune.engine.trainer import build_trainer
from monatune.tasks.oriented import evaluate_dota, polygons_to_boxes, read_task1_submission
from monatune.tasks.oriented.module import OrientedModule
from monatune.tasks.oriented.patches import parse_patch_name

from engine_helpers import fit_checking_only_mona_and_heads_train, tiny_task_config

REPO = Path(__file__).resolve().parents[1]
HEADS = {
    "rotated_retinanet": {"fpn_channels": 32, "head_channels": 32, "stacked_convs": 1, "nms_pre": 100, "max_per_image": 50},
    "oriented_rcnn": {"fpn_channels": 32, "fc_channels": 64, "roi_samples": 64, "max_per_image": 50,
                      "rpn_options": {"scales": [4.0], "nms_pre": 300, "max_proposals": 100}},
    "h2rbox_v2": {"fpn_channels": 32, "head_channels": 32, "stacked_convs": 1, "nms_pre": 100, "max_per_image": 50},
}  # fmt: skip


def tiny_config(tmp_path: Path, head: str = "rotated_retinanet", method: str = "mona", dataset: str = "synthetic_dota", **trainer):
    """96-px synthetic images cut into 64-px patches with overlap 32 (four per image)."""
    data = {"dataset": dataset, "root": str(tmp_path / "data"), "train_split": "train", "val_split": "val",
            "test_split": "val", "image_size": 64,
            "options": {"num_train_images": 4, "num_val_images": 2, "seed": 0, "synthetic_image_size": 96,
                        "patch_size": 64, "overlap": 32, "classes": list(SYNTHETIC_DOTA_CLASSES)}}  # fmt: skip
    return tiny_task_config(tmp_path, "oriented", head, HEADS[head], 3, method, data, **trainer)


@pytest.mark.parametrize("head", list(HEADS))
def test_a_short_fit_trains_the_method_and_heads_and_logs_a_finite_map(tmp_path, head):
    trainer = fit_checking_only_mona_and_heads_train(tiny_config(tmp_path, head, limit_train_batches=2))
    assert trainer.global_step == 2
    assert math.isfinite(float(trainer.callback_metrics["val/map"]))
    # the split wrote four overlapping patches per image, named as the DOTA devkit names them
    patches = sorted(p.stem for p in (tmp_path / "data" / "patches_64_32" / "val" / "images").iterdir())
    assert len(patches) == 8 and {parse_patch_name(p)[1:] for p in patches} == {(0, 0), (32, 0), (0, 32), (32, 32)}


def test_adapter_holds_the_method_and_every_trained_head_tensor_and_loads_back(tmp_path):
    from monatune.adapter_io import load_adapter, save_adapter
    from monatune.tasks.oriented.module import build_oriented

    cfg = tiny_config(tmp_path, "h2rbox_v2", method="lora")
    model = build_oriented(cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("level_scales.")} == {f"level_scales.{i}" for i in range(5)}
    with torch.no_grad():
        for name in trainable:
            model.get_parameter(name).add_(0.5)
    path = save_adapter(model, tmp_path / "h2rbox_lora.safetensors")
    fresh = build_oriented(cfg)
    load_adapter(fresh, path)
    for name in trainable:
        assert torch.equal(fresh.get_parameter(name), model.get_parameter(name)), name


class Oracle(nn.Module):
    """Stands in for a detector at eval: for each patch, every object of its whole image shifted into the
    patch's coordinates (so the merge must shift back and remove the duplicates the overlaps make)."""

    def __init__(self, answers: dict[bytes, dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.answers = answers
        self.max_per_image = 100
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, images):
        return [self.answers[image.numpy().tobytes()] for image in images]


def oracle_for(data, split: str) -> Oracle:
    annotations = data.eval_reference("validate").annotations
    answers = {}
    for image, target in data.make_dataset(split, train=False):
        image_id, x0, y0 = parse_patch_name(target["image_id"])
        gt = annotations[image_id]
        polygons = torch.as_tensor(gt["polygons"]).double() - torch.tensor([x0, y0] * 4, dtype=torch.float64)
        boxes = polygons_to_boxes(polygons, "le90").float()
        scores = torch.linspace(1.0, 0.5, len(boxes))
        answers[image.numpy().tobytes()] = {"boxes": boxes, "scores": scores, "labels": torch.as_tensor(gt["labels"])}
    return Oracle(answers)


def test_ground_truth_on_every_patch_scores_100_after_merging_and_test_writes_task1(tmp_path):
    cfg = tiny_config(tmp_path)
    data = task_builders("oriented")[1](cfg)
    data.prepare_data()
    data.setup("validate")
    module = OrientedModule(oracle_for(data, "val"), cfg, SYNTHETIC_DOTA_CLASSES)
    trainer = build_trainer(cfg, checkpoints=False, logging=False)
    assert trainer.validate(module, datamodule=data, verbose=False)[0]["val/map"] == pytest.approx(100.0)
    assert module.last_eval is not None and set(module.last_eval.num_ground_truth) == set(SYNTHETIC_DOTA_CLASSES)

    metrics = trainer.test(module, datamodule=data, verbose=False)[0]
    assert metrics["test/map"] == pytest.approx(100.0)
    task1 = tmp_path / "run" / "task1"
    assert sorted(p.name for p in task1.iterdir()) == sorted(f"Task1_{c}.txt" for c in SYNTHETIC_DOTA_CLASSES)
    submitted = read_task1_submission(task1, SYNTHETIC_DOTA_CLASSES)
    annotations = data.eval_reference("test").annotations
    assert set(submitted) == set(annotations)  # original image ids, not patch ids
    for image_id, gt in annotations.items():  # duplicates from the overlaps were merged away
        assert len(submitted[image_id]["scores"]) == len(gt["labels"])
    assert evaluate_dota(submitted, annotations, SYNTHETIC_DOTA_CLASSES).mean_ap == pytest.approx(1.0)


def test_an_unlabelled_test_split_writes_task1_and_logs_no_map(tmp_path):
    # a DOTA-style folder: labelled val images, and a test split of images only (the same pixels)
    write_synthetic_dota(tmp_path / "data" / "val", num_images=2, image_size=96, seed=3)
    shutil.copytree(tmp_path / "data" / "val" / "images", tmp_path / "data" / "test" / "images")
    cfg = tiny_config(tmp_path, dataset="dota")
    cfg.data.train_split, cfg.data.test_split = "val", "test"
    data = task_builders("oriented")[1](cfg)
    data.prepare_data()
    data.setup("test")
    assert data.eval_reference("test").annotations is None
    module = OrientedModule(oracle_for(data, "val"), cfg, SYNTHETIC_DOTA_CLASSES)
    metrics = build_trainer(cfg, checkpoints=False, logging=False).test(module, datamodule=data, verbose=False)[0]
    assert "test/map" not in metrics
    submitted = read_task1_submission(tmp_path / "run" / "task1", SYNTHETIC_DOTA_CLASSES)
    assert sorted(submitted) == ["S0000", "S0001"] and all(len(v["scores"]) for v in submitted.values())


def test_data_is_written_and_split_once_and_again_when_the_source_changes(tmp_path):
    cfg = tiny_config(tmp_path)
    patches = tmp_path / "data" / "patches_64_32" / "val" / "images"
    task_builders("oriented")[1](cfg).prepare_data()
    first = {p.name: p.stat().st_mtime_ns for p in patches.iterdir()}
    task_builders("oriented")[1](cfg).prepare_data()
    assert {p.name: p.stat().st_mtime_ns for p in patches.iterdir()} == first  # stamps match: nothing redone
    cfg.data.options["num_val_images"] = 1
    task_builders("oriented")[1](cfg).prepare_data()
    assert sorted(p.name for p in (tmp_path / "data" / "val" / "images").iterdir()) == ["S0000.png"]
    assert sorted(p.stem for p in patches.iterdir()) == sorted(n[:-4] for n in first if n.startswith("S0000"))


def test_class_list_must_match_num_classes(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.model.num_classes = 5
    with pytest.raises(ValueError, match="num_classes is 5"):
        task_builders("oriented")[1](cfg)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("**/oriented*/**/*.yaml")) + sorted((REPO / "configs" / "small").glob("oriented_*.yaml")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_oriented_config_loads_and_names_a_detector_and_dataset(path):
    from monatune.tasks.oriented import DETECTORS
    from monatune.tasks.oriented.datamodule import DATASETS, oriented_class_names

    cfg = load_config(path)
    assert cfg.task == "oriented" and cfg.model.head in DETECTORS and cfg.data.dataset in DATASETS
    assert len(oriented_class_names(cfg)) == cfg.model.num_classes
    assert np.isfinite(cfg.optim.lr)


def test_quick_oriented_demo_writes_its_outputs(tmp_path, monkeypatch):
    from monatune.adapter_io import read_adapter
    from monatune.demo import oriented
    from monatune.demo.runner import run_demo

    # the demo's own recipe, made smaller still so the test stays short
    monkeypatch.setitem(oriented.QUICK, "num_train_images", 4)
    monkeypatch.setitem(oriented.QUICK, "num_val_images", 2)
    monkeypatch.setitem(oriented.QUICK, "epochs", 1)
    payload = run_demo(oriented.DEMO, ["mona"], tmp_path, quick=True)
    row = payload["results"][0]
    assert row["method"] == "mona" and math.isfinite(row["metric"]) and 0 < row["trainable_percent"] < 100
    assert (tmp_path / "loss_curves.png").stat().st_size > 0 and (tmp_path / "results.json").is_file()
    assert (tmp_path / "data" / "synthetic_dota" / "patches_128_64" / "train" / "images").is_dir()
    assert read_adapter(tmp_path / "mona.safetensors")[1]["method"] == "mona"
