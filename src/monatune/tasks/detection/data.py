"""Detection data module (VOC, SPEC §5), the data module base every dense task shares, and synthetic datasets
written once in a real layout (``synthetic_*``) so the real readers read them.

``cfg.data.dataset``: ``voc`` (``root`` = a VOCdevkit folder; splits like ``2007/trainval+2012/trainval``
and ``2007/test``) or ``synthetic_voc`` (scenes of 5 shape classes written to ``root`` first; splits are
image-set names, e.g. ``trainval`` and ``test``). ``cfg.data.options``: ``scale`` [long, short] of the
training resize (1000, 600), ``flip_prob`` (0.5), ``skip_difficult`` (true: train without difficult
boxes), ``box_convention`` ("devkit": boxes as the XML has them, scored with the devkit's +1 IoU;
"mmdet": boxes shifted by -1 and continuous IoU, mmdet 2.11 parity, SPEC §8.11); synthetic only:
``num_train_images``, ``num_val_images``, ``seed`` (image size = ``image_size``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from monatune.data.dense_transforms import detection_train_transforms
from monatune.data.synthetic_scenes import SYNTHETIC_CLASSES, write_voc
from monatune.data.voc import BOX_CONVENTIONS, VOC_CLASSES, VOCDetection, voc_image_sets
from monatune.engine.config import ExperimentConfig
from monatune.tasks.dense.data import SYNTHETIC_OPTIONS, DenseDataModule, require_root, to_float

DATASETS = ("voc", "synthetic_voc")
# ``data.options`` of every synthetic dataset (read by synthetic_params)
DETECTION_OPTIONS = ("scale", "flip_prob", "skip_difficult", "box_convention", *SYNTHETIC_OPTIONS)


def box_convention(cfg: ExperimentConfig) -> str:
    """``data.options.box_convention`` ("devkit" by default), checked: the reader and the metric both use it."""
    value = cfg.data.options.get("box_convention", "devkit")
    if value not in BOX_CONVENTIONS:
        raise ValueError(f"data.options.box_convention: {value!r} is not one of {', '.join(BOX_CONVENTIONS)}")
    return value


def detection_class_names(cfg: ExperimentConfig) -> tuple[str, ...]:
    return SYNTHETIC_CLASSES if cfg.data.dataset == "synthetic_voc" else VOC_CLASSES


class DetectionData(DenseDataModule):
    """VOC-layout detection data: batches ``(list of (3, H, W) float images, list of target dicts)``."""

    datasets = DATASETS
    synthetic_dataset = "synthetic_voc"
    dataset_kind = "a detection dataset"
    option_names = DETECTION_OPTIONS

    def write_synthetic_split(self, root: Path, split: str, num_images: int, params: dict[str, Any]) -> None:
        write_voc(root, num_images, self.cfg.data.image_size, params["seed"], image_set=split)

    def make_dataset(self, split: str, train: bool) -> Dataset:
        d, opts = self.cfg.data, self.cfg.data.options
        root = require_root(self.cfg)
        if d.dataset == "synthetic_voc":
            root, image_sets = root / "VOCdevkit", [("2007", split)]
        else:
            image_sets = voc_image_sets(split)
        if train:
            transforms = detection_train_transforms(tuple(opts.get("scale", (1000, 600))), opts.get("flip_prob", 0.5))
        else:
            transforms = to_float()
        return VOCDetection(
            root,
            image_sets,
            transforms=transforms,
            skip_difficult=train and opts.get("skip_difficult", True),
            class_names=detection_class_names(self.cfg),
            box_convention=box_convention(self.cfg),
        )
