"""``monatune predict`` for classification: top-k classes per image into ``predictions.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.transforms.functional import to_pil_image

from monatune.backbones.stats import input_stats
from monatune.data.classification_transforms import eval_transform_for
from monatune.data.errors import read_rgb_image
from monatune.engine.config import ExperimentConfig
from monatune.engine.predict import batches, to_device
from monatune.files import write_json_atomic


def predict_classes(module: Any, cfg: ExperimentConfig, paths: list[Path], out_dir: Path, options: dict[str, Any]) -> list[Path]:
    """Each image through the eval transform validation uses for the config's data (``eval_transform_for``);
    options: ``topk`` (default 5), ``class_names`` (index -> name; default: ``known_class_names``)."""
    d = cfg.data
    transform = eval_transform_for(d, input_stats(cfg.model.backbone))
    names = options.get("class_names") or known_class_names(cfg)
    topk = min(int(options.get("topk", 5)), cfg.model.num_classes)
    rows = []
    for chunk in batches(paths, d.eval_batch_size or d.batch_size):
        images = torch.stack([transform(to_pil_image(read_rgb_image(p))) for p in chunk])
        probs, classes = module(to_device(images, module)).float().softmax(dim=-1).topk(topk, dim=-1)
        for path, p, c in zip(chunk, probs.tolist(), classes.tolist()):
            top = [{"class": k, "probability": round(v, 6), **({"name": names[k]} if names else {})} for k, v in zip(c, p)]
            rows.append({"image": str(path), "top": top})
    path = out_dir / "predictions.json"
    write_json_atomic(path, rows)
    return [path]


def known_class_names(cfg: ExperimentConfig) -> list[str] | None:
    """The class names of the config's dataset, in label order, when known without downloading:
    VOC2007's 20 classes, the digits "0".."9", or the sorted class folders of an ``imagefolder``
    training split on this machine (when they match ``num_classes``); else None."""
    d = cfg.data
    if d.dataset == "voc07_cls":
        from monatune.data.voc import VOC_CLASSES

        names = list(VOC_CLASSES)
    elif d.dataset == "digits":
        from monatune.data.digits import DIGIT_CLASSES

        names = list(DIGIT_CLASSES)
    else:
        split_dir = Path(d.root) / d.train_split if d.dataset == "imagefolder" and d.root else None
        if split_dir is None or not split_dir.is_dir():
            return None
        names = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    return names if len(names) == cfg.model.num_classes else None
