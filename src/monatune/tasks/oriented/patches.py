"""Large aerial images as overlapping patches (DOTA protocol: 1024 x 1024, overlap 200) and back.

Patch ``<image>__1__<x0>___<y0>`` (DOTA devkit naming, scale 1) covers [x0, x0 + size) x [y0, y0 + size);
patches step by size - overlap and the last one in a row/column is moved back to end at the image
border; an image smaller than a patch is padded with zeros at the bottom/right.

An object goes to a patch whole when at least ``iof_threshold`` (0.7) of it lies inside, else as the
rectangle around its part inside, flagged difficult (the rule: :mod:`~monatune.tasks.oriented.patch_objects`),
so no object inside the image is lost; :func:`split_dota` counts per split the objects kept whole,
only clipped and dropped. Detections on patches are shifted back and merged with class-aware rotated
NMS (IoU 0.1).
"""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from monatune.tasks.oriented.patch_objects import CLIPPED_DIFFICULT, MIN_CLIPPED_SIDE, ObjectShapes, window_objects

SPLIT_VERSION = 2
"""The rule that decides what goes to a patch; a folder split under another version must be split
again. 1: objects under the iof threshold were left out. 2: they go in clipped and difficult."""

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


def patch_pad_value(options: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """``data.options.patch_pad_value``: None (patches past the border padded with zeros, the default)
    or the RGB pixel (3 integers in 0-255) to pad with, e.g. the mean pixel [124, 116, 104] (SPEC §8.11:
    mmrotate's split pads with (104, 116, 124) in OpenCV's BGR order)."""
    value = options.get("patch_pad_value")
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        raise ValueError(f"data.options.patch_pad_value: {value!r} must be null or 3 integers in 0-255 (RGB)")
    return (int(value[0]), int(value[1]), int(value[2]))


def crop_patch(
    image: torch.Tensor, x0: int, y0: int, patch_size: int = 1024, pad_value: Sequence[int] | None = None
) -> torch.Tensor:
    """The (C, size, size) patch of image (C, H, W) at (x0, y0); past the border zeros, or the pixel
    ``pad_value`` (one value per channel, e.g. the mean pixel: SPEC §8.11 parity option)."""
    patch = image[:, y0 : y0 + patch_size, x0 : x0 + patch_size]
    if patch.shape[-2:] == (patch_size, patch_size):
        return patch
    out = image.new_zeros((image.shape[0], patch_size, patch_size))
    if pad_value is not None:
        out[:] = torch.tensor(list(pad_value), dtype=out.dtype).view(-1, 1, 1)
    out[:, : patch.shape[1], : patch.shape[2]] = patch
    return out


@dataclass
class SplitCounts:
    """What :func:`split_dota` did with the objects of one split (a folder of images).

    Every object is counted once in exactly one of ``kept_whole`` (whole in at least one patch: some
    window holds >= iof_threshold of it), ``clipped_only`` (in no window that much: only its clipped,
    difficult parts are in patches) and ``dropped`` (in no patch; ``dropped_objects`` names each as
    ``"<image> #<line index> <class>: <why>"``). ``whole_copies`` / ``clipped_copies`` count label lines
    written (an object in an overlap is in several patches; an object kept whole may also have clipped
    parts in its other neighbours)."""

    images: int = 0
    patches: int = 0
    objects: int = 0
    kept_whole: int = 0
    clipped_only: int = 0
    dropped: int = 0
    whole_copies: int = 0
    clipped_copies: int = 0
    dropped_objects: list[str] = field(default_factory=list)
    unreadable_images: list[str] = field(default_factory=list)  # "<path>: <why>", skipped (not strict)

    def as_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready values (what the ``split.json`` stamp records)."""
        return asdict(self)

    def summary(self) -> str:
        """One line: images -> patches; objects kept whole, only clipped, dropped."""
        return (
            f"{self.images} images -> {self.patches} patches; {self.objects} objects: {self.kept_whole} kept whole, "
            f"{self.clipped_only} only clipped (difficult), {self.dropped} dropped; label lines: "
            f"{self.whole_copies} whole, {self.clipped_copies} clipped"
            + (f"; {len(self.unreadable_images)} unreadable image(s) skipped" if self.unreadable_images else "")
        )


@dataclass
class SplitResult:
    """What :func:`split_dota` wrote: the patch ids (in writing order) and the object counts."""

    patches: list[str]
    counts: SplitCounts


def _count_image(
    counts: SplitCounts,
    image_id: str,
    objects: ObjectShapes,
    names: list[str],
    whole: np.ndarray,
    clipped: np.ndarray,
    sliver: np.ndarray,
    min_clipped_side: float,
) -> None:
    """Add one image's objects to ``counts``; ``whole``/``clipped``/``sliver`` (N,): in any window."""
    counts.objects += len(objects)
    counts.kept_whole += int(whole.sum())
    counts.clipped_only += int((clipped & ~whole).sum())
    for i in np.flatnonzero(~whole & ~clipped):
        if objects.areas[i] <= 0:
            why = "zero area and its centre in no patch"
        elif sliver[i]:
            why = f"only parts thinner than {min_clipped_side:g} px inside the patches"
        else:
            why = "outside the image"
        counts.dropped += 1
        counts.dropped_objects.append(f"{image_id} #{i} {names[i]}: {why}")


def split_dota(
    src_root: str | Path,
    dst_root: str | Path,
    *,
    patch_size: int = 1024,
    overlap: int = 200,
    iof_threshold: float = 0.7,
    min_clipped_side: float = MIN_CLIPPED_SIDE,
    keep_empty: bool = True,
    pad_value: Sequence[int] | None = None,
    strict: bool = False,
) -> SplitResult:
    """Split ``src_root/images`` (+ ``labelTxt`` if present) into patches under ``dst_root``.

    Writes ``dst_root/images/<patch id>.png`` and, when labels exist, ``dst_root/labelTxt/<patch id>.txt``
    (objects whole or clipped: module docstring). ``keep_empty=False`` skips patches without objects
    (training sets). ``pad_value``: RGB pixel past the image border (None: zeros). An image that cannot
    be decoded is skipped with one warning naming every such file (``strict``: DatasetError instead),
    the contract of the other readers. Prints one summary line to stderr and warns when objects were
    dropped. Returns the patch ids and the :class:`SplitCounts` (all zero object counts without labels).
    """
    from PIL import Image

    from monatune.data.dota import find_images, read_dota_labels, write_dota_labels
    from monatune.data.errors import DatasetError, read_rgb_image

    src_root, dst_root = Path(src_root), Path(dst_root)
    label_dir = src_root / "labelTxt"
    (dst_root / "images").mkdir(parents=True, exist_ok=True)
    if label_dir.is_dir():
        (dst_root / "labelTxt").mkdir(parents=True, exist_ok=True)
    written, counts = [], SplitCounts()
    for path in find_images(src_root / "images"):
        try:
            image = read_rgb_image(path).as_subclass(torch.Tensor)
        except DatasetError as exc:
            if strict:
                raise DatasetError(path, f"{exc.problem}; data.strict is true (false: skip it with a warning)") from None
            counts.unreadable_images.append(str(exc))
            continue
        counts.images += 1
        labels = read_dota_labels(label_dir / f"{path.stem}.txt") if label_dir.is_dir() else None
        objects = ObjectShapes.from_polygons(labels.polygons if labels is not None else np.zeros((0, 8)))
        any_whole, any_clipped, any_sliver = (np.zeros(len(objects), dtype=bool) for _ in range(3))
        for x0, y0 in patch_windows(image.shape[-1], image.shape[-2], patch_size, overlap):
            name = patch_name(path.stem, x0, y0)
            if labels is not None:
                found = window_objects(objects, x0, y0, patch_size, iof_threshold, min_clipped_side)
                any_sliver |= found.sliver
                keep = found.whole | found.clipped
                if not keep.any() and not keep_empty:
                    continue
                any_whole |= found.whole
                any_clipped |= found.clipped
                counts.whole_copies += int(found.whole.sum())
                counts.clipped_copies += int(found.clipped.sum())
                difficult = np.where(found.clipped, CLIPPED_DIFFICULT, labels.difficult)
                names = [n for n, k in zip(labels.names, keep) if k]
                out = dst_root / "labelTxt" / f"{name}.txt"
                write_dota_labels(out, found.polygons[keep], names, difficult[keep], labels.header)
            patch = crop_patch(image, x0, y0, patch_size, pad_value)
            Image.fromarray(patch.permute(1, 2, 0).numpy()).save(dst_root / "images" / f"{name}.png")
            written.append(name)
        if labels is not None:
            _count_image(counts, path.stem, objects, labels.names, any_whole, any_clipped, any_sliver, min_clipped_side)
    counts.patches = len(written)
    print(f"split_dota {src_root} -> {dst_root}: {counts.summary()}", file=sys.stderr, flush=True)
    if counts.dropped:
        listing = "\n  ".join(counts.dropped_objects[:20]) + ("\n  ..." if counts.dropped > 20 else "")
        warnings.warn(f"split_dota {src_root}: {counts.dropped} object(s) in no patch:\n  {listing}", stacklevel=2)
    if counts.unreadable_images:
        listing = "\n  ".join(counts.unreadable_images)
        warnings.warn(f"split_dota {src_root}: skipped {len(counts.unreadable_images)} unreadable image(s):\n  {listing}", stacklevel=2)
    return SplitResult(written, counts)


def merge_patch_detections(  # the class-wise merge; the configurable one is protocol.merge_detections
    patch_results: Mapping[str, Mapping[str, torch.Tensor]],
    *,
    iou_threshold: float = 0.1,
    max_per_image: int | None = None,
) -> dict[str, dict[str, torch.Tensor]]:
    """Detections per patch id -> detections per original image.

    Each value holds ``boxes`` (K, 5) in patch coordinates, ``scores`` (K,), ``labels`` (K,). Boxes
    are shifted by their patch origin, then class-aware rotated NMS at ``iou_threshold`` removes the
    duplicates the overlaps create; at most ``max_per_image`` boxes per image are kept (None: no cap,
    the public DOTA/STAR merge, SPEC §8.4).
    """
    from monatune.tasks.oriented.protocol import MergeSettings, merge_detections  # protocol imports this module

    return merge_detections(patch_results, MergeSettings(iou_threshold, False, max_per_image))


__all__ = [
    "SPLIT_VERSION",
    "SplitCounts",
    "SplitResult",
    "crop_patch",
    "merge_patch_detections",
    "parse_patch_name",
    "patch_name",
    "patch_origins",
    "patch_pad_value",
    "patch_windows",
    "split_dota",
]
