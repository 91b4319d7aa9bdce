"""A backbone owns its input statistics (``backbones.stats``), and every path that builds a model or
its inputs reads them there: classification transforms, the oriented model factory, the dense tasks.
Also: a dense embedded Swin has one window layout whichever entry point builds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import monatune
from monatune.backbones.stats import IMAGENET_MEAN, IMAGENET_STD, SYNTHETIC_MEAN, SYNTHETIC_STD, input_stats
from monatune.engine.config import load_config
from monatune.tasks.classification.data import ClassificationData
from monatune.tasks.classification.predict import predict_classes

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "small"


def test_each_backbone_names_its_statistics():
    assert input_stats("swin_nano_synthetic") == (SYNTHETIC_MEAN, SYNTHETIC_STD)
    assert input_stats("swin_mini_synthetic") == (SYNTHETIC_MEAN, SYNTHETIC_STD)
    assert input_stats("swin_base_patch4_window7_224") == input_stats("swin_t") == (IMAGENET_MEAN, IMAGENET_STD)
    assert SYNTHETIC_MEAN != IMAGENET_MEAN  # (else the tests below could not tell them apart)


def _normalize(transform) -> T.Normalize:
    return next(t for t in transform.transforms if isinstance(t, T.Normalize))


def _imagefolder(root: Path, classes: int = 2, per_class: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("backbone", ["swin_nano_synthetic", "swin_tiny_patch4_window7_224"])
def test_classification_standardises_with_the_backbones_statistics(tmp_path, backbone):
    """Before: ImageNet statistics whatever the backbone (the embedded Swin was pretrained on others)."""
    root = _imagefolder(tmp_path / "data")
    overrides = [f"model.backbone={backbone}", "model.num_classes=2", "data.dataset=imagefolder", f"data.root={root}",
                 "data.image_size=16", "data.resize_size=18"]  # fmt: skip
    cfg = load_config(CONFIGS / "classification_digits.yaml", overrides)
    data = ClassificationData(cfg)
    mean, std = input_stats(backbone)
    for train in (True, False):
        normalize = _normalize(data.make_dataset("train" if train else "val", train).transform)
        assert tuple(normalize.mean) == mean and tuple(normalize.std) == std
    # predict feeds what validation feeds
    image = tmp_path / "data" / "val" / "class0" / "0.png"
    seen = []

    def model(images: torch.Tensor) -> torch.Tensor:
        seen.append(images)
        return torch.zeros(len(images), 2)

    model.parameters = lambda: iter([torch.zeros(1)])  # what to_device reads
    predict_classes(model, cfg, [image], tmp_path, {"topk": 1})
    expected = data.make_dataset("val", False)[0][0]  # sorted: class0/0.png first
    torch.testing.assert_close(seen[0][0], expected)


def test_build_oriented_model_normalises_with_the_backbones_statistics():
    """Before: the oriented factory left the detector at ImageNet statistics (``fit`` set the backbone's)."""
    from monatune.tasks.oriented.factory import build_oriented_model

    model = build_oriented_model("rotated_retinanet", "swin_nano_synthetic", 3)
    torch.testing.assert_close(model.image_mean.flatten(), torch.tensor(SYNTHETIC_MEAN))
    torch.testing.assert_close(model.image_std.flatten(), torch.tensor(SYNTHETIC_STD))


def _layout(model: torch.nn.Module) -> list[tuple]:
    from timm.models.swin_transformer import SwinTransformerBlock

    return [(tuple(b.window_size), tuple(b.shift_size), b.always_partition) for b in model.modules() if isinstance(b, SwinTransformerBlock)]


def test_a_dense_embedded_swin_has_the_window_layout_fit_trains():
    """Before: ``create_backbone(embedded, dense=True)`` (``monatune params --dense``, the oriented
    factory) built it without ``always_partition``, so its small stages got smaller windows (and
    relative-position tables) than the backbone ``fit`` builds."""
    from monatune.tasks.dense.build import dense_backbone

    cfg = load_config(CONFIGS / "detection_retinanet.yaml")
    trained = dense_backbone(cfg, (0, 1, 2, 3))
    built = monatune.create_backbone(cfg.model.backbone, dense=True, out_indices=trained.out_indices)
    assert _layout(built) == _layout(trained) and all(always for *_, always in _layout(built))
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in trained.state_dict().items()}
