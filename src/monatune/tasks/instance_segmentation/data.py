"""Instance segmentation data module (COCO, SPEC §5).

``cfg.data.dataset``: ``coco`` (``root`` holds ``<split>/*.jpg`` and ``annotations/instances_<split>.json``;
splits ``train2017`` / ``val2017``) or ``synthetic_coco`` (scenes of 5 shape classes with polygon masks
written to ``root`` first). ``cfg.data.options``: ``short_sides`` (480..800 step 32), ``max_size`` (1333),
``crop_short_sides`` ([400, 500, 600]), ``crop_size`` ([384, 600]), ``flip_prob`` (0.5) of the Swin
multi-scale + crop training pipeline; synthetic only: ``num_train_images``, ``num_val_images``, ``seed``.
Training skips crowd boxes and images without objects; evaluation keeps crowd regions (ignored by COCO AP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from monatune.data.coco import COCODetection
from monatune.data.dense_transforms import instance_train_transforms
from monatune.data.synthetic_scenes import write_coco
from monatune.tasks.dense.data import DenseDataModule, SYNTHETIC_OPTIONS, require_root, to_float

DATASETS = ("coco", "synthetic_coco")
INSTANCE_SEGMENTATION_OPTIONS = ("short_sides", "max_size", "crop_short_sides", "crop_size", "flip_prob", *SYNTHETIC_OPTIONS)


class InstanceSegmentationData(DenseDataModule):
    """COCO-layout data: batches ``(list of (3, H, W) float images, list of target dicts with masks)``."""

    datasets = DATASETS
    synthetic_dataset = "synthetic_coco"
    dataset_kind = "an instance segmentation dataset"
    option_names = INSTANCE_SEGMENTATION_OPTIONS

    def write_synthetic_split(self, root: Path, split: str, num_images: int, params: dict[str, Any]) -> None:
        write_coco(root, num_images, self.cfg.data.image_size, params["seed"], split=split)

    def make_dataset(self, split: str, train: bool) -> Dataset:
        opts = self.cfg.data.options
        root = require_root(self.cfg)
        if train:
            transforms = instance_train_transforms(
                short_sides=tuple(opts.get("short_sides", range(480, 801, 32))),
                max_size=opts.get("max_size", 1333),
                crop_short_sides=tuple(opts.get("crop_short_sides", (400, 500, 600))),
                crop_size=tuple(opts.get("crop_size", (384, 600))),
                flip_prob=opts.get("flip_prob", 0.5),
            )
        else:
            transforms = to_float()
        return COCODetection(
            root / split,
            root / "annotations" / f"instances_{split}.json",
            transforms=transforms,
            include_crowd=not train,
            skip_empty=train,
        )
