"""Procedural shape-and-texture images: the pretext task the embedded Swin is pretrained on.

Each image shows 1-3 objects of one class on a smooth, noisy background. A class is a pair
(shape, texture): 6 shapes x 4 textures = 24 classes. Colours, positions, scales, rotations,
texture periods and directions are random, so the label is carried by form and texture only.
Image ``i`` of a split is a pure function of ``(seed, split, i)``: it is the same whether drawn
alone or in a batch, and needs no stored file (across CPUs, float32 sin/cos may differ in the
last bit, which can move a rare pixel by one grey level). Rendering is vectorised over the batch:
about 1-2 ms per image on one core.

    images, labels = render_synthetic(range(256), seed=0)      # uint8 (256, 64, 64, 3), int64 (256,)
    ds = SyntheticShapes(10_000, seed=0, split="train")         # ds[i] -> (float (3, 64, 64), int)
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from monatune.backbones.stats import SYNTHETIC_MEAN, SYNTHETIC_STD

SHAPES = ("disk", "square", "triangle", "ring", "cross", "ell")
TEXTURES = ("solid", "stripes", "checker", "gradient")
CLASS_NAMES = tuple(f"{s}/{t}" for s in SHAPES for t in TEXTURES)  # label = shape * 4 + texture
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 64
MAX_OBJECTS = 3

# Channel statistics of the rendered images in [0, 1], rounded (``backbones.stats``, where the embedded
# backbones take them from); ``normalize`` standardises with them.
MEAN, STD = SYNTHETIC_MEAN, SYNTHETIC_STD

_SPLITS = {"train": 0, "val": 1, "test": 2}
_NOISE_GRID = 8  # background noise: an 8x8 random field upsampled bilinearly to 64x64


def _upsample_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix of bilinear interpolation with half-pixel centres (align_corners=False)."""
    pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, src - 1)
    frac = pos - lo
    mat = np.zeros((dst, src))
    mat[np.arange(dst), lo] += 1 - frac
    mat[np.arange(dst), hi] += frac
    return mat


def _draw_parameters(seed: int, split: int, index: int) -> dict[str, np.ndarray]:
    """All random choices for one image, from its own generator (so batches never shift the stream)."""
    rng = np.random.default_rng([seed, split, index])
    n = MAX_OBJECTS
    # Contrast by construction: a dark background (channels in [0, 0.45]) with light objects, or
    # the reverse; a texture's second colour lies halfway between the object and background ranges.
    dark, light = (0.0, 0.45), (0.55, 1.0)
    fg, bg = (light, dark) if rng.integers(2) else (dark, light)
    object_color = rng.uniform(*fg, size=(n, 3))
    second_color = (object_color + rng.uniform(*bg, size=(n, 3))) / 2
    return {
        "label": rng.integers(NUM_CLASSES),
        "count": rng.integers(1, n + 1),
        "center": rng.uniform(14, IMAGE_SIZE - 14, size=(n, 2)),
        "radius": rng.uniform(10, 22, size=n),
        "angle": rng.uniform(0, 2 * np.pi, size=n),
        "colors": np.stack([object_color, second_color], axis=1),
        "period": rng.uniform(0.3, 0.6, size=n),  # texture period in object radii
        "tex_angle": rng.uniform(0, 2 * np.pi, size=n),
        "background": rng.uniform(*bg, size=(2, 3)),
        "bg_angle": rng.uniform(0, 2 * np.pi),
        "bg_noise": rng.normal(0, 0.06, size=(_NOISE_GRID, _NOISE_GRID, 3)),
        "pixel_noise": rng.normal(0, 0.02, size=(IMAGE_SIZE, IMAGE_SIZE, 3)),
    }


