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

from torch.utils.data import Dataset

from monatune.data.coco import COCODetection
from monatune.data.dense_transforms import instance_train_transforms
from monatune.data.synthetic_scenes import write_coco
from monatune.tasks.detection.data import DenseDataModule, ensure_synthetic, require_root, synthetic_params, to_float

DATASETS = ("coco", "synthetic_coco")


class InstanceSegmentationData(DenseDataModule):
    """COCO-layout data: batches ``(list of (3, H, W) float images, list of target dicts with masks)``."""

    def prepare_data(self) -> None:
        d = self.cfg.data
        if d.dataset not in DATASETS:
            raise ValueError(f"data.dataset: {d.dataset!r} is not an instance segmentation dataset; valid: {', '.join(DATASETS)}")
        if d.dataset == "synthetic_coco":
            params = synthetic_params(self.cfg, (d.train_split, d.val_split))

            def write(root: Path) -> None:
                for split, n in params["splits"].items():
                    write_coco(root, n, d.image_size, params["seed"], split=split)

            ensure_synthetic(require_root(self.cfg), params, write)

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
