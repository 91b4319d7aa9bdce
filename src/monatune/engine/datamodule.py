"""The loader logic every task's data module shares: one dataset per split named in ``cfg.data``,
``data.options`` checked against the keys the task reads, every dataset's files checked before training
(:mod:`monatune.data.verify`), training shuffled by :class:`EpochShuffleSampler`, evaluation seeing
each image exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Collection, Mapping

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler

from monatune.data.verify import verify_dataset
from monatune.engine.config import ExperimentConfig
from monatune.engine.sampler import EpochShuffleSampler

CHECK_FOLDER = "data_check"  # under trainer.out_dir: results of the file checks, one JSON per dataset


def check_options(options: Mapping[str, Any], valid: Collection[str], dataset: str) -> None:
    """ValueError naming the first key of ``options`` not in ``valid`` (and the valid ones), so a
    misspelt ``data.options`` key stops the run before it starts instead of being ignored."""
    for key in options:
        if key not in valid:
            known = ", ".join(sorted(valid)) or "none"
            raise ValueError(f"data.options.{key}: not an option of dataset {dataset!r}; valid: {known}")


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
    option_names: tuple[str, ...] = ()  # the ``data.options`` keys the task reads; any other is refused

    def __init__(self, cfg: ExperimentConfig, train_set: Dataset | None = None, val_set: Dataset | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_set: Dataset | None = train_set
        self.val_set: Dataset | None = val_set
        self.test_set: Dataset | None = None
        self._prepared: dict[tuple[str, bool], Dataset] = {}  # built and checked by prepare_data
        if train_set is None or val_set is None:  # given both, the caller built them from its options
            check_options(cfg.data.options, self.option_names, cfg.data.dataset)

    def make_dataset(self, split: str, train: bool) -> Dataset:
        raise NotImplementedError

    def prepare_files(self) -> None:
        """Write what the datasets read (synthetic data); run once per machine before they are built."""

    def prepare_data(self) -> None:
        """``prepare_files``, then the datasets of the trainer's stage built and their files checked.

        Lightning runs this on the first process of each machine only, the others waiting: the check
        (every image decoded) is done once per machine, its result kept under ``<out_dir>/data_check``,
        and the other processes read that result in ``setup`` instead of decoding everything again."""
        self.prepare_files()
        stage = self.trainer.state.fn if self.trainer is not None else None
        for _, split, train in self.stage_splits(stage.value if stage is not None else ""):
            self._prepared[(split, train)] = self.checked_dataset(split, train)

    def stage_splits(self, stage: str) -> list[tuple[str, str, bool]]:
        """(attribute, split, train) of each dataset ``stage`` needs that was not given."""
        d, wanted = self.cfg.data, []
        if stage == "fit" and self.train_set is None:
            wanted.append(("train_set", d.train_split, True))
        if stage in ("fit", "validate") and self.val_set is None:
            wanted.append(("val_set", d.val_split, False))
        if stage == "test" and self.test_set is None:
            wanted.append(("test_set", d.test_split or d.val_split, False))
        return wanted

    def checked_dataset(self, split: str, train: bool) -> Dataset:
        """``make_dataset(split, train)`` with unreadable samples dropped, or CorruptImageError under
        ``data.strict``; not checked when ``data.verify_images`` is false."""
        if (split, train) in self._prepared:
            return self._prepared.pop((split, train))
        d = self.cfg.data
        dataset = self.make_dataset(split, train)
        if d.verify_images:
            settings = {"dataset": d.dataset, "options": d.options, "num_classes": self.cfg.model.num_classes}
            verify_dataset(
                dataset,
                f"data {d.dataset!r} split {split!r}",
                strict=d.strict,
                cache_dir=Path(self.cfg.trainer.out_dir) / CHECK_FOLDER,
                settings=json.dumps(settings, sort_keys=True, default=str),
            )
        return dataset

    def setup(self, stage: str) -> None:
        for attribute, split, train in self.stage_splits(stage):
            setattr(self, attribute, self.checked_dataset(split, train))

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
