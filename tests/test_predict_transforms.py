"""`monatune predict` feeds a classifier exactly what validation feeds it (``eval_transform_for``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from monatune.data.digits import Digits, digits_split
from monatune.data.synthetic_images import STD
from monatune.engine.config import load_config
from monatune.tasks.classification.predict import known_class_names, predict_classes

DIGITS_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "small" / "classification_digits.yaml"
# one uint8 level of a 0-1 grey image, standardised: what exporting a digit to PNG may cost
QUANTUM = 0.5 / 255 / STD[0]


class RecordingClassifier(nn.Module):
    """Returns fixed logits and keeps the images it was given."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.arange(num_classes, dtype=torch.float32))
        self.seen: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(images.clone())
        return self.bias.expand(len(images), -1)


def write_digit_pngs(folder: Path, count: int) -> list[Path]:
    """The first ``count`` validation digits as 8x8 grey PNGs (ink bright, as sklearn stores them)."""
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True)
    images = load_digits().images
    paths = []
    for n, index in enumerate(digits_split(seed=0)[1][:count]):
        path = folder / f"{n:03d}.png"
        Image.fromarray(np.round(images[index] / 16 * 255).astype(np.uint8), "L").convert("RGB").save(path)
        paths.append(path)
    return paths


def test_digits_predict_sees_the_validation_tensors(tmp_path):
    cfg = load_config(DIGITS_CONFIG, ["trainer.seed=0"])
    paths = write_digit_pngs(tmp_path / "val", 40)
    model = RecordingClassifier(cfg.model.num_classes)
    with torch.inference_mode():
        predict_classes(model, cfg, paths, tmp_path, {"topk": 3})
    fed = torch.cat(model.seen)
    expected = Digits("val", seed=0, image_size=cfg.data.image_size).tensors()[0][:40]
    assert fed.shape == expected.shape == (40, 3, 64, 64)
    assert (fed - expected).abs().max() <= QUANTUM + 1e-5
    rows = json.loads((tmp_path / "predictions.json").read_text())
    assert [t["name"] for t in rows[0]["top"]] == ["9", "8", "7"]  # the digits are named


def test_digits_eval_transform_accepts_any_image_size_and_scale(tmp_path):
    cfg = load_config(DIGITS_CONFIG, ["data.image_size=32"])
    small = write_digit_pngs(tmp_path / "val", 1)[0]
    big = tmp_path / "big.png"
    Image.open(small).resize((32, 32), Image.NEAREST).save(big)  # an 8x8 digit drawn 4x larger
    model = RecordingClassifier(cfg.model.num_classes)
    with torch.inference_mode():
        predict_classes(model, cfg, [small, big], tmp_path, {"topk": 1})
    fed = torch.cat(model.seen)
    assert fed.shape == (2, 3, 32, 32)
    expected = Digits("val", seed=0, image_size=32).tensors()[0][0]
    assert (fed[0] - expected).abs().max() <= QUANTUM + 1e-5


def test_imagefolder_predict_keeps_resize_crop_and_imagenet_statistics(tmp_path):
    from torchvision import transforms as T

    cfg = load_config(None, ["data.image_size=32", "data.resize_size=40", "model.num_classes=2"])
    path = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    model = RecordingClassifier(2)
    with torch.inference_mode():
        predict_classes(model, cfg, [path], tmp_path, {"topk": 1})
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = T.Compose([T.Resize(40), T.CenterCrop(32), T.ToTensor(), T.Normalize(mean, std)])(Image.open(path))
    assert torch.equal(model.seen[0][0], expected)


def test_digits_predictions_are_named_by_digit():
    cfg = load_config(DIGITS_CONFIG)
    assert known_class_names(cfg) == [str(d) for d in range(10)]
