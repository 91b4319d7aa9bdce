"""The data side every dense task shares: list batches, the synthetic-dataset stamp, and the
``DenseDataModule`` base that checks the dataset name and writes a synthetic set once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from monatune.engine.config import ExperimentConfig
from monatune.engine.datamodule import SplitDataModule

SYNTHETIC_OPTIONS = ("num_train_images", "num_val_images", "seed")


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


class DenseDataModule(SplitDataModule):
    """Shared data logic of the dense tasks: batches as lists (:func:`list_collate`), and ``prepare_files``
    (rank 0) checks ``cfg.data.dataset`` against ``datasets`` and writes the synthetic one once."""

    train_collate: Callable = staticmethod(list_collate)
    eval_collate: Callable = staticmethod(list_collate)
    datasets: tuple[str, ...] = ()  # valid ``cfg.data.dataset`` values
    synthetic_dataset: str = ""  # the one ``prepare_data`` writes first, split by split
    dataset_kind: str = "a dense dataset"  # in the error message for any other

    def prepare_files(self) -> None:
        d = self.cfg.data
        if d.dataset not in self.datasets:
            raise ValueError(f"data.dataset: {d.dataset!r} is not {self.dataset_kind}; valid: {', '.join(self.datasets)}")
        if d.dataset == self.synthetic_dataset:
            params = self.synthetic_dataset_params()

            def write(root: Path) -> None:
                for split, n in params["splits"].items():
                    self.write_synthetic_split(root, split, n, params)

            ensure_synthetic(require_root(self.cfg), params, write)

    def synthetic_dataset_params(self) -> dict[str, Any]:
        """What identifies the synthetic dataset (recorded in its ``synthetic.json`` stamp)."""
        d = self.cfg.data
        return synthetic_params(self.cfg, (d.train_split, d.val_split))

    def write_synthetic_split(self, root: Path, split: str, num_images: int, params: dict[str, Any]) -> None:
        """Write ``num_images`` synthetic images of ``split`` under ``root`` (``params``: its stamp)."""
        raise NotImplementedError
