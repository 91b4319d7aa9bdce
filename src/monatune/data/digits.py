"""scikit-learn's bundled handwritten digits as a small, offline, real-image downstream task.

1797 greyscale 8x8 scans of the digits 0-9 (``sklearn.datasets.load_digits``, shipped with
scikit-learn: nothing to download). Here they are upsampled bilinearly to 64x64, ink made bright
(ink 1, paper 0), replicated to 3 channels and standardised with the pretraining statistics of the
embedded backbone, so they differ from the procedural pretraining images in content only.

    train = Digits("train", seed=0, augment=True)   # train[i] -> (float (3, 64, 64), label)
    val = Digits("val", seed=0)                      # the other 20 %, stratified by class
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from monatune.data.synthetic_images import MEAN, STD

DIGIT_CLASSES = tuple(str(d) for d in range(10))
NUM_DIGITS = 1797


def digits_split(seed: int = 0, val_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, val indices) into ``load_digits()``: disjoint, stratified by class, fixed by ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    train, val = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, stratify=labels, random_state=seed
    )
    return np.sort(train), np.sort(val)


class Digits(Dataset):
    """One split of the digits: ``ds[i] -> (float (3, S, S), label in 0..9)``, S = ``image_size``.

    Args:
        split: "train", "val" or "all" (every image, no split).
        seed: fixes the stratified split.
        val_fraction: share of each class held out for "val".
        image_size: side after bilinear upsampling from 8x8.
        augment: a random affine per item (shift up to 1/8 of the side, rotation up to 10 degrees,
            scale 0.9-1.1), drawn from torch's global generator (seed it, or each DataLoader worker).
    """

    classes = DIGIT_CLASSES

    def __init__(
        self,
        split: str = "train",
        *,
        seed: int = 0,
        val_fraction: float = 0.2,
        image_size: int = 64,
        augment: bool = False,
    ) -> None:
        from sklearn.datasets import load_digits

        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        data = load_digits()
        if split == "all":
            indices = np.arange(len(data.target))
        else:
            indices = digits_split(seed, val_fraction)[0 if split == "train" else 1]
        self.indices = indices
        self.split, self.augment = split, augment
        pixels = torch.from_numpy(data.images[indices]).float().unsqueeze(1) / 16  # (N, 1, 8, 8), ink = 1
        pixels = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", align_corners=False)
        # every channel has the same statistics, so one grey channel stands for all three
        self.images = (pixels - MEAN[0]) / STD[0]
        self.labels = torch.from_numpy(data.target[indices]).long()
        self._background = (0 - MEAN[0]) / STD[0]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.augment:
            image = self._random_affine(image)
        return image.expand(3, -1, -1), int(self.labels[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split without augmentation: (float (N, 3, S, S), int64 (N,))."""
        return self.images.expand(-1, 3, -1, -1), self.labels

    def _random_affine(self, image: torch.Tensor) -> torch.Tensor:
        angle = math.radians(float(torch.empty(()).uniform_(-10, 10)))
        scale = float(torch.empty(()).uniform_(0.9, 1.1))
        shift = torch.empty(2).uniform_(-0.25, 0.25)  # grid units: the side spans 2, so 1/8 of it
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        theta = torch.tensor([[cos, -sin, float(shift[0])], [sin, cos, float(shift[1])]]).unsqueeze(0)
        grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
        # sample the image shifted so that outside pixels read as paper, not as zero
        out = F.grid_sample(image[None] - self._background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out[0] + self._background
