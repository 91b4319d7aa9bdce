"""Run a trained model on image files: ``monatune predict``.

The model is built from the run's config (pretrained backbone as configured), then the trained
tensors are loaded from an adapter file or a checkpoint. Unreadable (and 16-bit) images are skipped
with one warning; per-image outputs are named by file name, which must therefore be unique. Each task family writes what its field
uses (see its ``predict.py``):

- classification: ``predictions.json``, the top-k classes and probabilities per image;
- detection / instance segmentation: ``predictions.json``, boxes (x1, y1, x2, y2 in input pixels),
  scores, labels (1..C) and class names per image (detection), plus COCO RLE masks for instance
  segmentation (labels are the model's contiguous 1..C, not COCO category ids);
- semantic segmentation: one label PNG per image in ``masks/`` (ADE20K convention: 0 = unlabelled,
  k = class k - 1 of the model when the data reduced the zero label);
- oriented detection: DOTA Task1 files (``Task1_<class>.txt``), large images cut into the config's
  patches and merged back, and ``predictions.json``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from monatune.adapter_io import load_adapter
from monatune.data.errors import read_rgb_image
from monatune.data.image_list import find_unreadable
from monatune.engine.config import ExperimentConfig
from monatune.engine.run import load_checkpoint_tensors, task_builders
from monatune.engine.tasks import get_task

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")



def image_paths(inputs: Sequence[str | Path], exclude: str | Path | None = None) -> list[Path]:
    """Image files among ``inputs`` (files, or folders searched recursively), sorted per folder;
    nothing under ``exclude`` (the output folder, so a rerun does not read its own masks)."""
    skip = Path(exclude).resolve() if exclude is not None else None
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such image file or folder")
    if skip is not None:
        found = [p for p in found if not p.resolve().is_relative_to(skip)]
    if not found:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return found


def readable_images(paths: list[Path]) -> list[Path]:
    """``paths`` without the files that cannot be decoded, which are named in one warning."""
    bad = find_unreadable(paths)
    if bad:
        warnings.warn(f"skipping {len(bad)} unreadable image(s): " + "; ".join(f"{p} ({why})" for p, why in bad[:8]), stacklevel=2)
    dropped = {p for p, _ in bad}
    kept = [p for p in paths if p not in dropped]
    if not kept:
        raise FileNotFoundError("none of the images could be decoded")
    return kept


def image_ids(paths: list[Path]) -> list[str]:
    """File names without suffix, the ids of per-image outputs (mask PNGs, DOTA Task1 lines): two
    inputs with one id would overwrite each other, so that is an error naming both."""
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise ValueError(f"two images share the id {path.stem!r}: {seen[path.stem]} and {path}; rename one")
        seen[path.stem] = path
    return list(seen)


def load_image(path: Path) -> torch.Tensor:
    """(3, H, W) float in 0-1; an unreadable file raises DatasetError naming it."""
    return read_rgb_image(path).as_subclass(torch.Tensor).float().div_(255)


def trained_module(cfg: ExperimentConfig, adapter: str | Path | None = None, ckpt: str | Path | None = None):
    """The task's LightningModule of ``cfg`` in eval mode, with the trained tensors of ``adapter`` or ``ckpt``."""
    if (adapter is None) == (ckpt is None):
        raise ValueError("give exactly one of --adapter (adapter file) or --ckpt (training checkpoint)")
    module = task_builders(cfg.task)[0](cfg)
    if adapter is not None:
        load_adapter(module.model, adapter)
    else:
        load_checkpoint_tensors(module, ckpt)
    return module.eval()


def predict(
    cfg: ExperimentConfig, inputs: Sequence[str | Path], out_dir: str | Path, *,
    adapter: str | Path | None = None, ckpt: str | Path | None = None, options: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
) -> list[Path]:  # fmt: skip
    """Predict every image of ``inputs`` with the trained model; returns the files written to ``out_dir``.

    ``device``: where the model runs (default: CUDA when available, else the CPU)."""
    predictor = get_task(cfg.task).predict
    paths = readable_images(image_paths(inputs, exclude=out_dir))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    module = trained_module(cfg, adapter, ckpt).to(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        return predictor(module, cfg, paths, out_dir, dict(options or {}))


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]


def to_device(images: torch.Tensor | list[torch.Tensor], module: Any) -> torch.Tensor | list[torch.Tensor]:
    """``images`` (a batch or a list) on the device of ``module``'s parameters."""
    device = next(module.parameters()).device
    return images.to(device) if isinstance(images, torch.Tensor) else [image.to(device) for image in images]
