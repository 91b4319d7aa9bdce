"""DOTA-format oriented detection data (DOTA v1.0, STAR): label files, class lists, a torch Dataset.

A DOTA label file (``labelTxt/<image id>.txt``) has optional header lines ``imagesource:...`` and
``gsd:...``, then one object per line: ``x1 y1 x2 y2 x3 y3 x4 y4 class difficult`` (pixel
coordinates of the four corners; ``difficult`` 0/1, sometimes 2 for truncated objects, missing in
some releases and then 0). Images sit beside it in ``images/<image id>.png``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from monatune.data.errors import DatasetError, read_rgb_image

DOTA_V1_CLASSES = (
    "plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle", "large-vehicle", "ship",
    "tennis-court", "basketball-court", "storage-tank", "soccer-ball-field", "roundabout", "harbor",
    "swimming-pool", "helicopter",
)  # fmt: skip

# STAR (Li et al., 2024), the 48 categories in the order of its public detection code.
STAR_CLASSES = (
    "ship", "boat", "crane", "goods_yard", "tank", "storehouse", "breakwater", "dock", "airplane",
    "boarding_bridge", "runway", "taxiway", "terminal", "apron", "gas_station", "truck", "car",
    "truck_parking", "car_parking", "bridge", "cooling_tower", "chimney", "vapor", "smoke", "genset",
    "coal_yard", "lattice_tower", "substation", "wind_mill", "cement_concrete_pavement", "toll_gate",
    "flood_dam", "gravity_dam", "ship_lock", "ground_track_field", "basketball_court",
    "engineering_vehicle", "foundation_pit", "intersection", "soccer_ball_field", "tennis_court",
    "tower_crane", "unfinished_building", "arch_dam", "roundabout", "baseball_diamond", "stadium",
    "containment_vessel",
)  # fmt: skip

DATASET_CLASSES = {"dota": DOTA_V1_CLASSES, "dota_v1": DOTA_V1_CLASSES, "star": STAR_CLASSES}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_HEADER_KEYS = ("imagesource", "gsd")


@dataclass
class DotaLabels:
    """The objects of one label file: polygons (N, 8) float64, class names, difficult flags (N,) int64."""

    polygons: np.ndarray
    names: list[str]
    difficult: np.ndarray
    header: dict[str, str] = field(default_factory=dict)

    def labels(self, classes: Sequence[str]) -> np.ndarray:
        """Class indices (N,) int64 in ``classes``."""
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[n] for n in self.names], dtype=np.int64)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_dota_labels(path: str | Path, classes: Sequence[str] | None = None) -> DotaLabels:
    """Parse a DOTA label file. With ``classes``, an unknown class name is an error.

    Raises :class:`DatasetError` naming the file and the line for any malformed line.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DatasetError(path, f"cannot read label file ({exc})") from exc
    known = set(classes) if classes is not None else None
    polygons, names, difficult, header = [], [], [], {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        key = text.split(":", 1)[0].strip().lower()
        if ":" in text and key in _HEADER_KEYS:
            header[key] = text.split(":", 1)[1].strip()
            continue
        tokens = text.split()
        if len(tokens) not in (9, 10) or _is_number(tokens[8]):
            words = [i for i, tok in enumerate(tokens) if not _is_number(tok)]
            found = f"{words[0]} fields before the class name" if words else "no class name"
            raise DatasetError(
                path, f"line {number}: expected 8 coordinates, a class and a difficult flag; found {found}: {text!r}"
            )
        try:
            coords = [float(t) for t in tokens[:8]]
        except ValueError:
            raise DatasetError(path, f"line {number}: coordinates must be numbers: {text!r}") from None
        if not all(np.isfinite(coords)):
            raise DatasetError(path, f"line {number}: coordinates must be finite: {text!r}")
        name = tokens[8]
        if known is not None and name not in known:
            raise DatasetError(path, f"line {number}: unknown class {name!r}; valid: {', '.join(classes)}")
        flag = tokens[9] if len(tokens) == 10 else "0"
        if not flag.isdigit():
            raise DatasetError(path, f"line {number}: difficult flag must be a non-negative integer, got {flag!r}")
        polygons.append(coords)
        names.append(name)
        difficult.append(int(flag))
    return DotaLabels(
        np.asarray(polygons, dtype=np.float64).reshape(-1, 8), names, np.asarray(difficult, dtype=np.int64), header
    )


def write_dota_labels(
    path: str | Path,
    polygons: np.ndarray,
    names: Sequence[str],
    difficult: Sequence[int],
    header: dict[str, str] | None = None,
) -> None:
    """Write a DOTA label file (header lines first, coordinates with one decimal, DOTA's own style)."""
    lines = [f"{k}:{v}" for k, v in (header or {}).items()]
    for poly, name, diff in zip(np.asarray(polygons).reshape(-1, 8), names, difficult):
        lines.append(" ".join(f"{c:.1f}" for c in poly) + f" {name} {int(diff)}")
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""))


