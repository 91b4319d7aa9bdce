"""A labelled list of image files, checked for corrupt images before training starts."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image
from torch.utils.data import Dataset

from monatune.data.errors import to_rgb8


class CorruptImageError(ValueError):
    """An image file cannot be decoded; the message names it."""


def find_unreadable(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """(path, reason) for every file PIL cannot open and decode."""
    bad = []
    for path in paths:
        try:
            with Image.open(path) as im:
                im.load()  # full decode: truncated files fail here, not only in verify()
                to_rgb8(im, path)  # 16-bit / float images: refused here rather than clipped later
        except Exception as exc:  # PIL raises many types for bad data
            bad.append((path, f"{type(exc).__name__}: {exc}"))
    return bad


class LabeledImageList(Dataset):
    """(path, label) samples -> (transform(RGB image), label).

    With ``verify=True`` every image is decoded once up front: unreadable files are dropped with a
    single warning naming them all, or raise CorruptImageError when ``strict``.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str | Path, int]],
        transform: Callable | None = None,
        *,
        classes: Sequence[str] | None = None,
        strict: bool = False,
        verify: bool = True,
        source: str = "",
    ) -> None:
        self.samples = [(Path(p), int(y)) for p, y in samples]
        self.transform = transform
        self.classes = list(classes) if classes is not None else None
        self.skipped: list[tuple[Path, str]] = []
        missing = [p for p, _ in self.samples if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{source or 'dataset'}: {len(missing)} listed image(s) do not exist, e.g. {missing[0]}"
            )
        if verify:
            bad = find_unreadable([p for p, _ in self.samples])
            if bad:
                listing = "\n  ".join(f"{p} ({why})" for p, why in bad)
                if strict:
                    raise CorruptImageError(f"{source or 'dataset'}: unreadable image(s):\n  {listing}")
                warnings.warn(f"{source or 'dataset'}: skipping {len(bad)} unreadable image(s):\n  {listing}", stacklevel=2)
                bad_paths = {p for p, _ in bad}
                self.samples = [s for s in self.samples if s[0] not in bad_paths]
                self.skipped = bad
        if not self.samples:
            raise ValueError(f"{source or 'dataset'}: no usable images")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                image = to_rgb8(im, path)
        except Exception as exc:
            raise CorruptImageError(f"cannot decode image {path}: {exc}") from exc
        return (self.transform(image) if self.transform else image), label
