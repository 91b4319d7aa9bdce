"""Synthetic images written in a config's own dataset layout, at its real image sizes, for ``monatune smoke``.

:func:`write_layout` fills a temporary folder so the config's own data module (same reader, same
transforms) reads it: VOCdevkit XML, COCO JSON, ADE20K PNG labels, DOTA label files, classification
lists. Images are the procedural scenes of :mod:`monatune.data.synthetic_scenes` (rotated rectangles
of :mod:`monatune.data.synthetic_rotated` for DOTA/STAR), labelled with the config's own class names.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from xml.etree import ElementTree as ET

import numpy as np
from PIL import Image

from monatune.data.synthetic_scenes import SYNTHETIC_CLASSES, generate_scene, write_ade20k, write_coco, write_voc
from monatune.engine.config import ExperimentConfig

# Real image sizes (height, width) where the reader's files are not resized to one size by the config
# itself: a VOC image the size of the training resize (1000 x 600), a COCO image at the test scale
# (1333 x 800), an ADE20K image with a 512 short side (the crop and the test scale's short side).
VOC_IMAGE = (600, 1000)
COCO_IMAGE = (800, 1333)
ADE20K_IMAGE = (512, 683)


@dataclass
class Layout:
    """What was written: ``data`` overrides for ``cfg.data`` (``root``, maybe ``dataset``/``options``),
    ``notes`` for the user (what differs from the real dataset), and the image size per split."""

    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    image_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


def _scene_image(height: int, width: int, split: str, index: int) -> np.ndarray:
    rng = np.random.default_rng([0, zlib.crc32(split.encode()), index])
    return generate_scene(rng, height, width).image


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


CLASSIFICATION_LAYOUTS = ("imagefolder", "voc07_cls", "oxford_pets", "flowers102", "digits")


def _classification(cfg: ExperimentConfig, root: Path, counts: dict[str, int]) -> Layout:
    d = cfg.data
    size = max(d.resize_size, d.image_size)
    notes: list[str] = []
    dataset = d.dataset
    if dataset not in CLASSIFICATION_LAYOUTS:
        raise ValueError(f"data.dataset: no synthetic layout for {dataset!r}; valid: {', '.join(CLASSIFICATION_LAYOUTS)}")
    if dataset == "digits":
        return Layout({}, ["digits ships with scikit-learn: its own 8x8 images, upscaled to data.image_size"])
    if dataset == "flowers102":
        # torchvision's Flowers102 checks the MD5 of the real .mat files: they cannot be written here.
        notes.append("flowers102 read as an imagefolder (torchvision checks the real .mat files' MD5)")
        dataset = "imagefolder"
    num_classes = cfg.model.num_classes
    for split, n in counts.items():
        paths = []
        for i in range(n):
            label = i % num_classes
            if dataset == "imagefolder":
                rel = Path(split) / f"class_{label:04d}" / f"{i:06d}.jpg"
            elif dataset == "oxford_pets":
                rel = Path("oxford-iiit-pet/images") / f"Breed{label:03d}_{split}{i}.jpg"
            else:  # voc07_cls
                rel = Path("JPEGImages") / f"{split}_{i:06d}.jpg"
            _save(_scene_image(size, size, split, i), root / rel)
            paths.append((rel, label))
        if dataset == "oxford_pets":
            pet_split = {"train": "trainval", "val": "test"}.get(split, split)
            lines = [f"{rel.stem} {label + 1} 1 1\n" for rel, label in paths]
            (root / "oxford-iiit-pet/annotations").mkdir(parents=True, exist_ok=True)
            (root / "oxford-iiit-pet/annotations" / f"{pet_split}.txt").write_text("".join(lines))
        elif dataset == "voc07_cls":
            (root / f"{split}.txt").write_text("".join(f"{rel} {label}\n" for rel, label in paths))
    data: dict[str, Any] = {"root": str(root), "dataset": dataset}
    return Layout(data, notes, {split: (size, size) for split in counts})


def _rename_voc_classes(devkit: Path, year: str, class_names: tuple[str, ...]) -> None:
    """The scenes' shape names -> the config's class names (the VOC reader refuses unknown names)."""
    for xml in (devkit / f"VOC{year}" / "Annotations").glob("*.xml"):
        tree = ET.parse(xml)
        for node in tree.iter("name"):
            if node.text in SYNTHETIC_CLASSES:  # another image set of the same year was renamed already
                node.text = class_names[SYNTHETIC_CLASSES.index(node.text) % len(class_names)]
        tree.write(xml)


def _detection(cfg: ExperimentConfig, root: Path, counts: dict[str, int]) -> Layout:
    from monatune.data.voc import VOC_CLASSES, voc_image_sets

    for split, n in counts.items():
        for year, image_set in voc_image_sets(split):
            write_voc(root, n, VOC_IMAGE, seed=0, image_set=image_set, year=year)
            _rename_voc_classes(root / "VOCdevkit", year, VOC_CLASSES)
    return Layout({"root": str(root / "VOCdevkit")}, [], {split: VOC_IMAGE for split in counts})


def _instance_segmentation(cfg: ExperimentConfig, root: Path, counts: dict[str, int]) -> Layout:
    for split, n in counts.items():
        write_coco(root, n, COCO_IMAGE, seed=0, split=split)
    notes = [f"COCO layout with {len(SYNTHETIC_CLASSES)} categories (labels 1-{len(SYNTHETIC_CLASSES)} of {cfg.model.num_classes})"]
    return Layout({"root": str(root)}, notes, {split: COCO_IMAGE for split in counts})


def _semantic_segmentation(cfg: ExperimentConfig, root: Path, counts: dict[str, int]) -> Layout:
    for split, n in counts.items():
        write_ade20k(root, n, ADE20K_IMAGE, seed=0, split=split)
    return Layout({"root": str(root)}, [], {split: ADE20K_IMAGE for split in counts})


def _oriented(cfg: ExperimentConfig, root: Path, counts: dict[str, int]) -> Layout:
    from monatune.data.dota import dota_class_names, split_names
    from monatune.data.synthetic_rotated import write_synthetic_dota

    size = int(cfg.data.options.get("patch_size") or cfg.data.image_size)
    classes = dota_class_names(cfg.data.dataset, cfg.model.num_classes, cfg.data.options.get("classes"))[:6]  # the synthetic writer draws up to 6 classes
    per_folder: dict[str, int] = {}  # a folder in two splits (train+val and val) is written once
    for split, n in counts.items():
        for name in split_names(split):
            per_folder[name] = max(n, per_folder.get(name, 0))
    sizes = {}
    for index, (name, n) in enumerate(per_folder.items()):
        write_synthetic_dota(root / name, n, size, seed=index, classes=classes)
        sizes[name] = (size, size)
    return Layout({"root": str(root)}, [f"{size}x{size} images: one {size} patch each"], sizes)


WRITERS: dict[str, Callable[[ExperimentConfig, Path, dict[str, int]], Layout]] = {
    "classification": _classification,
    "detection": _detection,
    "instance_segmentation": _instance_segmentation,
    "semantic_segmentation": _semantic_segmentation,
    "oriented": _oriented,
}

# Datasets the task's data module writes itself (under data.root, with options.num_*_images).
SELF_WRITING = ("synthetic_voc", "synthetic_coco", "synthetic_ade20k", "synthetic_dota")


def write_layout(cfg: ExperimentConfig, root: str | Path, num_train: int, num_eval: int) -> Layout:
    """Write ``num_train`` training and ``num_eval`` evaluation images of ``cfg``'s dataset under ``root``.

    Splits: ``data.train_split``, ``data.val_split`` and ``data.test_split`` (each part of a joined
    split such as ``2007/trainval+2012/trainval`` or ``train+val`` gets the images). Synthetic
    datasets are left to their data module (only the image counts are returned as options)."""
    root = Path(root)
    d = cfg.data
    if d.dataset in SELF_WRITING:
        options = {**d.options, "num_train_images": num_train, "num_val_images": num_eval}
        return Layout({"root": str(root), "options": options}, [f"{d.dataset}: written by its data module"])
    counts = {d.train_split: num_train, d.val_split: num_eval}
    if d.test_split and d.test_split not in counts:
        counts[d.test_split] = num_eval
    return WRITERS[cfg.task](cfg, root, counts)