def find_images(image_dir: str | Path) -> list[Path]:
    """Image files in ``image_dir``, sorted by name."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DatasetError(image_dir, "image folder not found")
    return sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class DotaDataset(Dataset):
    """``root/images/*.png`` + ``root/labelTxt/*.txt`` -> (image (3, H, W) float in [0, 1], target).

    target: ``boxes`` (N, 5) float32 (cx, cy, w, h, theta) in ``convention``, ``labels`` (N,) int64,
    ``difficult`` (N,) bool, ``polygons`` (N, 8) float32, ``image_id`` str. Without a label folder
    (a test split) every image has no objects. Training augmentation: with probability
    ``flip_prob`` one of ``flip_directions`` (each equally likely) is applied to image and boxes.
    ``skip_difficult`` drops difficult objects (training); evaluation should keep them.
    A malformed label file does not stop the constructor: it is kept in ``label_errors`` (its
    ``annotations`` entry is empty) and raised when the sample is read or checked
    (:func:`~monatune.data.verify.verify_dataset` drops such samples); a missing one is an error at once.
    """

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str],
        *,
        convention: str = "le90",
        image_dir: str = "images",
        label_dir: str = "labelTxt",
        flip_prob: float = 0.0,
        flip_directions: Sequence[str] = ("horizontal", "vertical", "diagonal"),
        skip_difficult: bool = False,
        skip_empty: bool = False,
    ) -> None:
        self.root, self.classes, self.convention = Path(root), tuple(classes), convention
        self.label_dir = self.root / label_dir
        self.flip_prob, self.flip_directions = flip_prob, tuple(flip_directions)
        self.skip_difficult = skip_difficult
        self.images = find_images(self.root / image_dir)
        if not self.images:
            raise DatasetError(self.root / image_dir, f"no images ({', '.join(IMAGE_SUFFIXES)}) found")
        # A malformed label file is kept as an error of its sample (raised when the sample is read or
        # checked, see monatune.data.verify), so that the check can skip it like an unreadable image.
        self.label_errors: dict[Path, DatasetError] = {}
        self.annotations = [self._read(p.stem) for p in self.images]
        if skip_empty:
            kept = [i for i, a in enumerate(self.annotations) if len(a.names) or self._label_path(i) in self.label_errors]
            self.keep_samples(kept)

    def _label_path(self, index: int) -> Path:
        return self.label_dir / f"{self.images[index].stem}.txt"

    def _read(self, image_id: str) -> DotaLabels:
        path = self.label_dir / f"{image_id}.txt"
        empty = DotaLabels(np.zeros((0, 8)), [], np.zeros((0,), dtype=np.int64))
        if not self.label_dir.is_dir() or not path.is_file():
            if self.label_dir.is_dir():
                raise DatasetError(path, "label file missing for image")
            return empty
        try:
            return read_dota_labels(path, self.classes)
        except DatasetError as exc:
            self.label_errors[path] = exc
            return empty

    def sample_files(self, index: int) -> tuple[Path, ...]:
        label = self._label_path(index)
        return (self.images[index], label) if self.label_dir.is_dir() else (self.images[index],)

    def check_sample(self, index: int) -> None:
        """Raise the label file's error, if any, and decode the image (see :mod:`monatune.data.verify`)."""
        self._raise_label_error(index)
        read_rgb_image(self.images[index])

    def keep_samples(self, indices: Sequence[int]) -> None:
        self.images = [self.images[i] for i in indices]
        self.annotations = [self.annotations[i] for i in indices]

    def _raise_label_error(self, index: int) -> None:
        error = self.label_errors.get(self._label_path(index))
        if error is not None:
            raise DatasetError(error.path, error.problem)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        from monatune.ops.rotated_boxes import polygons_to_boxes

        self._raise_label_error(index)
        image = read_rgb_image(self.images[index]).as_subclass(torch.Tensor).float() / 255.0
        ann = self.annotations[index]
        polygons = torch.from_numpy(ann.polygons).float()
        labels = torch.from_numpy(ann.labels(self.classes))
        difficult = torch.from_numpy(ann.difficult > 0)
        if self.skip_difficult:
            polygons, labels, difficult = polygons[~difficult], labels[~difficult], difficult[~difficult]
        if self.flip_prob > 0 and random.random() < self.flip_prob:
            image, polygons = flip_image_and_polygons(image, polygons, random.choice(self.flip_directions))
        boxes = polygons_to_boxes(polygons.double(), self.convention).float()
        target = {
            "boxes": boxes,
            "labels": labels,
            "difficult": difficult,
            "polygons": polygons,
            "image_id": self.images[index].stem,
        }
        return image, target


def flip_image_and_polygons(
    image: torch.Tensor, polygons: torch.Tensor, direction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip image (3, H, W) and polygons (N, 8): x -> W - x and/or y -> H - y."""
    h, w = image.shape[-2:]
    polygons = polygons.clone()
    if direction in ("horizontal", "diagonal"):
        image, polygons[:, 0::2] = image.flip(-1), w - polygons[:, 0::2]
    if direction in ("vertical", "diagonal"):
        image, polygons[:, 1::2] = image.flip(-2), h - polygons[:, 1::2]
    if direction not in ("horizontal", "vertical", "diagonal"):
        raise ValueError(f"unknown flip direction {direction!r}; valid: horizontal, vertical, diagonal")
    return image, polygons


def collate_oriented(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """DataLoader collate for detection: keep images and targets as lists (sizes may differ)."""
    images, targets = zip(*batch)
    return list(images), list(targets)


DATASETS = ("dota", "star", "synthetic_dota")  # the oriented datasets ``data.dataset`` names


def dota_class_names(dataset: str, num_classes: int, classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """The class list of oriented ``dataset`` (``classes`` overrides it); its length must be ``num_classes``."""
    from monatune.data.synthetic_rotated import SYNTHETIC_DOTA_CLASSES

    if dataset not in DATASETS:
        raise ValueError(f"data.dataset: {dataset!r} is not an oriented dataset; valid: {', '.join(DATASETS)}")
    default = SYNTHETIC_DOTA_CLASSES if dataset == "synthetic_dota" else DATASET_CLASSES[dataset]
    names = tuple(classes if classes is not None else default)
    if len(names) != num_classes:
        raise ValueError(f"model.num_classes is {num_classes} but {dataset!r} has {len(names)} classes: {names}")
    return names


def split_names(split: str) -> list[str]:
    """``"train+val"`` -> ``["train", "val"]``."""
    names = [s.strip() for s in split.split("+") if s.strip()]
    if not names:
        raise ValueError(f"empty split name {split!r}")
    return names


__all__ = [
    "DATASETS",
    "DATASET_CLASSES",
    "DOTA_V1_CLASSES",
    "STAR_CLASSES",
    "DotaDataset",
    "DotaLabels",
    "collate_oriented",
    "dota_class_names",
    "find_images",
    "flip_image_and_polygons",
    "read_dota_labels",
    "split_names",
    "write_dota_labels",
]

