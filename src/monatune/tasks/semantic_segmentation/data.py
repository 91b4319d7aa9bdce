"""Semantic segmentation data module (ADE20K, SPEC §5).

``cfg.data.dataset``: ``ade20k`` (``root`` = ADEChallengeData2016 with ``images/`` and ``annotations/``;
splits ``training`` / ``validation``) or ``synthetic_ade20k`` (scenes of 6 classes, background included,
written to ``root`` first). ``cfg.data.options``: ``scale`` [long, short] (2048, 512) and
``ratio_range`` (0.5, 2.0) of the training resize, ``crop_size`` (512), ``cat_max_ratio`` (0.75),
``flip_prob`` (0.5), ``photometric`` (true), ``test_scale`` (= ``scale``), ``reduce_zero_label`` (true);
synthetic only: ``num_train_images``, ``num_val_images``, ``seed``, ``style`` ("shapes": 6 classes,
or "pretext": background/object scenes drawn like the embedded backbone's pretraining images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from monatune.data.ade20k import ADE20KSegmentation
from monatune.data.dense_transforms import semantic_eval_transforms, semantic_train_transforms
from monatune.data.synthetic_scenes import SCENE_STYLES, write_ade20k
from monatune.tasks.dense.data import DenseDataModule, SYNTHETIC_OPTIONS, list_collate, require_root

DATASETS = ("ade20k", "synthetic_ade20k")
SEMANTIC_SEGMENTATION_OPTIONS = (
    "scale", "ratio_range", "crop_size", "cat_max_ratio", "flip_prob", "photometric", "test_scale",
    "reduce_zero_label", "style", *SYNTHETIC_OPTIONS,
)  # fmt: skip


def stack_collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Training crops (all padded to the crop size) -> ``(images (B, 3, H, W), masks (B, H, W) int64)``."""
    images, masks = list_collate(batch)
    return torch.stack(images), torch.stack(masks).long()


class SemanticSegmentationData(DenseDataModule):
    """ADE20K-layout data: training batches stacked, eval batches as lists (original label sizes differ)."""

    train_collate = staticmethod(stack_collate)
    drop_last = True  # a batch of one breaks the decode heads' BatchNorm on pooled 1x1 features

    datasets = DATASETS
    synthetic_dataset = "synthetic_ade20k"
    dataset_kind = "a semantic segmentation dataset"
    option_names = SEMANTIC_SEGMENTATION_OPTIONS

    def synthetic_dataset_params(self) -> dict[str, Any]:
        """The common parameters and the scene ``style`` (checked)."""
        params = super().synthetic_dataset_params()
        params["style"] = style = self.cfg.data.options.get("style", "shapes")
        if style not in SCENE_STYLES:
            raise ValueError(f"data.options.style: {style!r} is not a scene style; valid: {', '.join(SCENE_STYLES)}")
        return params

    def write_synthetic_split(self, root: Path, split: str, num_images: int, params: dict[str, Any]) -> None:
        write_ade20k(root, num_images, self.cfg.data.image_size, params["seed"], split=split, style=params["style"])

    def make_dataset(self, split: str, train: bool) -> Dataset:
        opts = self.cfg.data.options
        scale = tuple(opts.get("scale", (2048, 512)))
        if train:
            transforms = semantic_train_transforms(
                scale=scale,
                ratio_range=tuple(opts.get("ratio_range", (0.5, 2.0))),
                crop_size=opts.get("crop_size", 512),
                cat_max_ratio=opts.get("cat_max_ratio", 0.75),
                flip_prob=opts.get("flip_prob", 0.5),
                photometric=opts.get("photometric", True),
            )
        else:
            transforms = semantic_eval_transforms(tuple(opts.get("test_scale", scale)))
        return ADE20KSegmentation(
            require_root(self.cfg),
            split,
            transforms=transforms,
            reduce_zero_label=opts.get("reduce_zero_label", True),
            num_classes=self.cfg.model.num_classes,
        )
