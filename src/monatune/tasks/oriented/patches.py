"""Large aerial images as overlapping patches (DOTA protocol: 1024 x 1024, overlap 200) and back.

Patch ``<image>__1__<x0>___<y0>`` (DOTA devkit naming, scale 1) covers [x0, x0 + size) x [y0, y0 + size);
patches step by size - overlap and the last one in a row/column is moved back to end at the image
border; an image smaller than a patch is padded with zeros at the bottom/right. An object goes to a
patch when at least ``iof_threshold`` (0.7) of its polygon's area lies inside it; it keeps its whole
polygon (shifted), not a clipped one. Detections on patches are shifted back and merged with
class-aware rotated NMS (IoU 0.1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from shapely.geometry import Polygon, box as shapely_box

from monatune.tasks.oriented.nms import batched_rotated_nms

_PATCH_NAME = re.compile(r"^(?P<image>.+)__(?P<scale>[0-9.]+)__(?P<x>\d+)___(?P<y>\d+)$")


def patch_origins(length: int, patch_size: int = 1024, overlap: int = 200) -> list[int]:
    """Start offsets along one axis of ``length`` pixels."""
    if overlap >= patch_size:
        raise ValueError(f"overlap ({overlap}) must be smaller than patch_size ({patch_size})")
    if length <= patch_size:
        return [0]
    step = patch_size - overlap
    starts = list(range(0, length - patch_size, step))
    starts.append(length - patch_size)  # the last patch ends exactly at the border
    return sorted(set(starts))


def patch_windows(width: int, height: int, patch_size: int = 1024, overlap: int = 200) -> list[tuple[int, int]]:
    """All patch origins (x0, y0) of a width x height image, row by row."""
    xs, ys = patch_origins(width, patch_size, overlap), patch_origins(height, patch_size, overlap)
    return [(x, y) for y in ys for x in xs]


def patch_name(image_id: str, x0: int, y0: int) -> str:
    """DOTA devkit patch id: ``P0001__1__824___0``."""
    return f"{image_id}__1__{x0}___{y0}"


def parse_patch_name(name: str) -> tuple[str, int, int]:
    """(image id, x0, y0) of a patch id; a name without the pattern is a whole image at (0, 0)."""
    match = _PATCH_NAME.match(name)
    if match is None:
        return name, 0, 0
    return match["image"], int(match["x"]), int(match["y"])


def objects_in_window(
    polygons: np.ndarray, x0: int, y0: int, patch_size: int, iof_threshold: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    """Which polygons (N, 8) belong to the patch at (x0, y0) -> (mask (N,), polygons shifted into it (N, 8))."""
    window = shapely_box(x0, y0, x0 + patch_size, y0 + patch_size)
    keep = np.zeros(len(polygons), dtype=bool)
    for i, poly in enumerate(np.asarray(polygons, dtype=np.float64).reshape(-1, 8)):
        shape = Polygon(poly.reshape(4, 2))
        if not shape.is_valid:
            shape = shape.convex_hull
        if shape.area <= 0:  # degenerate: keep it where its centre lies
            cx, cy = poly[0::2].mean(), poly[1::2].mean()
            keep[i] = x0 <= cx < x0 + patch_size and y0 <= cy < y0 + patch_size
        else:
            keep[i] = shape.intersection(window).area / shape.area >= iof_threshold
    shifted = np.asarray(polygons, dtype=np.float64).reshape(-1, 8) - np.tile([x0, y0], 4)
    return keep, shifted


def crop_patch(image: torch.Tensor, x0: int, y0: int, patch_size: int = 1024) -> torch.Tensor:
    """The (C, size, size) patch of image (C, H, W) at (x0, y0), zero-padded past the border."""
    patch = image[:, y0 : y0 + patch_size, x0 : x0 + patch_size]
    if patch.shape[-2:] == (patch_size, patch_size):
        return patch
    out = image.new_zeros((image.shape[0], patch_size, patch_size))
    out[:, : patch.shape[1], : patch.shape[2]] = patch
    return out


def split_dota(
    src_root: str | Path,
    dst_root: str | Path,
    *,
    patch_size: int = 1024,
    overlap: int = 200,
    iof_threshold: float = 0.7,
    keep_empty: bool = True,
) -> list[str]:
    """Split ``src_root/images`` (+ ``labelTxt`` if present) into patches under ``dst_root``.

    Writes ``dst_root/images/<patch id>.png`` and, when labels exist, ``dst_root/labelTxt/<patch id>.txt``.
    Returns the patch ids. ``keep_empty=False`` skips patches without objects (training sets).
    """
    from PIL import Image

    from monatune.data.dota import find_images, read_dota_labels, write_dota_labels
    from monatune.data.errors import read_rgb_image

    src_root, dst_root = Path(src_root), Path(dst_root)
    label_dir = src_root / "labelTxt"
    (dst_root / "images").mkdir(parents=True, exist_ok=True)
    if label_dir.is_dir():
        (dst_root / "labelTxt").mkdir(parents=True, exist_ok=True)
    written = []
    for path in find_images(src_root / "images"):
        image = read_rgb_image(path).as_subclass(torch.Tensor)
        labels = read_dota_labels(label_dir / f"{path.stem}.txt") if label_dir.is_dir() else None
        for x0, y0 in patch_windows(image.shape[-1], image.shape[-2], patch_size, overlap):
            name = patch_name(path.stem, x0, y0)
            if labels is not None:
                keep, shifted = objects_in_window(labels.polygons, x0, y0, patch_size, iof_threshold)
                if not keep.any() and not keep_empty:
                    continue
                names = [n for n, k in zip(labels.names, keep) if k]
                out = dst_root / "labelTxt" / f"{name}.txt"
                write_dota_labels(out, shifted[keep], names, labels.difficult[keep], labels.header)
            patch = crop_patch(image, x0, y0, patch_size)
            Image.fromarray(patch.permute(1, 2, 0).numpy()).save(dst_root / "images" / f"{name}.png")
            written.append(name)
    return written


def merge_patch_detections(
    patch_results: Mapping[str, Mapping[str, torch.Tensor]],
    *,
    iou_threshold: float = 0.1,
    max_per_image: int = 2000,
) -> dict[str, dict[str, torch.Tensor]]:
    """Detections per patch id -> detections per original image.

    Each value holds ``boxes`` (K, 5) in patch coordinates, ``scores`` (K,), ``labels`` (K,). Boxes
    are shifted by their patch origin, then class-aware rotated NMS at ``iou_threshold`` removes the
    duplicates the overlaps create; at most ``max_per_image`` boxes per image are kept.
    """
    grouped: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
    for name, result in patch_results.items():
        image_id, x0, y0 = parse_patch_name(name)
        boxes = result["boxes"].clone()
        boxes[:, 0] += x0
        boxes[:, 1] += y0
        grouped.setdefault(image_id, []).append((boxes, result["scores"], result["labels"]))
    merged = {}
    for image_id, parts in grouped.items():
        boxes, scores, labels = (torch.cat(p) for p in zip(*parts))
        keep = batched_rotated_nms(boxes, scores, labels, iou_threshold)[:max_per_image]
        merged[image_id] = {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
    return merged


__all__ = [
    "crop_patch",
    "merge_patch_detections",
    "objects_in_window",
    "parse_patch_name",
    "patch_name",
    "patch_origins",
    "patch_windows",
    "split_dota",
]