def _shape_distance(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (in object radii, < 0 inside) to shape ``SHAPES[shape]``.

    u, v: (..., H, W) object-frame coordinates, unit = object radius.
    """
    name = SHAPES[shape]
    if name in ("disk", "ring"):
        rho = np.hypot(u, v)
        return rho - 0.9 if name == "disk" else np.abs(rho - 0.7) - 0.22
    au, av = np.abs(u), np.abs(v)
    if name == "square":
        return np.maximum(au, av) - 0.75
    if name == "triangle":  # three edges whose outward normals point at 90, 210 and 330 degrees
        edges = [np.cos(a) * u + np.sin(a) * v for a in (np.pi / 2, 7 * np.pi / 6, 11 * np.pi / 6)]
        return np.maximum(np.maximum(edges[0], edges[1]), edges[2]) - 0.5
    arm = 0.28
    if name == "cross":
        return np.minimum(np.maximum(au - arm, av - 1), np.maximum(av - arm, au - 1))
    # "ell": a vertical bar and a horizontal foot sharing a corner
    bar = np.maximum(np.abs(u + 0.6) - arm, av - 0.9)
    foot = np.maximum(au - 0.9, np.abs(v - 0.6) - arm)
    return np.minimum(bar, foot)


def _texture(texture: int, u: np.ndarray, v: np.ndarray, period: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Mix weight in [0, 1] between an object's two colours for ``TEXTURES[texture]``.

    u, v: (B, H, W) object-frame coordinates; period, angle: (B,) texture period (radii) and direction.
    """
    name = TEXTURES[texture]
    if name == "solid":
        return np.zeros_like(u)
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    a = c * u + s * v
    if name == "gradient":
        return np.clip((a + 1) / 2, 0, 1)
    a = a / period[:, None, None]
    if name == "stripes":
        return (np.sin(2 * np.pi * a) > 0).astype(u.dtype)
    b = (-s * u + c * v) / period[:, None, None]
    return ((np.floor(a) + np.floor(b)) % 2).astype(u.dtype)


def render_synthetic(
    indices: Iterable[int], seed: int = 0, split: str = "train", with_masks: bool = False
) -> tuple[np.ndarray, ...]:
    """Render images ``indices`` of a split.

    Returns (images uint8 (B, 64, 64, 3), labels int64 (B,)); label = shape_id * 4 + texture_id.
    ``with_masks``: also uint8 (B, 64, 64) semantic masks, 0 = background and shape_id + 1 where an
    object covers at least half the pixel (later objects paint over earlier ones, as in the image).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    params = [_draw_parameters(seed, _SPLITS[split], int(i)) for i in indices]
    if not params:
        empty = (np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8), np.zeros(0, np.int64))
        return (*empty, np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)) if with_masks else empty
    p = {k: np.stack([q[k] for q in params]) for k in params[0]}
    labels = p["label"].astype(np.int64)
    shape, texture = labels // len(TEXTURES), labels % len(TEXTURES)

    f32 = np.float32
    coords = np.arange(IMAGE_SIZE, dtype=f32) + f32(0.5)
    y, x = np.meshgrid(coords, coords, indexing="ij")  # (H, W), pixel centres
    up = _upsample_matrix(_NOISE_GRID, IMAGE_SIZE).astype(f32)

    # background: a linear blend of two colours along a random direction, plus smooth noise
    cb, sb = np.cos(p["bg_angle"]).astype(f32), np.sin(p["bg_angle"]).astype(f32)
    ramp = (cb[:, None, None] * (x - 32) + sb[:, None, None] * (y - 32)) / 64 + f32(0.5)
    bg0, bg1 = p["background"][:, 0, None, None, :].astype(f32), p["background"][:, 1, None, None, :].astype(f32)
    image = bg0 + (bg1 - bg0) * ramp[..., None]
    noise = up @ p["bg_noise"].astype(f32).transpose(0, 3, 1, 2) @ up.T  # (B, 3, H, W)
    image = image + noise.transpose(0, 2, 3, 1)

    masks = np.zeros((len(params), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for k in range(MAX_OBJECTS):
        r = p["radius"][:, k, None, None].astype(f32)
        dx, dy = x - p["center"][:, k, 0, None, None].astype(f32), y - p["center"][:, k, 1, None, None].astype(f32)
        ca, sa = np.cos(p["angle"][:, k]).astype(f32)[:, None, None], np.sin(p["angle"][:, k]).astype(f32)[:, None, None]
        u, v = (ca * dx + sa * dy) / r, (-sa * dx + ca * dy) / r
        distance = np.empty_like(u)
        mix = np.empty_like(u)
        for sid in np.unique(shape):
            sel = shape == sid
            distance[sel] = _shape_distance(int(sid), u[sel], v[sel])
        for tid in np.unique(texture):
            sel = texture == tid
            mix[sel] = _texture(int(tid), u[sel], v[sel], p["period"][sel, k].astype(f32), p["tex_angle"][sel, k].astype(f32))
        # coverage from the distance in pixels: a one-pixel anti-aliased edge
        alpha = np.clip(f32(0.5) - distance * r, 0, 1) * (k < p["count"])[:, None, None]
        c0, c1 = p["colors"][:, k, 0, None, None, :].astype(f32), p["colors"][:, k, 1, None, None, :].astype(f32)
        obj = c0 + (c1 - c0) * mix[..., None]
        image = image + (obj - image) * alpha[..., None]
        masks = np.where(alpha >= 0.5, (shape + 1).astype(np.uint8)[:, None, None], masks)
    image = np.clip(image + p["pixel_noise"].astype(f32), 0, 1)
    images = np.round(image * 255).astype(np.uint8)
    return (images, labels, masks) if with_masks else (images, labels)


def normalize(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) or (H, W, 3) -> float (B, 3, H, W) / (3, H, W), standardised with MEAN/STD."""
    t = torch.as_tensor(images)
    t = t.movedim(-1, -3).float() / 255
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (t - mean) / std


class SyntheticShapes(Dataset):
    """``size`` procedural images of one split, rendered on demand: ``ds[i] -> (float (3, 64, 64), label)``.

    Images are normalised with ``MEAN``/``STD``; ``CLASS_NAMES[label]`` names the class.
    Splits draw from disjoint random streams, so train and val never share an image.
    ``get_batch(indices)`` renders many at once (vectorised, much faster than item by item).
    """

    classes = CLASS_NAMES

    def __init__(self, size: int, seed: int = 0, split: str = "train") -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
        self.size, self.seed, self.split = int(size), int(seed), split

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        images, labels = render_synthetic([index], self.seed, self.split)
        return normalize(images[0]), int(labels[0])

    def get_batch(self, indices: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(float (B, 3, 64, 64), int64 (B,)) for ``indices``, equal to stacking ``ds[i]``."""
        images, labels = render_synthetic(indices, self.seed, self.split)
        return normalize(images), torch.from_numpy(labels)
