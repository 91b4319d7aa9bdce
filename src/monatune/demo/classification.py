"""Classification demo: an embedded Swin (pretrained on procedural shapes) fine-tuned on scikit-learn's
real handwritten digits, one ``monatune fit`` per method, offline on a CPU.

The full demo tunes ``swin_mini_synthetic`` (9.1M parameters, stage widths 64-512: Mona is 7.3 % of
it, as on a real Swin); ``--quick`` tunes ``swin_nano_synthetic`` (2.7M) on 384 images for 2 epochs."""

from __future__ import annotations

from pathlib import Path

from monatune.demo.runner import DemoTask, small_config_run
from monatune.engine.config import ExperimentConfig

FULL = {"backbone": "swin_mini_synthetic", "epochs": 8, "num_train_images": None}
QUICK = {"backbone": "swin_nano_synthetic", "epochs": 2, "num_train_images": 384}


def make_config(method: str, quick: bool, out_dir: Path) -> ExperimentConfig:
    """``configs/small/classification_digits.yaml`` (one recipe for every method, as the paper: AdamW,
    cosine with warmup, clip 5) with the demo's backbone, epochs and training images."""
    return small_config_run("classification_digits", method, out_dir, QUICK if quick else FULL)


class _WithoutHead:
    """Parameters of a timm classifier except its head (the backbone the method tunes)."""

    def __init__(self, model) -> None:
        self.model = model

    def parameters(self):
        return (p for n, p in self.model.named_parameters() if not n.startswith("head."))


DEMO = DemoTask(
    name="classification",
    task="classification",
    make_config=make_config,
    backbone_of=_WithoutHead,
    description="embedded Swin (pretrained on synthetic shapes) -> sklearn digits, 10 classes",
    default_methods="mona,full,lora",
)
