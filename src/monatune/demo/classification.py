"""Classification demo: an embedded Swin (pretrained on procedural shapes) fine-tuned on scikit-learn's
real handwritten digits, one ``monatune fit`` per method, offline on a CPU.

The full demo tunes ``swin_mini_synthetic`` (9.1M parameters, stage widths 64-512: Mona is 7.3 % of
it, as on a real Swin); ``--quick`` tunes ``swin_nano_synthetic`` (2.7M) on 384 images for 2 epochs."""

from __future__ import annotations

from pathlib import Path

from monatune.demo.runner import DemoTask
from monatune.engine.config import ExperimentConfig, parse_config

FULL = {"backbone": "swin_mini_synthetic", "epochs": 8, "num_train_images": None}
QUICK = {"backbone": "swin_nano_synthetic", "epochs": 2, "num_train_images": 384}


def make_config(method: str, quick: bool, out_dir: Path) -> ExperimentConfig:
    setting = QUICK if quick else FULL
    return parse_config(
        {
            "task": "classification",
            "model": {"backbone": setting["backbone"], "method": method, "num_classes": 10, "drop_path_rate": 0.1},
            "data": {
                "dataset": "digits",
                "image_size": 64,
                "batch_size": 32,
                "num_workers": 0,
                "options": {"num_train_images": setting["num_train_images"]},
            },
            # One recipe for every method, as the paper does (AdamW, cosine with warmup, clip 5).
            "optim": {"lr": 1e-3, "weight_decay": 0.05, "schedule": "cosine", "warmup_epochs": 0.5, "grad_clip": 5.0},
            "trainer": {
                "max_epochs": setting["epochs"],
                "out_dir": str(out_dir),
                "accelerator": "cpu",
                "devices": 1,
                "seed": 0,
                "log_every_n_steps": 5,
            },
        }
    )


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
