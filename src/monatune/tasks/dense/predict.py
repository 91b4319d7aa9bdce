"""``monatune predict`` for detection and instance segmentation: boxes (and masks) per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from faster_coco_eval.core import mask as mask_api

from monatune.engine.config import ExperimentConfig
from monatune.engine.predict import batches, load_image, to_device
from monatune.files import write_json_atomic


def predict_boxes(module: Any, cfg: ExperimentConfig, paths: list[Path], out_dir: Path, options: dict[str, Any]) -> list[Path]:
    """The detector resizes each image as configured and returns boxes in the image's own pixels.
    options: ``score_threshold`` (default 0: the model's own), ``mask_threshold`` (0.5)."""
    names = getattr(module, "class_names", None)
    threshold = float(options.get("score_threshold", 0.0))
    mask_threshold = float(options.get("mask_threshold", 0.5))
    rows = []
    for chunk in batches(paths, cfg.data.eval_batch_size or cfg.data.batch_size):
        for path, out in zip(chunk, module(to_device([load_image(p) for p in chunk], module))):
            out = {k: v.cpu() for k, v in out.items()}
            keep = out["scores"] >= threshold
            labels = out["labels"][keep].tolist()
            row: dict[str, Any] = {
                "image": str(path),
                "boxes": [[round(v, 2) for v in box] for box in out["boxes"][keep].tolist()],
                "scores": [round(v, 6) for v in out["scores"][keep].tolist()],
                "labels": labels,  # 1..C, 0 being the background
            }
            if names:
                row["classes"] = [names[label - 1] for label in labels]
            if "masks" in out:
                row["masks"] = [_rle(mask[0] > mask_threshold) for mask in out["masks"][keep]]  # as the COCO metric
            rows.append(row)
    path = out_dir / "predictions.json"
    write_json_atomic(path, rows)
    return [path]


def _rle(mask: torch.Tensor) -> dict[str, Any]:
    """COCO run-length encoding of a (H, W) bool mask, JSON-ready."""
    rle = mask_api.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode() if isinstance(rle["counts"], bytes) else rle["counts"]}
