"""Classification data module: datasets from ``cfg.data`` with the paper's transforms."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader, Dataset

from monatune.data.classification import build_classification_dataset
from monatune.data.classification_transforms import eval_transform, train_transform
from monatune.engine.config import ExperimentConfig
from monatune.engine.sampler import EpochShuffleSampler


class ClassificationData(L.LightningDataModule):
    """Train/val/test loaders for a classification dataset named in ``cfg.data.dataset``."""

    def __init__(self, cfg: ExperimentConfig, train_set: Dataset | None = None, val_set: Dataset | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_set, self.val_set, self.test_set = train_set, val_set, None

    def _dataset(self, split: str, train: bool) -> Dataset:
        d = self.cfg.data
        if d.dataset == "digits":
            return build_classification_dataset("digits", None, split, None, image_size=d.image_size, seed=self.cfg.trainer.seed, train=train)
        transform = train_transform(d.image_size) if train else eval_transform(d.image_size, d.resize_size)
        return build_classification_dataset(d.dataset, d.root, split, transform, strict=d.strict, verify=d.verify_images)

    def setup(self, stage: str) -> None:
        d = self.cfg.data
        if stage == "fit" and self.train_set is None:
            self.train_set = self._dataset(d.train_split, train=True)
        if stage in ("fit", "validate") and self.val_set is None:
            self.val_set = self._dataset(d.val_split, train=False)
        if stage == "test" and self.test_set is None:
            self.test_set = self._dataset(d.test_split or d.val_split, train=False)

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        d = self.cfg.data
        return DataLoader(
            dataset,
            batch_size=d.batch_size if train else (d.eval_batch_size or d.batch_size),
            sampler=EpochShuffleSampler(len(dataset), self.cfg.trainer.seed) if train else None,
            num_workers=d.num_workers,
            persistent_workers=d.num_workers > 0,
            drop_last=train and len(dataset) >= 2 * d.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
