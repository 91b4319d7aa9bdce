"""The loader logic every task's data module shares: one dataset per split named in ``cfg.data``,
training shuffled by :class:`EpochShuffleSampler`, evaluation seeing each image exactly once."""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler

from monatune.engine.config import ExperimentConfig
from monatune.engine.sampler import EpochShuffleSampler


def eval_sampler(dataset: Dataset) -> Sampler | None:
    """Under DDP, each image on exactly one rank: Lightning's default sampler pads with repeats, which
    would count those images twice in a set-level metric (top-1, mAP, mIoU); else None (in order)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return UnrepeatedDistributedSampler(dataset, shuffle=False)
    return None


class SplitDataModule(L.LightningDataModule):
    """Train/val/test loaders over ``make_dataset(split, train)`` for the splits in ``cfg.data``.

    Datasets given to the constructor are used as they are. Subclasses set ``train_collate`` /
    ``eval_collate`` (None: PyTorch's default) and ``drop_last`` (drop a last, incomplete training batch
    when the set holds at least two batches)."""

    train_collate: Callable | None = None
    eval_collate: Callable | None = None
    drop_last: bool = False

    def __init__(self, cfg: ExperimentConfig, train_set: Dataset | None = None, val_set: Dataset | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_set: Dataset | None = train_set
        self.val_set: Dataset | None = val_set
        self.test_set: Dataset | None = None

    def make_dataset(self, split: str, train: bool) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        d = self.cfg.data
        if stage == "fit" and self.train_set is None:
            self.train_set = self.make_dataset(d.train_split, train=True)
        if stage in ("fit", "validate") and self.val_set is None:
            self.val_set = self.make_dataset(d.val_split, train=False)
        if stage == "test" and self.test_set is None:
            self.test_set = self.make_dataset(d.test_split or d.val_split, train=False)

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        d = self.cfg.data
        size = d.batch_size if train else (d.eval_batch_size or d.batch_size)
        return DataLoader(
            dataset,
            batch_size=size,
            sampler=EpochShuffleSampler(len(dataset), self.cfg.trainer.seed) if train else eval_sampler(dataset),
            num_workers=d.num_workers,
            persistent_workers=d.num_workers > 0,
            collate_fn=self.train_collate if train else self.eval_collate,
            drop_last=train and self.drop_last and len(dataset) >= 2 * size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
