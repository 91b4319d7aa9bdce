"""`monatune predict`: a trained model on plain image files, for every task family, consistent with
the engine's own evaluation where the two can be compared."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import monatune
from monatune.cli.main import main
from monatune.engine.predict import image_paths, predict
from monatune.engine.run import task_builders
from monatune.tasks.oriented.patches import crop_patch, patch_windows

from test_dense_engine import tiny_config as dense_config
from test_engine_cli import write_config
from test_oriented_engine import tiny_config as oriented_config


def test_image_paths_finds_images_recursively_and_names_what_is_missing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.png", "a/b/2.JPG", "a/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert image_paths([tmp_path / "a"]) == [tmp_path / "a/1.png", tmp_path / "a/b/2.JPG"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        image_paths([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        image_paths([tmp_path / "empty"])


def test_classification_predictions_score_like_validate(tmp_path, capsys):
    cfg = str(write_config(tmp_path, max_epochs=1))
    assert main(["fit", "--config", cfg]) == 0
    adapter = str(tmp_path / "run" / "adapter.safetensors")
    capsys.readouterr()
    assert main(["validate", "--config", cfg, "--adapter", adapter]) == 0
    out = capsys.readouterr().out
    top1 = json.loads(out[out.index("{") :])["metrics"]["val/top1"]

    assert main(["predict", str(tmp_path / "data" / "val"), "--config", cfg, "--adapter", adapter, "--out", str(tmp_path / "p"), "--topk", "2"]) == 0
    rows = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert len(rows) == 8
    for row in rows:
        assert [t["name"] for t in row["top"]] == [f"class{t['class']}" for t in row["top"]]  # the image folder's classes
        probs = [t["probability"] for t in row["top"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-5)
    # the folder's class index (class0, class1) against the predicted top-1: the validation accuracy
    correct = [row["top"][0]["class"] == int(row["image"].split("class")[-1][0]) for row in rows]
    assert 100 * sum(correct) / len(rows) == pytest.approx(top1, abs=1e-4)

    ckpt = str(tmp_path / "run" / "checkpoints" / "last.ckpt")  # the checkpoint predicts the same
    assert main(["predict", str(tmp_path / "data" / "val"), "--config", cfg, "--ckpt", ckpt, "--out", str(tmp_path / "c"), "--topk", "2"]) == 0
    assert json.loads((tmp_path / "c" / "predictions.json").read_text()) == rows

    names = tmp_path / "names.txt"
    names.write_text("cat\n")
    assert main(["predict", str(tmp_path / "data" / "val"), "--config", cfg, "--adapter", adapter, "--class-names", str(names)]) == 2
    assert "1 names for model.num_classes = 2" in capsys.readouterr().err


def _trained_files(cfg, tmp_path):
    """(eval-mode module with perturbed trainable tensors, its adapter file); writes the synthetic data."""
    build_module, build_data = task_builders(cfg.task)
    data = build_data(cfg)
    data.prepare_data()
    module = build_module(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.model.parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn_like(p))
    adapter = monatune.save_adapter(module.model, tmp_path / "adapter.safetensors")
    return module.eval(), adapter


def test_detection_boxes_are_in_image_pixels_and_filtered_by_score(tmp_path):
    cfg = dense_config(tmp_path, "detection")
    cfg.model.head_options["score_thresh"] = 0.0  # an untrained head scores ~0.01 (focal-loss prior)
    module, adapter = _trained_files(cfg, tmp_path)
    images = sorted((tmp_path / "synthetic_voc").rglob("*.jpg"))[:3]
    predict(cfg, images, tmp_path / "all", adapter=adapter)
    predict(cfg, images, tmp_path / "high", adapter=adapter, options={"score_threshold": 0.3})
    rows = json.loads((tmp_path / "all" / "predictions.json").read_text())
    high = json.loads((tmp_path / "high" / "predictions.json").read_text())
    assert [r["image"] for r in rows] == [str(p) for p in images]
    assert sum(len(r["scores"]) for r in rows) > 0
    for path, row, kept in zip(images, rows, high):
        width, height = Image.open(path).size
        boxes = np.array(row["boxes"]).reshape(-1, 4)
        assert (boxes[:, :2] >= -0.01).all() and (boxes[:, 2] <= width + 0.01).all() and (boxes[:, 3] <= height + 0.01).all()
        assert all(1 <= label <= cfg.model.num_classes for label in row["labels"])
        assert row["classes"] == [module.class_names[label - 1] for label in row["labels"]]
        assert kept["scores"] == [s for s in row["scores"] if s >= 0.3]
        # the same boxes the module gives for the image itself
        with torch.inference_mode():
            direct = module([torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255])[0]
        assert row["scores"] == pytest.approx(direct["scores"].tolist(), abs=1e-5)


def test_segmentation_label_maps_have_the_image_size_and_the_dataset_label_space(tmp_path):
    cfg = dense_config(tmp_path, "semantic_segmentation")
    _, adapter = _trained_files(cfg, tmp_path)
    images = sorted((tmp_path / "synthetic_ade20k" / "images" / "validation").glob("*.jpg"))
    written = predict(cfg, images, tmp_path / "out", adapter=adapter)
    assert [p.name for p in written] == [f"{p.stem}.png" for p in images]
    for image, mask in zip(images, written):
        labels = np.asarray(Image.open(mask))
        assert labels.shape == Image.open(image).size[::-1]
        assert labels.min() >= 1 and labels.max() <= cfg.model.num_classes  # ADE20K: model class k -> k + 1


def test_oriented_predictions_cover_whole_images_and_write_task1(tmp_path):
    cfg = oriented_config(tmp_path)
    cfg.model.head_options["score_threshold"] = 0.0  # an untrained head scores ~0.01
    module, adapter = _trained_files(cfg, tmp_path)
    images = sorted((tmp_path / "data" / "val" / "images").glob("*.png"))
    assert images and Image.open(images[0]).size == (96, 96)  # larger than the 64-px patches
    written = predict(cfg, images, tmp_path / "out", adapter=adapter)
    assert {p.name for p in written} == {f"Task1_{c}.txt" for c in module.class_names} | {"predictions.json"}
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert sorted(r["image"] for r in rows) == sorted(p.stem for p in images)
    # NMS keeps the best box: the best of the four patch outputs, shifted by its patch origin
    row = next(r for r in rows if r["image"] == images[0].stem)
    image = torch.from_numpy(np.asarray(Image.open(images[0]).convert("RGB"))).permute(2, 0, 1).float() / 255
    best = (-1.0, None)
    with torch.inference_mode():
        for x0, y0 in patch_windows(96, 96, 64, 32):
            out = module([crop_patch(image, x0, y0, 64)])[0]
            if len(out["scores"]) and float(out["scores"].max()) > best[0]:
                box = out["boxes"][out["scores"].argmax()].clone()
                box[:2] += torch.tensor([x0, y0])
                best = (float(out["scores"].max()), box)
    assert max(row["scores"]) == pytest.approx(best[0], abs=1e-6)
    assert row["boxes"][int(np.argmax(row["scores"]))] == pytest.approx(best[1].tolist(), abs=1e-4)
    assert len(patch_windows(96, 96, 64, 32)) == 4


def test_instance_masks_are_coco_rle_of_the_image_size(tmp_path):
    from faster_coco_eval.core import mask as mask_api

    cfg = dense_config(tmp_path, "instance_segmentation")
    cfg.model.head_options["score_thresh"] = 0.0  # an untrained head scores low
    _, adapter = _trained_files(cfg, tmp_path)
    images = sorted((tmp_path / "synthetic_coco").rglob("*.jpg"))[:2]
    predict(cfg, images, tmp_path / "out", adapter=adapter)
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert sum(len(r["masks"]) for r in rows) > 0
    for path, row in zip(images, rows):
        width, height = Image.open(path).size
        assert len(row["masks"]) == len(row["boxes"]) == len(row["scores"])
        for rle in row["masks"]:
            decoded = mask_api.decode({"size": rle["size"], "counts": rle["counts"].encode()})
            assert decoded.shape == (height, width) and set(np.unique(decoded)) <= {0, 1}


def test_unreadable_and_high_bit_depth_images_are_skipped_with_a_warning_and_ids_must_be_unique(tmp_path):
    from monatune.data.errors import DatasetError, read_rgb_image
    from monatune.engine.predict import image_ids, readable_images

    good = tmp_path / "a" / "good.png"
    good.parent.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    deep = tmp_path / "a" / "deep.png"
    Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).save(deep)  # 16-bit grey
    with pytest.raises(DatasetError, match="16-bit/32-bit image; convert it to 8-bit"):
        read_rgb_image(deep)
    with pytest.warns(UserWarning, match="skipping 2 unreadable image"):
        assert readable_images(image_paths([tmp_path / "a"])) == [good]
    (tmp_path / "b").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "b" / "good.jpg")
    with pytest.raises(ValueError, match="two images share the id 'good'"):
        image_ids(image_paths([tmp_path / "a", tmp_path / "b"]))
    # the output folder is never read back as input
    assert image_paths([tmp_path], exclude=tmp_path / "b") == image_paths([tmp_path / "a"])


def test_oriented_images_without_patches_keep_the_models_own_detections(tmp_path):
    cfg = oriented_config(tmp_path)
    cfg.model.head_options["score_threshold"] = 0.0
    module, adapter = _trained_files(cfg, tmp_path)
    cfg.data.options.pop("patch_size")  # whole images: no merge, so no extra NMS
    image = sorted((tmp_path / "data" / "val" / "images").glob("*.png"))[0]
    predict(cfg, [image], tmp_path / "out", adapter=adapter)
    (row,) = json.loads((tmp_path / "out" / "predictions.json").read_text())
    pixels = torch.from_numpy(np.asarray(Image.open(image).convert("RGB"))).permute(2, 0, 1).float() / 255
    with torch.inference_mode():
        direct = module([pixels])[0]
    assert row["scores"] == pytest.approx(direct["scores"].tolist(), abs=1e-6) and len(row["scores"]) > 0


def test_known_class_lists_name_classification_predictions(tmp_path):
    from monatune.engine.config import parse_config
    from monatune.tasks.classification.predict import known_class_names

    voc = parse_config({"model": {"num_classes": 20}, "data": {"dataset": "voc07_cls", "root": str(tmp_path)}})
    assert known_class_names(voc)[:3] == ["aeroplane", "bicycle", "bird"]
    for name in ("cats", "dogs"):
        (tmp_path / "train" / name).mkdir(parents=True)
    folder = parse_config({"model": {"num_classes": 2}, "data": {"dataset": "imagefolder", "root": str(tmp_path)}})
    assert known_class_names(folder) == ["cats", "dogs"]
    wrong = parse_config({"model": {"num_classes": 3}, "data": {"dataset": "imagefolder", "root": str(tmp_path)}})
    assert known_class_names(wrong) is None  # names that do not fit the head are not guessed
