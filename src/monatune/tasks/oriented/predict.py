"""``monatune predict`` for oriented detection: DOTA Task1 files, large images cut into patches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from monatune.data.errors import read_rgb_image
from monatune.engine.config import ExperimentConfig
from monatune.engine.predict import image_ids, to_device
from monatune.files import write_json_atomic
from monatune.metrics.dota_map import write_task1_submission
from monatune.tasks.oriented.patches import crop_patch, patch_name, patch_pad_value, patch_windows
from monatune.tasks.oriented.protocol import merge_settings


def predict_rotated_boxes(module: Any, cfg: ExperimentConfig, paths: list[Path], out_dir: Path, options: dict[str, Any]) -> list[Path]:
    """As the evaluation does: with ``data.options.patch_size`` set (1024 for DOTA), each image is cut
    into overlapping patches (``overlap``, 200), each patch detected, and the boxes merged back by
    rotated NMS (``OrientedModule.merge_patches``: ``data.options.merge_nms_iou``, ``merge_class_agnostic``,
    ``merge_max_per_image``, SPEC §8.4); without it, each image
    is detected whole. Image ids are the file names without suffix (DOTA's convention), so they must
    be unique. Boxes are (cx, cy, w, h, theta) in image pixels, labels 0..C-1.
    ``data.options.patch_pad_value`` (null: zeros) fills what lies past the image border.
    options: ``score_threshold``."""
    opts = cfg.data.options
    patch_size, overlap = opts.get("patch_size"), opts.get("overlap", 200)
    threshold = float(options.get("score_threshold", 0.0))
    merge = merge_settings(opts)
    pad = patch_pad_value(opts)
    detections = {}
    for image_id, path in zip(image_ids(paths), paths):
        image = read_rgb_image(path).as_subclass(torch.Tensor)
        height, width = image.shape[-2:]
        windows = patch_windows(width, height, patch_size, overlap) if patch_size else [(0, 0)]
        results = {}
        for x0, y0 in windows:
            patch = crop_patch(image, x0, y0, patch_size, pad) if patch_size else image  # uint8: 1/4 the memory
            out = module(to_device([patch.float().div_(255)], module))[0]
            keep = out["scores"] >= threshold
            results[patch_name(image_id, x0, y0)] = {k: out[k][keep].cpu() for k in ("boxes", "scores", "labels")}
        if patch_size:
            detections.update(module.merge_patches(results, merge))
        else:
            detections[image_id] = next(iter(results.values()))
    written = write_task1_submission(out_dir / "task1", detections, module.class_names)
    rows = [
        {"image": image_id, "boxes": d["boxes"].tolist(), "scores": d["scores"].tolist(), "labels": d["labels"].tolist(),
         "classes": [module.class_names[label] for label in d["labels"].tolist()]}
        for image_id, d in detections.items()
    ]  # fmt: skip
    write_json_atomic(out_dir / "predictions.json", rows)
    return [*written, out_dir / "predictions.json"]
