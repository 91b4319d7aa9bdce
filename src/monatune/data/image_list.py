"""A labelled list of image files, checked for corrupt images before training starts."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from PIL import Image
from torch.utils.data import Dataset

from monatune.data.errors import to_rgb8
from monatune.data.verify import CorruptImageError, verify_dataset

__all__ = ["CorruptImageError", "LabeledImageList", "find_unreadable"]


def decode_check(path: Path) -> None:
    """Open and fully decode the image at ``path``; raise if PIL cannot, or if it is 16-bit/float."""
    with Image.open(path) as im:
        im.load()  # full decode: truncated files fail here, not only in verify()
        to_rgb8(im, path)  # 16-bit / float images: refused here rather than clipped later


def find_unreadable(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """(path, reason) for every file PIL cannot open and decode."""
    bad = []
    for path in paths:
        try:
            decode_check(path)
        except Exception as exc:  # PIL raises many types for bad data
            bad.append((path, f"{type(exc).__name__}: {exc}"))
    return bad


class LabeledImageList(Dataset):
    """(path, label) samples -> (transform(RGB image), label).

    With ``verify=True`` every image is decoded once up front (:func:`~monatune.data.verify.verify_dataset`):
    unreadable files are dropped with a single warning naming them all, or raise CorruptImageError when
    ``strict``. The data modules pass ``verify=False`` and check through the same function themselves.
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
        self.skipped: list[str] = []  # why each dropped sample was dropped
        missing = [p for p, _ in self.samples if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{source or 'dataset'}: {len(missing)} listed image(s) do not exist, e.g. {missing[0]}"
            )
        if not self.samples:
            raise ValueError(f"{source or 'dataset'}: no usable images")
        if verify:
            self.skipped = verify_dataset(self, source or "dataset", strict=strict)

    def sample_files(self, index: int) -> tuple[Path, ...]:
        return (self.samples[index][0],)

    def check_sample(self, index: int) -> None:
        decode_check(self.samples[index][0])

    def keep_samples(self, indices: Sequence[int]) -> None:
        self.samples = [self.samples[i] for i in indices]

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
