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
            array = np.ascontiguousarray(np.asarray(to_rgb8(pil, path)).transpose(2, 0, 1))
    except DatasetError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(path, f"cannot decode image ({exc})") from None
    return tv_tensors.Image(torch.from_numpy(array))


HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def to_rgb8(pil: Image.Image, path: str | Path) -> Image.Image:
    """``pil`` as 8-bit RGB. 16-bit and float images are refused (PIL's conversion would clip them
    to 255 or zero, silently): the error names the file and says what to do."""
    if pil.mode in HIGH_BIT_DEPTH_MODES:
        raise DatasetError(path, f"{pil.mode!r} is a 16-bit/32-bit image; convert it to 8-bit RGB (scaling its range) first")
    return pil.convert("RGB")
