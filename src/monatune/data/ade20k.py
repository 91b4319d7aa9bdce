"""ADE20K (SceneParsing / ADEChallengeData2016) reader: image folder + label PNG folder -> (image, mask).

Layout under ``root``::

    images/training/*.jpg        annotations/training/*.png
    images/validation/*.jpg      annotations/validation/*.png

Label PNGs hold 0 ("other", ignored) and 1..150. With ``reduce_zero_label`` (the default, as the
paper's mmseg config) 0 becomes 255 (ignore) and k becomes k - 1, so classes are 0..149.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors

from monatune.data.errors import DatasetError, read_rgb_image

IGNORE_INDEX = 255
SPLITS = ("training", "validation")


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a single-channel (L or P mode) label PNG to an (H, W) uint8 array of raw label values."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "label PNG not found")
    try:
        with Image.open(path) as png:
            if png.mode not in ("L", "P"):
                raise DatasetError(path, f"label PNG must be single-channel (L or P mode), got mode {png.mode}")
            return np.array(png, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(path, f"cannot decode label PNG ({exc})") from None


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """Map raw ADE labels 0 -> 255 (ignore) and k -> k - 1 (so 1..150 -> 0..149); (H, W) uint8 -> same."""
    out = label.astype(np.int16) - 1
    out[label == 0] = IGNORE_INDEX
    return out.astype(np.uint8)


class ADE20KSegmentation(Dataset):
    """ADE20K semantic segmentation, one split.

    Item ``i`` is ``(image, mask)``: ``image`` a ``tv_tensors.Image`` (3, H, W) uint8, ``mask`` a
    ``tv_tensors.Mask`` (H, W) int64 with classes 0..num_classes-1 and 255 = ignore;
    ``transforms(image, mask)`` is applied last. Images are paired with annotations by file stem;
    an image without its PNG, a PNG of another size, or a label above ``num_classes`` raises
    :class:`DatasetError`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "training",
        transforms: Callable[[tv_tensors.Image, tv_tensors.Mask], tuple[Any, Any]] | None = None,
        reduce_zero_label: bool = True,
        num_classes: int = 150,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.transforms = transforms
        self.reduce_zero_label = reduce_zero_label
        self.num_classes = num_classes
        image_dir, label_dir = self.root / "images" / split, self.root / "annotations" / split
        for folder, what in ((image_dir, "*.jpg images"), (label_dir, "*.png label maps")):
            if not folder.is_dir():
                raise DatasetError(folder, f"folder not found; expected {what} (ADEChallengeData2016 layout)")
        self.image_paths = sorted(image_dir.glob("*.jpg"))
        if not self.image_paths:
            raise DatasetError(image_dir, "no *.jpg images found")
        self.label_paths = [label_dir / f"{p.stem}.png" for p in self.image_paths]
        missing = [p for p in self.label_paths if not p.is_file()]
        if missing:
            raise DatasetError(missing[0], f"annotation missing for image {missing[0].stem}.jpg ({len(missing)} missing in all)")

    def __len__(self) -> int:
        return len(self.image_paths)

    def sample_files(self, index: int) -> tuple[Path, ...]:
        return (self.image_paths[index], self.label_paths[index])

    def check_sample(self, index: int) -> None:
        """Decode image and label PNG and check sizes and label range (see :mod:`monatune.data.verify`)."""
        self._load(index)

    def keep_samples(self, indices: Sequence[int]) -> None:
        self.image_paths = [self.image_paths[i] for i in indices]
        self.label_paths = [self.label_paths[i] for i in indices]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, mask = self._load(index)
        if self.transforms is not None:
            return self.transforms(image, mask)
        return image, mask

    def _load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image = read_rgb_image(self.image_paths[index])
        raw = read_label_png(self.label_paths[index])
        if raw.shape != tuple(image.shape[-2:]):
            raise DatasetError(
                self.label_paths[index],
                f"label map is {raw.shape[0]}x{raw.shape[1]} but {self.image_paths[index].name} is "
                f"{image.shape[-2]}x{image.shape[-1]}",
            )
        label = reduce_zero_label(raw) if self.reduce_zero_label else raw
        bad = (label >= self.num_classes) & (label != IGNORE_INDEX)
        if bad.any():
            raise DatasetError(self.label_paths[index], f"label value {int(label[bad].max())} outside 0..{self.num_classes - 1}")
        return image, tv_tensors.Mask(torch.from_numpy(label.astype(np.int64)))
