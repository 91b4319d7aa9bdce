"""Synthetic oriented-object images written as a real DOTA folder (for demos and tests, no download).

Each image is a noisy grey background with a few filled rotated rectangles; a class fixes the colour
and the aspect ratio of its rectangles, so a small detector can learn both what and how it is turned.
Files: ``root/images/<id>.png`` and ``root/labelTxt/<id>.txt`` in DOTA's format (header lines,
four corners, class, difficult flag).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw
from shapely.geometry import Polygon

from monatune.data.dota import write_dota_labels

SYNTHETIC_DOTA_CLASSES = ("bar", "plate", "block")
_COLOURS = ((220, 60, 50), (60, 200, 80), (60, 90, 230), (230, 200, 40), (200, 60, 220), (40, 210, 220))
_ASPECTS = (4.0, 2.0, 1.25, 3.0, 1.6, 2.5)


def _rectangle(cx: float, cy: float, w: float, h: float, theta: float) -> np.ndarray:
    cos, sin = math.cos(theta), math.sin(theta)
    corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    return np.array([(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in corners])


def write_synthetic_dota(
    root: str | Path,
    num_images: int = 16,
    image_size: int = 128,
    seed: int = 0,
    classes: Sequence[str] = SYNTHETIC_DOTA_CLASSES,
    objects_per_image: tuple[int, int] = (1, 4),
) -> list[str]:
    """Write ``num_images`` square images of ``image_size`` px with DOTA labels under ``root``.

    Objects (long side 25-45 % of the image) do not overlap and lie fully inside the image; class k
    has colour ``k`` and aspect ratio ``k`` of fixed tables (up to 6 classes). Returns the image ids.
    The same arguments always give the same files.
    """
    if not 1 <= len(classes) <= len(_COLOURS):
        raise ValueError(f"synthetic data supports 1 to {len(_COLOURS)} classes, got {len(classes)}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labelTxt").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = []
    for index in range(num_images):
        image_id = f"S{index:04d}"
        pixels = rng.normal(110, 12, size=(image_size, image_size, 3)).clip(0, 255).astype(np.uint8)
        canvas = Image.fromarray(pixels)
        draw = ImageDraw.Draw(canvas)
        placed: list[Polygon] = []
        polygons, names = [], []
        wanted = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
        for _ in range(50 * wanted):  # rejection sampling: no overlaps, fully inside
            if len(placed) == wanted:
                break
            label = int(rng.integers(len(classes)))
            long_side = float(rng.uniform(0.25, 0.45)) * image_size
            w, h = long_side, long_side / _ASPECTS[label]
            theta = float(rng.uniform(-math.pi / 2, math.pi / 2))
            cx, cy = rng.uniform(0, image_size, size=2)
            corners = _rectangle(float(cx), float(cy), w, h, theta)
            if corners.min() < 1 or corners.max() > image_size - 1:
                continue
            shape = Polygon(corners)
            if any(shape.buffer(2).intersects(p) for p in placed):
                continue
            placed.append(shape)
            draw.polygon([tuple(p) for p in corners], fill=_COLOURS[label])
            polygons.append(corners.reshape(-1))
            names.append(classes[label])
        canvas.save(root / "images" / f"{image_id}.png")
        write_dota_labels(
            root / "labelTxt" / f"{image_id}.txt",
            np.asarray(polygons).reshape(-1, 8),
            names,
            [0] * len(names),
            header={"imagesource": "monatune-synthetic", "gsd": "null"},
        )
        ids.append(image_id)
    return ids


__all__ = ["SYNTHETIC_DOTA_CLASSES", "write_synthetic_dota"]
