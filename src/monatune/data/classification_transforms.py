"""The paper's classification transforms: RandomResizedCrop + flip for training, resize + centre crop for eval;
and :func:`eval_transform_for`, the one eval transform of a config's data that validation and
``monatune predict`` both use."""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms.functional import pil_to_tensor

from monatune.backbones.stats import IMAGENET_MEAN, IMAGENET_STD, Stats
from monatune.data.synthetic_images import MEAN, STD



class DataSection(Protocol):
    """What the eval transform reads of a config's ``data`` section (``engine.config.DataConfig``)."""

    dataset: str
    image_size: int
    resize_size: int


def train_transform(size: int = 224, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> T.Compose:
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])


def eval_transform(size: int = 224, resize: int = 256, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> T.Compose:
    return T.Compose([T.Resize(resize), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])


def digit_pixels(grey: torch.Tensor, size: int) -> torch.Tensor:
    """Grey digit images (N, 1, h, w), ink bright, in 0-1 -> (N, 1, size, size) as the model sees them:
    bilinear resize (upsampling from sklearn's 8x8), standardised with the embedded backbone's statistics
    (every channel has the same ones, so one grey channel stands for all three)."""
    pixels = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (pixels - MEAN[0]) / STD[0]


class DigitsEvalTransform:
    """PIL image of a digit (ink bright on a dark background, as sklearn's digits; any size) ->
    float (3, size, size): the grey level (mean of R, G, B) through :func:`digit_pixels`, as the
    ``digits`` dataset prepares its own images. A class, not a closure, so DataLoader workers can pickle it."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        grey = pil_to_tensor(image.convert("RGB")).float().mean(dim=0, keepdim=True) / 255
        return digit_pixels(grey[None], self.size)[0].expand(3, -1, -1)


def eval_transform_for(data: DataSection, stats: Stats = (IMAGENET_MEAN, IMAGENET_STD)) -> Callable[[Image.Image], torch.Tensor]:
    """The eval transform of ``data`` (a config's ``data`` section) from a PIL RGB image to the model's
    input (3, image_size, image_size): the ``digits`` set's own preparation for ``digits``, else resize to
    ``resize_size``, centre crop ``image_size`` and standardisation with ``stats`` (the backbone's
    ``backbones.stats.input_stats``)."""
    if data.dataset == "digits":
        return DigitsEvalTransform(data.image_size)
    return eval_transform(data.image_size, data.resize_size, *stats)
