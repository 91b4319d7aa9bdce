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
from typing import Sequence

import torch
from torch.utils.data import Dataset

from monatune.data.ade20k import ADE20KSegmentation
from monatune.data.dense_transforms import semantic_eval_transforms, semantic_train_transforms
from monatune.data.synthetic_scenes import SCENE_STYLES, write_ade20k
from monatune.tasks.detection.data import DenseDataModule, ensure_synthetic, list_collate, require_root, synthetic_params

DATASETS = ("ade20k", "synthetic_ade20k")


def stack_collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Training crops (all padded to the crop size) -> ``(images (B, 3, H, W), masks (B, H, W) int64)``."""
    images, masks = list_collate(batch)
    return torch.stack(images), torch.stack(masks).long()


class SemanticSegmentationData(DenseDataModule):
    """ADE20K-layout data: training batches stacked, eval batches as lists (original label sizes differ)."""

    train_collate = staticmethod(stack_collate)
    drop_last = True  # a batch of one breaks the decode heads' BatchNorm on pooled 1x1 features

    def prepare_data(self) -> None:
        d = self.cfg.data
        if d.dataset not in DATASETS:
            raise ValueError(f"data.dataset: {d.dataset!r} is not a semantic segmentation dataset; valid: {', '.join(DATASETS)}")
        if d.dataset == "synthetic_ade20k":
            params = synthetic_params(self.cfg, (d.train_split, d.val_split))
            params["style"] = style = d.options.get("style", "shapes")
            if style not in SCENE_STYLES:
                raise ValueError(f"data.options.style: {style!r} is not a scene style; valid: {', '.join(SCENE_STYLES)}")

            def write(root: Path) -> None:
                for split, n in params["splits"].items():
                    write_ade20k(root, n, d.image_size, params["seed"], split=split, style=style)

            ensure_synthetic(require_root(self.cfg), params, write)

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
