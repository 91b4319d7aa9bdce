"""Classification data module: datasets from ``cfg.data`` with the paper's transforms."""

from __future__ import annotations

from torch.utils.data import Dataset

from monatune.data.classification import build_classification_dataset
from monatune.data.classification_transforms import eval_transform, train_transform
from monatune.data.datamodule import SplitDataModule


class ClassificationData(SplitDataModule):
    """Train/val/test loaders for a classification dataset named in ``cfg.data.dataset`` (or the
    ``train_set`` / ``val_set`` given); batches ``(images (B, 3, H, W), labels (B,))``."""

    drop_last = True

    def make_dataset(self, split: str, train: bool) -> Dataset:
        d = self.cfg.data
        if d.dataset == "digits":
            return build_classification_dataset("digits", None, split, None, image_size=d.image_size, seed=self.cfg.trainer.seed, train=train)
        transform = train_transform(d.image_size) if train else eval_transform(d.image_size, d.resize_size)
        return build_classification_dataset(d.dataset, d.root, split, transform, strict=d.strict, verify=d.verify_images)
