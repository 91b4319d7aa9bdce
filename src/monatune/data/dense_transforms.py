"""Train and eval augmentation for the dense tasks (SPEC §5), on torchvision.transforms.v2 + tv_tensors.

Every pipeline takes ``(image, target)`` with ``image`` a ``tv_tensors.Image`` (3, H, W) uint8 and
``target`` either a detection dict (``boxes`` ``tv_tensors.BoundingBoxes``, ``labels``, optional
``masks`` ``tv_tensors.Mask`` (N, H, W) and per-box ``difficult``/``iscrowd``/``area``) or a
semantic ``tv_tensors.Mask`` (H, W); boxes and masks move with the image. Images come out float32
in [0, 1] (ImageNet-normalised when ``normalize=True``). All sizes are arguments, so a CPU run can
use e.g. ``scale=(256, 128)`` where the paper uses (1000, 600).

Sizes follow mmcv: a "scale" (long, short) fits an image inside long x short keeping its aspect
ratio, i.e. factor = min(long / max(h, w), short / min(h, w)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# kept aligned with the boxes when boxes are dropped; "area" is not rescaled (COCO AP reads the original)
PER_BOX_KEYS = ("labels", "difficult", "iscrowd", "area")


def _image_size(flat_inputs: list[Any]) -> tuple[int, int]:
    for inpt in flat_inputs:
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return tuple(F.get_size(inpt))  # type: ignore[return-value]
    raise TypeError("expected a tv_tensors.Image or tv_tensors.Mask among the inputs")


def _semantic_mask(flat_inputs: list[Any]) -> torch.Tensor | None:
    for inpt in flat_inputs:
        if isinstance(inpt, tv_tensors.Mask) and (inpt.ndim == 2 or (inpt.ndim == 3 and inpt.shape[0] == 1)):
            return inpt.reshape(inpt.shape[-2:])
    return None


def _per_box_tensors(inputs: Any) -> tuple[torch.Tensor, ...]:
    """``labels_getter`` for SanitizeBoundingBoxes: every per-box tensor of the target dict."""
    target = inputs[1] if isinstance(inputs, (tuple, list)) and len(inputs) > 1 else inputs
    return tuple(target[k] for k in PER_BOX_KEYS if isinstance(target, dict) and isinstance(target.get(k), torch.Tensor))


def keep_ratio_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """(H, W) after fitting (height, width) into ``scale`` = (long, short) keeping aspect ratio."""
    long_side, short_side = max(scale), min(scale)
    factor = min(long_side / max(height, width), short_side / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


class KeepRatioResize(v2.Transform):
    """Resize to fit a (long, short) scale keeping aspect ratio (mmcv ``Resize(keep_ratio=True)``).

    ``scale`` is one (long, short) pair or a list to draw from uniformly (mmdet's multi-scale
    "value" mode); with ``ratio_range`` the scale is multiplied by r ~ U(ratio_range) (mmseg).
    Images use antialiased bilinear; masks use nearest-exact, which samples the pixel centre
    (legacy "nearest" shifts masks by up to half the scale factor against the image and boxes).
    ``images_only`` leaves masks and boxes as they are (semantic eval: score at label resolution).
    """

    def __init__(
        self,
        scale: tuple[int, int] | Sequence[tuple[int, int]],
        ratio_range: tuple[float, float] | None = None,
        images_only: bool = False,
    ) -> None:
        super().__init__()
        scales = [tuple(scale)] if isinstance(scale[0], int) else [tuple(x) for x in scale]  # type: ignore[arg-type]
        self.scales, self.ratio_range, self.images_only = scales, ratio_range, images_only

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        long_side, short_side = self.scales[int(torch.randint(len(self.scales), ()))]
        if self.ratio_range is not None:
            low, high = self.ratio_range
            ratio = low + (high - low) * float(torch.rand(()))
            long_side, short_side = int(long_side * ratio), int(short_side * ratio)
        return {"size": list(keep_ratio_size(*_image_size(flat_inputs), (long_side, short_side)))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return inpt if self.images_only else F.resize(inpt, params["size"], interpolation=v2.InterpolationMode.NEAREST_EXACT)
        if self.images_only and isinstance(inpt, tv_tensors.BoundingBoxes):
            return inpt
        return F.resize(inpt, params["size"], antialias=True)


class RandomSizeCrop(v2.Transform):
    """mmdet ``RandomCrop(crop_type="absolute_range")``: height and width each drawn uniformly from
    [min_size, max_size] (capped at the image), then a uniform position. Boxes are clipped; follow
    with SanitizeBoundingBoxes to drop those left empty (crops without objects are allowed)."""

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        self.min_size, self.max_size = min_size, max_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _image_size(flat_inputs)
        crop_h = int(torch.randint(min(height, self.min_size), min(height, self.max_size) + 1, ()))
        crop_w = int(torch.randint(min(width, self.min_size), min(width, self.max_size) + 1, ()))
        top = int(torch.randint(0, height - crop_h + 1, ()))
        left = int(torch.randint(0, width - crop_w + 1, ()))
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.crop(inpt, **params)


class CatMaxRatioCrop(v2.Transform):
    """mmseg ``RandomCrop`` with ``cat_max_ratio``: a random ``size`` crop (capped at the image),
    redrawn up to ``max_tries`` times while one class covers >= ``cat_max_ratio`` of the crop's
    labelled pixels (``ignore_index`` not counted) or the crop holds a single class; the last
    draw is kept. Crops smaller than ``size`` (small images) are filled up by :class:`PadTo`."""

    def __init__(self, size: int | tuple[int, int], cat_max_ratio: float = 0.75, ignore_index: int = 255, max_tries: int = 10) -> None:
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.cat_max_ratio, self.ignore_index, self.max_tries = cat_max_ratio, ignore_index, max_tries

    def _draw(self, height: int, width: int) -> dict[str, int]:
        crop_h, crop_w = min(self.size[0], height), min(self.size[1], width)
        top = int(torch.randint(0, height - crop_h + 1, ()))
        left = int(torch.randint(0, width - crop_w + 1, ()))
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def _acceptable(self, seg: torch.Tensor, p: dict[str, int]) -> bool:
        crop = seg[p["top"] : p["top"] + p["height"], p["left"] : p["left"] + p["width"]]
        counts = torch.unique(crop[crop != self.ignore_index], return_counts=True)[1]
        return len(counts) > 1 and float(counts.max()) / float(counts.sum()) < self.cat_max_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _image_size(flat_inputs)
        params = self._draw(height, width)
        seg = _semantic_mask(flat_inputs)
        if seg is not None and self.cat_max_ratio < 1.0:
            for _ in range(self.max_tries):
                if self._acceptable(seg, params):
                    break
                params = self._draw(height, width)
        return params

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.crop(inpt, **params)


class PadTo(v2.Transform):
    """Pad bottom and right up to ``size`` (H, W); images with ``fill`` (0), masks with ``mask_fill`` (255)."""

    def __init__(self, size: int | tuple[int, int], fill: float = 0.0, mask_fill: int = 255) -> None:
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.fill, self.mask_fill = fill, mask_fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _image_size(flat_inputs)
        return {"padding": [0, 0, max(self.size[1] - width, 0), max(self.size[0] - height, 0)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        fill = self.mask_fill if isinstance(inpt, tv_tensors.Mask) else self.fill
        return F.pad(inpt, params["padding"], fill=fill)


class PhotometricDistortion(v2.Transform):
    """mmseg ``PhotoMetricDistortion`` on float images in [0, 1]; each step runs with probability 0.5:
    brightness + U(-delta, delta) (``brightness_delta`` in 0..255 units), contrast x U(range)
    (before or after the colour steps, at random), saturation (torchvision's blend with grey, where
    mmseg scales HSV saturation), hue + U(-hue_delta, hue_delta) as a fraction of the colour circle
    (mmseg's 18 of OpenCV's 180 = 0.1)."""

    def __init__(
        self,
        brightness_delta: float = 32.0,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: float = 0.1,
    ) -> None:
        super().__init__()
        self.brightness_delta, self.hue_delta = brightness_delta, hue_delta
        self.contrast_range, self.saturation_range = contrast_range, saturation_range

    @staticmethod
    def _uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(()))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        coin = torch.rand(5) < 0.5
        return {
            "brightness": self._uniform(-self.brightness_delta, self.brightness_delta) / 255.0 if coin[0] else None,
            "contrast": self._uniform(*self.contrast_range) if coin[1] else None,
            "contrast_first": bool(torch.rand(()) < 0.5),
            "saturation": self._uniform(*self.saturation_range) if coin[2] else None,
            "hue": self._uniform(-self.hue_delta, self.hue_delta) if coin[3] else None,
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, (tv_tensors.Mask, tv_tensors.BoundingBoxes)) or not isinstance(inpt, torch.Tensor):
            return inpt
        if not inpt.is_floating_point():
            raise TypeError("PhotometricDistortion expects a float image in [0, 1]; put ToDtype(scale=True) before it")
        out = inpt.as_subclass(torch.Tensor)
        if params["brightness"] is not None:
            out = (out + params["brightness"]).clamp(0.0, 1.0)
        contrast = params["contrast"]
        if contrast is not None and params["contrast_first"]:
            out = (out * contrast).clamp(0.0, 1.0)
        if params["saturation"] is not None:
            out = F.adjust_saturation(out, params["saturation"])
        if params["hue"] is not None:
            out = F.adjust_hue(out, params["hue"])
        if contrast is not None and not params["contrast_first"]:
            out = (out * contrast).clamp(0.0, 1.0)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


def _to_float() -> v2.Transform:
    return v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)


def _normalize(enabled: bool) -> list[v2.Transform]:
    return [v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)] if enabled else []


def _finish(normalize: bool) -> list[v2.Transform]:
    return [_to_float(), *_normalize(normalize)]


def detection_train_transforms(scale: tuple[int, int] = (1000, 600), flip_prob: float = 0.5, normalize: bool = False) -> v2.Compose:
    """VOC RetinaNet recipe: fit into ``scale`` keeping aspect, horizontal flip with ``flip_prob``."""
    return v2.Compose([KeepRatioResize(scale), v2.RandomHorizontalFlip(flip_prob), *_finish(normalize)])


def detection_eval_transforms(scale: tuple[int, int] = (1000, 600), normalize: bool = False) -> v2.Compose:
    """VOC test: fit into ``scale`` keeping aspect (map predicted boxes back to the original size
    before :class:`~monatune.metrics.voc07_map.VOC07MAP`)."""
    return v2.Compose([KeepRatioResize(scale), *_finish(normalize)])


def instance_train_transforms(
    short_sides: Sequence[int] = tuple(range(480, 801, 32)),
    max_size: int = 1333,
    crop_short_sides: Sequence[int] = (400, 500, 600),
    crop_size: tuple[int, int] = (384, 600),
    flip_prob: float = 0.5,
    normalize: bool = False,
) -> v2.Compose:
    """Swin COCO recipe: flip, then with probability 1/2 each either (a) short side drawn from
    ``short_sides`` (long side <= ``max_size``) or (b) short side from ``crop_short_sides``, a crop
    of height and width in ``crop_size`` range, then (a)'s resize. Empty boxes and their masks,
    labels and per-box flags are dropped at the end."""
    multi_scale = KeepRatioResize([(max_size, s) for s in short_sides])
    crop_branch = v2.Compose(
        [
            KeepRatioResize([(max_size, s) for s in crop_short_sides]),
            RandomSizeCrop(*crop_size),
            KeepRatioResize([(max_size, s) for s in short_sides]),
        ]
    )
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(flip_prob),
            v2.RandomChoice([multi_scale, crop_branch]),
            v2.SanitizeBoundingBoxes(labels_getter=_per_box_tensors),
            *_finish(normalize),
        ]
    )


def semantic_train_transforms(
    scale: tuple[int, int] = (2048, 512),
    ratio_range: tuple[float, float] = (0.5, 2.0),
    crop_size: int | tuple[int, int] = 512,
    cat_max_ratio: float = 0.75,
    flip_prob: float = 0.5,
    ignore_index: int = 255,
    photometric: bool = True,
    normalize: bool = False,
) -> v2.Compose:
    """ADE20K UperNet recipe: random-ratio keep-aspect resize, cat-max-ratio crop, flip, photometric
    distortion, then pad to ``crop_size`` (image with 0 after optional normalisation, as mmseg;
    mask with ``ignore_index``)."""
    return v2.Compose(
        [
            KeepRatioResize(scale, ratio_range=ratio_range),
            CatMaxRatioCrop(crop_size, cat_max_ratio=cat_max_ratio, ignore_index=ignore_index),
            v2.RandomHorizontalFlip(flip_prob),
            _to_float(),
            *([PhotometricDistortion()] if photometric else []),
            *_normalize(normalize),
            PadTo(crop_size, fill=0.0, mask_fill=ignore_index),
        ]
    )


def semantic_eval_transforms(scale: tuple[int, int] = (2048, 512), normalize: bool = False) -> v2.Compose:
    """ADE20K test: resize only the image to fit ``scale``; the mask keeps its size, so logits must
    be upsampled to the label size before :class:`~monatune.metrics.miou.MeanIoU`."""
    return v2.Compose([KeepRatioResize(scale, images_only=True), *_finish(normalize)])
