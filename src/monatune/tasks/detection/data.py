"""Detection data module (VOC, SPEC §5), the loaders every dense task shares, and synthetic datasets
written once in a real layout (``synthetic_*``) so the real readers read them.

``cfg.data.dataset``: ``voc`` (``root`` = a VOCdevkit folder; splits like ``2007/trainval+2012/trainval``
and ``2007/test``) or ``synthetic_voc`` (scenes of 5 shape classes written to ``root`` first; splits are
image-set names, e.g. ``trainval`` and ``test``). ``cfg.data.options``: ``scale`` [long, short] of the
training resize (1000, 600), ``flip_prob`` (0.5), ``skip_difficult`` (true: train without difficult
boxes); synthetic only: ``num_train_images``, ``num_val_images``, ``seed`` (image size = ``image_size``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from monatune.data.dense_transforms import detection_train_transforms
from monatune.data.synthetic_scenes import SYNTHETIC_CLASSES, write_voc
from monatune.data.voc import VOC_CLASSES, VOCDetection
from monatune.engine.config import ExperimentConfig
from monatune.engine.sampler import EpochShuffleSampler

DATASETS = ("voc", "synthetic_voc")


def to_float() -> v2.Transform:
    """uint8 image -> float32 in [0, 1], everything else untouched (eval: the model resizes)."""
    return v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)


def _plain(x: Any) -> Any:
    return x.as_subclass(torch.Tensor) if isinstance(x, torch.Tensor) else x


def list_collate(batch: Sequence[tuple[Any, Any]]) -> tuple[list[torch.Tensor], list[Any]]:
    """``[(image, target), ...]`` -> ``(images, targets)`` as lists (sizes differ), tv_tensors made plain."""
    images = [_plain(image) for image, _ in batch]
    targets = [{k: _plain(v) for k, v in t.items()} if isinstance(t, dict) else _plain(t) for _, t in batch]
    return images, targets


def ensure_synthetic(root: str | Path, params: dict[str, Any], write: Callable[[Path], None]) -> Path:
    """Write a synthetic dataset under ``root`` unless the ``synthetic.json`` stamp there records the
    same ``params`` already; the stamp is written last, so an interrupted write is redone."""
    root = Path(root)
    stamp = root / "synthetic.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return root
    root.mkdir(parents=True, exist_ok=True)
    write(root)
    stamp.write_text(json.dumps(params, indent=2))
    return root


def synthetic_params(cfg: ExperimentConfig, splits: Sequence[str]) -> dict[str, Any]:
    """What identifies a synthetic dataset: name, image size, seed and the image count per split."""
    d = cfg.data
    counts = [d.options.get("num_train_images", 64), d.options.get("num_val_images", 16)]
    return {
        "dataset": d.dataset,
        "image_size": d.image_size,
        "seed": int(d.options.get("seed", 0)),
        "splits": dict(zip(splits, counts)),
    }


def require_root(cfg: ExperimentConfig) -> Path:
    if not cfg.data.root:
        raise ValueError(f"data.root: {cfg.data.dataset!r} needs a folder (for synthetic data: where to write it)")
    return Path(cfg.data.root)


def voc_image_sets(split: str) -> list[tuple[str, str]]:
    """``"2007/trainval+2012/trainval"`` (or ``VOC2007/...``) -> ``[("2007", "trainval"), ("2012", "trainval")]``."""
    sets = []
    for part in split.split("+"):
        year, sep, name = part.strip().removeprefix("VOC").partition("/")
        if not sep or not year.isdigit() or not name:
            raise ValueError(f"VOC split {split!r}: expected YEAR/IMAGE_SET parts joined by '+', e.g. 2007/trainval+2012/trainval")
        sets.append((year, name))
    return sets


def detection_class_names(cfg: ExperimentConfig) -> tuple[str, ...]:
    return SYNTHETIC_CLASSES if cfg.data.dataset == "synthetic_voc" else VOC_CLASSES


class DenseDataModule(L.LightningDataModule):
    """Shared loader logic of the dense tasks: ``prepare_data`` writes synthetic data (rank 0), ``setup``
    builds ``make_dataset(split, train)``; training shuffles with :class:`EpochShuffleSampler`."""

    train_collate: Callable = staticmethod(list_collate)
    eval_collate: Callable = staticmethod(list_collate)
    drop_last: bool = False

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
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
        if train:
            sampler: Sampler | None = EpochShuffleSampler(len(dataset), self.cfg.trainer.seed)
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            # Each image on exactly one rank: Lightning's default sampler pads with repeats, which
            # would count those images twice in a set-level metric (mAP, mIoU).
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        else:
            sampler = None
        return DataLoader(
            dataset,
            batch_size=size,
            sampler=sampler,
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


class DetectionData(DenseDataModule):
    """VOC-layout detection data: batches ``(list of (3, H, W) float images, list of target dicts)``."""

    def prepare_data(self) -> None:
        d = self.cfg.data
        if d.dataset not in DATASETS:
            raise ValueError(f"data.dataset: {d.dataset!r} is not a detection dataset; valid: {', '.join(DATASETS)}")
        if d.dataset == "synthetic_voc":
            params = synthetic_params(self.cfg, (d.train_split, d.val_split))

            def write(root: Path) -> None:
                for split, n in params["splits"].items():
                    write_voc(root, n, d.image_size, params["seed"], image_set=split)

            ensure_synthetic(require_root(self.cfg), params, write)

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
        )
