"""Classification data module: datasets from ``cfg.data`` with the paper's transforms."""

from __future__ import annotations

from torch.utils.data import Dataset, Subset

from monatune.backbones.stats import input_stats
from monatune.data.classification import build_classification_dataset, check_num_classes
from monatune.data.classification_transforms import eval_transform_for, train_transform
from monatune.data.image_list import LabeledImageList
from monatune.engine.datamodule import SplitDataModule

# ``data.options`` keys read. digits only: ``num_train_images`` (the first N images of its training
# split, for quick runs; null or absent = all 1,437).
CLASSIFICATION_OPTIONS: tuple[str, ...] = ("num_train_images",)


class ClassificationData(SplitDataModule):
    """Train/val/test loaders for a classification dataset named in ``cfg.data.dataset`` (or the
    ``train_set`` / ``val_set`` given); batches ``(images (B, 3, H, W), labels (B,))``. More classes
    on disk than ``model.num_classes`` is an error before training."""

    drop_last = True
    option_names = CLASSIFICATION_OPTIONS

    def make_dataset(self, split: str, train: bool) -> Dataset:
        d = self.cfg.data
        limit = d.options.get("num_train_images")
        if limit is not None and d.dataset != "digits":
            raise ValueError(f"data.options.num_train_images: only the 'digits' dataset reads it, not {d.dataset!r}")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ValueError(f"data.options.num_train_images: expected a positive integer or null, got {limit!r}")
        if d.dataset == "digits":
            digits = build_classification_dataset("digits", None, split, None, image_size=d.image_size, seed=self.cfg.trainer.seed, train=train)
            return Subset(digits, range(min(limit, len(digits)))) if train and limit else digits
        stats = input_stats(self.cfg.model.backbone)  # the backbone's own, not always ImageNet's
        transform = train_transform(d.image_size, *stats) if train else eval_transform_for(d, stats)
        # checked by checked_dataset (once per machine under DDP), not by the reader
        dataset = build_classification_dataset(d.dataset, d.root, split, transform, verify=False)
        if isinstance(dataset, LabeledImageList):
            check_num_classes(dataset, self.cfg.model.num_classes, f"data {d.dataset!r} split {split!r} under {d.root}")
        return dataset
