"""Checks in the main process before a run starts, so that a wrong machine or a missing dataset is one
line before Lightning builds a Trainer or DDP starts more processes: the accelerator the config asks for
is on this machine, and the folders and annotation files the task reads exist. Paths only: nothing is
opened or parsed here (the data modules do that, and name what is wrong inside a file).

    check_before_run(cfg, "fit")   # ConfigError / FileNotFoundError naming the key or path and the fix
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from monatune.engine.config import ConfigError, DataConfig, ExperimentConfig, TrainerConfig

# datasets written by the data module itself (or shipped with a package): nothing to find beforehand
GENERATED_DATASETS = ("digits", "synthetic_voc", "synthetic_coco", "synthetic_ade20k", "synthetic_dota")
Need = tuple[Path, str]  # a path that must exist, and what it is (for the message)


def check_before_run(cfg: ExperimentConfig, command: str) -> None:
    """Everything below, for ``command`` (fit, validate or test)."""
    check_accelerator(cfg.trainer)
    check_data_exists(cfg, command)


def check_accelerator(t: TrainerConfig) -> None:
    """``trainer.accelerator`` gpu/cuda/mps needs that device here; ``trainer.devices`` (a count) no more
    CUDA GPUs than the machine has when the run would use CUDA."""
    if t.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator: {t.accelerator!r} but this machine has no CUDA GPU; use --trainer.accelerator cpu (or auto)")
    if t.accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator: 'mps' but MPS is not available on this machine; use --trainer.accelerator cpu (or auto)")
    uses_cuda = t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and torch.cuda.is_available())
    count = torch.cuda.device_count() if uses_cuda else 0
    if uses_cuda and isinstance(t.devices, int) and t.devices > count:
        raise ConfigError(f"trainer.devices: {t.devices} but this machine has {count} CUDA GPU(s); use --trainer.devices {count} (or auto)")


def splits_for(d: DataConfig, command: str) -> list[str]:
    """The splits ``command`` reads (as the data modules choose them): fit train + val, validate val,
    test ``test_split`` (else val)."""
    if command == "fit":
        return list(dict.fromkeys((d.train_split, d.val_split)))
    if command == "validate":
        return [d.val_split]
    if command == "test":
        return [d.test_split or d.val_split]
    raise ValueError(f"unknown command {command!r}; valid: fit, validate, test")


def check_data_exists(cfg: ExperimentConfig, command: str) -> None:
    """``data.root`` and, for each split ``command`` reads, the folders and annotation files the
    dataset's reader opens; FileNotFoundError naming the first missing one. Generated datasets and
    names no layout is known for (the data module names the valid ones) are not checked."""
    d = cfg.data
    layout = DATA_LAYOUTS.get(d.dataset)
    if d.dataset in GENERATED_DATASETS or layout is None:
        return
    if not d.root:
        raise ConfigError(f"data.root: dataset {d.dataset!r} needs the folder it is in; set --data.root")
    root = Path(d.root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: {root} is not a folder (dataset {d.dataset!r}); set --data.root to where the data is")
    splits = splits_for(d, command)
    if d.dataset in ("dota", "star") and d.options.get("patch_size") is not None:
        splits = [s for s in (d.train_split, d.val_split, d.test_split) if s]  # every split is cut into patches first
    for split in splits:
        for path, what in layout(root, split):
            if not path.exists():
                raise FileNotFoundError(f"{path} not found: {what} (dataset {d.dataset!r}, split {split!r}, data.root {root})")


def _voc_detection(root: Path, split: str) -> list[Need]:
    from monatune.data.voc import voc_image_sets

    needs: list[Need] = []
    for year, name in voc_image_sets(split):
        base = root / f"VOC{year}"
        needs += [
            (base / "ImageSets" / "Main" / f"{name}.txt", f"the VOC{year} image set {name!r}"),
            (base / "JPEGImages", f"the VOC{year} images folder"),
            (base / "Annotations", f"the VOC{year} XML annotations folder"),
        ]
    return needs


def _dota(root: Path, split: str) -> list[Need]:
    from monatune.data.dota import split_names

    return [(root / name / "images", f"the images of split {name!r} (<root>/<split>/images)") for name in split_names(split)]


DATA_LAYOUTS: dict[str, Callable[[Path, str], list[Need]]] = {
    "imagefolder": lambda root, split: [(root / split, "an ImageFolder split: <split>/<class name>/<images>")],
    "voc07_cls": lambda root, split: [(root / f"{split}.txt", "the split's list of 'relative/image/path label' lines")],
    "flowers102": lambda root, split: [
        (root / "flowers-102" / item, "a Flowers-102 file (flowers-102/jpg/, imagelabels.mat, setid.mat)")
        for item in ("jpg", "imagelabels.mat", "setid.mat")
    ],
    "oxford_pets": lambda root, split: [
        (root / "oxford-iiit-pet" / item, "an Oxford-IIIT Pet folder (oxford-iiit-pet/images/, annotations/)")
        for item in ("images", "annotations")
    ],
    "voc": _voc_detection,
    "coco": lambda root, split: [
        (root / split, "the split's image folder (<root>/<split>/)"),
        (root / "annotations" / f"instances_{split}.json", "the split's COCO annotation file"),
    ],
    "ade20k": lambda root, split: [
        (root / "images" / split, "the split's images (ADEChallengeData2016/images/<split>)"),
        (root / "annotations" / split, "the split's label PNGs (ADEChallengeData2016/annotations/<split>)"),
    ],
    "dota": _dota,
    "star": _dota,
}
