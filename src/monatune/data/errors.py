"""One error type for every dataset reader (it names the file or folder and what is wrong), and the
image decoder that raises it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import tv_tensors


class DatasetError(ValueError):
    """A dataset file or folder is missing, unreadable or malformed.

    ``path`` is the offending file or folder; ``problem`` says what was expected or what is wrong.
    The message is ``"<path>: <problem>"`` so a log line alone is enough to find and fix the file.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def read_rgb_image(path: str | Path) -> tv_tensors.Image:
    """Decode a JPEG/PNG file to a ``tv_tensors.Image`` of shape (3, H, W), uint8.

    A missing or undecodable file raises :class:`DatasetError` naming it, instead of a bare
    decoder error that does not say which of many thousand files was at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "image file not found")
    try:  # PIL rather than torchvision.io, whose decoders are deprecated since torchvision 0.29
        with Image.open(path) as pil:
            array = np.ascontiguousarray(np.asarray(pil.convert("RGB")).transpose(2, 0, 1))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(path, f"cannot decode image ({exc})") from None
    return tv_tensors.Image(torch.from_numpy(array))
