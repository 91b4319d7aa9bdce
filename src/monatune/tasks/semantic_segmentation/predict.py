"""``monatune predict`` for semantic segmentation: one label PNG per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from monatune.data.dense_transforms import semantic_eval_transforms
from monatune.data.errors import read_rgb_image
from monatune.engine.config import ExperimentConfig
from monatune.engine.predict import image_ids, to_device


def predict_label_maps(module: Any, cfg: ExperimentConfig, paths: list[Path], out_dir: Path, options: dict[str, Any]) -> list[Path]:
    """Each image resized to the config's test scale, logits upsampled to the image's own size.

    PNG values follow the dataset's files: with ``reduce_zero_label`` (ADE20K, the default) model
    class k is written as k + 1 and 0 stays "unlabelled"; otherwise k as is. 8-bit when the values
    fit, else 16-bit."""
    opts = cfg.data.options
    transform = semantic_eval_transforms(tuple(opts.get("test_scale", opts.get("scale", (2048, 512)))))
    offset = 1 if opts.get("reduce_zero_label", True) else 0
    dtype = np.uint8 if cfg.model.num_classes - 1 + offset <= 255 else np.uint16
    folder = out_dir / "masks"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for image_id, path in zip(image_ids(paths), paths):
        image = read_rgb_image(path)  # uint8, resized before the float conversion, as the eval dataset does
        logits = module(to_device(transform(image).as_subclass(torch.Tensor)[None], module)).float()
        logits = F.interpolate(logits, size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)
        labels = (logits.argmax(dim=1)[0] + offset).cpu().numpy().astype(dtype)
        target = folder / f"{image_id}.png"
        Image.fromarray(labels).save(target)
        written.append(target)
    return written
