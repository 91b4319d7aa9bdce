"""Oriented detection data module: DOTA-format folders (DOTA v1.0, STAR, synthetic) cut into patches.

Layout: ``<data.root>/<split>/images/*.png`` + ``<data.root>/<split>/labelTxt/*.txt`` (no ``labelTxt``
for an unlabelled test split); ``train_split: train+val`` joins several folders. ``cfg.data.dataset``:
``dota`` or ``star`` (class lists in :mod:`monatune.data.dota`), or ``synthetic_dota`` (rotated
rectangles written first by :func:`monatune.data.synthetic_rotated.write_synthetic_dota`, then read by
the same reader).

``cfg.data.options``:
- ``patch_size`` (null: read the images as they are) and ``overlap``: each split is cut once by
  :func:`~monatune.tasks.oriented.patches.split_dota` into ``<patch_root>/<split>/`` (default
  ``patch_root``: ``<root>/patches_<size>_<overlap>``; its ``split.json`` stamp records the settings,
  ``split_version`` and the object counts: kept whole, only clipped, dropped); detections on patches
  are merged back per original image and scored against the original labels.
- merging and scoring (SPEC §8.4; defaults: DOTA's, see :mod:`~monatune.tasks.oriented.protocol`):
  ``merge_nms_iou`` (0.1), ``merge_class_agnostic`` (false), ``merge_max_per_image`` (null: no cap),
  ``eval_iou_threshold`` (0.5), ``eval_difficult`` (ignore | count), ``eval_iou`` (polygon | rotated).
- ``patch_pad_value`` (SPEC §8.11, opt-in): RGB pixel past the image border in patches (null: zeros;
  mmrotate's split: the mean pixel [124, 116, 104]); the same in ``monatune predict``.
- ``angle_convention`` (le90), ``flip_prob`` (0.75) over ``flip_directions`` (h/v/diagonal),
  ``skip_difficult`` (false), ``skip_empty`` (true: training leaves out patches without objects),
  ``classes`` (override the class list).
- synthetic only: ``num_train_images``, ``num_val_images``, ``seed``, ``synthetic_image_size``
  (default ``image_size``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from monatune.data.dota import DATASETS, DotaDataset, collate_oriented, dota_class_names, split_names
from monatune.data.synthetic_rotated import write_synthetic_dota
from monatune.engine.config import ExperimentConfig
from monatune.tasks.dense.data import DenseDataModule
from monatune.tasks.oriented.patches import SPLIT_VERSION, patch_pad_value, split_dota
from monatune.tasks.oriented.protocol import MergeSettings, ScoreSettings, merge_settings, score_settings

# Every ``data.options`` key read here, in protocol.py (merge_*, eval_*) and predict.py (patch_pad_value)
ORIENTED_OPTIONS = (
    "patch_size", "overlap", "patch_root", "iof_threshold", "patch_pad_value",
    "merge_nms_iou", "merge_class_agnostic", "merge_max_per_image", "eval_iou_threshold", "eval_difficult", "eval_iou",
    "angle_convention", "flip_prob", "flip_directions", "skip_difficult", "skip_empty", "classes",
    "num_train_images", "num_val_images", "seed", "synthetic_image_size",
)  # fmt: skip


MERGE_NMS_IOU = MergeSettings().nms_iou  # DOTA devkit's merge of patch detections


def merge_nms_iou(cfg: ExperimentConfig) -> float:
    """The rotated-NMS IoU that merges patch detections per image (``data.options.merge_nms_iou``)."""
    return merge_settings(cfg.data.options).nms_iou


def oriented_class_names(cfg: ExperimentConfig) -> tuple[str, ...]:
    """The class list of ``cfg.data`` (``options.classes`` overrides); its length must be ``num_classes``."""
    return dota_class_names(cfg.data.dataset, cfg.model.num_classes, cfg.data.options.get("classes"))


def write_once(
    folder: Path, params: dict[str, Any], write: Callable[[Path], dict[str, Any] | None], stamp: str
) -> None:
    """Run ``write(folder)`` unless ``folder/stamp`` records the same ``params``. The stamp holds
    ``params`` and what ``write`` returns (e.g. a split's object counts); it is written last, so an
    interrupted write is redone."""
    path = folder / stamp
    if path.is_file():
        recorded = json.loads(path.read_text())
        if all(key in recorded and recorded[key] == value for key, value in params.items()):
            return
    folder.mkdir(parents=True, exist_ok=True)
    extra = write(folder) or {}
    path.write_text(json.dumps({**params, **extra}, indent=2))


def clear_dota_folder(folder: Path) -> None:
    """Remove ``folder/images`` and ``folder/labelTxt`` (before they are written again), so no file of an
    earlier, different version is left behind."""
    for sub in ("images", "labelTxt"):
        if (folder / sub).is_dir():
            shutil.rmtree(folder / sub)


def folder_fingerprint(folder: Path) -> str:
    """A digest of the names, sizes and modification times of the files in ``folder/images`` and
    ``folder/labelTxt``: it changes whenever the source of the patches does."""
    digest = hashlib.sha1()
    for sub in ("images", "labelTxt"):
        if (folder / sub).is_dir():
            for path in sorted((folder / sub).iterdir()):
                stat = path.stat()
                digest.update(f"{sub}/{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass
class EvalReference:
    """What detections of one eval split are scored against.

    ``annotations``: original image id -> ``polygons`` (N, 8), ``labels`` (N,), ``difficult`` (N,)
    bool, or None for an unlabelled split; ``merge``: the loader yields patches whose detections must
    be merged per original image first; ``merge_settings``: the rotated NMS of that merge;
    ``score_settings``: how detections are scored against ``annotations``."""

    annotations: dict[str, dict[str, np.ndarray]] | None
    merge: bool
    merge_settings: MergeSettings = MergeSettings()
    score_settings: ScoreSettings = ScoreSettings()

    @property
    def merge_nms_iou(self) -> float:
        return self.merge_settings.nms_iou


class OrientedData(DenseDataModule):
    """Batches ``(list of (3, H, W) float images in [0, 1], list of targets)`` (see :class:`DotaDataset`)."""

    train_collate = staticmethod(collate_oriented)
    eval_collate = staticmethod(collate_oriented)
    option_names = ORIENTED_OPTIONS

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__(cfg)
        self.classes = oriented_class_names(cfg)
        if not cfg.data.root:
            raise ValueError(f"data.root: {cfg.data.dataset!r} needs a folder (for synthetic data: where to write it)")
        self.root = Path(cfg.data.root)
        self.pad_value = patch_pad_value(cfg.data.options)  # checked before any work
        self._references: dict[str, EvalReference] = {}

    # --- options ------------------------------------------------------------------------------
    def _opt(self, key: str, default: Any) -> Any:
        return self.cfg.data.options.get(key, default)

    @property
    def patch_size(self) -> int | None:
        return self._opt("patch_size", None)

    def patch_root(self) -> Path:
        default = self.root / f"patches_{self.patch_size}_{self._opt('overlap', 200)}"
        return Path(self._opt("patch_root", default))

    def _splits(self) -> list[str]:
        d = self.cfg.data
        names = [n for s in (d.train_split, d.val_split, d.test_split) if s for n in split_names(s)]
        return list(dict.fromkeys(names))

    # --- files ------------------------------------------------------------------------------
    def prepare_files(self) -> None:
        """Write synthetic data (``synthetic_dota``), then cut every split into patches (``patch_size``);
        ``prepare_data`` (the base's) then checks the datasets' files once per machine."""
        d = self.cfg.data
        if d.dataset == "synthetic_dota":
            train = set(split_names(d.train_split))
            for index, split in enumerate(self._splits()):
                count_key = "num_train_images" if split in train else "num_val_images"
                params = {
                    "num_images": int(self._opt(count_key, 64 if split in train else 16)),
                    "image_size": int(self._opt("synthetic_image_size", d.image_size)),
                    "seed": int(self._opt("seed", 0)) + 1000 * index,
                    "classes": list(self.classes),
                }

                def write_images(folder: Path, p: dict = params) -> None:
                    clear_dota_folder(folder)
                    write_synthetic_dota(folder, p["num_images"], p["image_size"], p["seed"], p["classes"])

                write_once(self.root / split, params, write_images, "synthetic.json")
        if self.patch_size is not None:
            for split in self._splits():
                source = self.root / split
                if not (source / "images").is_dir():
                    raise FileNotFoundError(f"{source / 'images'}: split {split!r} not found under data.root {self.root}")
                params = {
                    "source": str(source.resolve()),
                    "source_files": folder_fingerprint(source),
                    "patch_size": int(self.patch_size),
                    "overlap": int(self._opt("overlap", 200)),
                    "iof_threshold": float(self._opt("iof_threshold", 0.7)),
                    "split_version": SPLIT_VERSION,  # a folder split by an older rule is split again
                    "pad_value": None if self.pad_value is None else list(self.pad_value),
                    "strict": bool(self.cfg.data.strict),
                }

                def write_patches(folder: Path, source: Path = source, p: dict = params) -> dict[str, Any]:
                    clear_dota_folder(folder)
                    result = split_dota(
                        source, folder, patch_size=p["patch_size"], overlap=p["overlap"],
                        iof_threshold=p["iof_threshold"], pad_value=p["pad_value"], strict=p["strict"],
                    )  # fmt: skip
                    return {"counts": result.counts.as_dict()}

                write_once(self.patch_root() / split, params, write_patches, "split.json")

    def _folder(self, split: str) -> Path:
        return (self.patch_root() if self.patch_size is not None else self.root) / split

    # --- datasets -----------------------------------------------------------------------------
    def make_dataset(self, split: str, train: bool) -> Dataset:
        convention = self._opt("angle_convention", "le90")
        parts = []
        for name in split_names(split):
            if train:
                parts.append(
                    DotaDataset(
                        self._folder(name), self.classes, convention=convention,
                        flip_prob=float(self._opt("flip_prob", 0.75)),
                        flip_directions=tuple(self._opt("flip_directions", ("horizontal", "vertical", "diagonal"))),
                        skip_difficult=bool(self._opt("skip_difficult", False)),
                        skip_empty=bool(self._opt("skip_empty", True)),
                    )
                )  # fmt: skip
            else:
                parts.append(DotaDataset(self._folder(name), self.classes, convention=convention))
        if not train:
            self._references[split] = self._reference(split)
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def _reference(self, split: str) -> EvalReference:
        annotations: dict[str, dict[str, np.ndarray]] | None = {}
        for name in split_names(split):
            source = self.root / name
            if not (source / "labelTxt").is_dir():
                annotations = None
                break
            originals = DotaDataset(source, self.classes)  # reads the label files only, no pixels
            for path, ann in zip(originals.images, originals.annotations):
                annotations[path.stem] = {"polygons": ann.polygons, "labels": ann.labels(self.classes), "difficult": ann.difficult > 0}
        options = self.cfg.data.options
        return EvalReference(annotations, self.patch_size is not None, merge_settings(options), score_settings(options))

    def eval_reference(self, stage: str) -> EvalReference:
        """The :class:`EvalReference` of the split evaluated in ``stage`` ("validate" or "test")."""
        d = self.cfg.data
        split = (d.test_split or d.val_split) if stage == "test" else d.val_split
        if split not in self._references:
            self._references[split] = self._reference(split)
        return self._references[split]


__all__ = ["DATASETS", "ORIENTED_OPTIONS", "EvalReference", "OrientedData", "clear_dota_folder", "folder_fingerprint", "oriented_class_names", "split_names", "write_once"]
