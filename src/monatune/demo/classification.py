"""Classification demo: the embedded Swin (pretrained on procedural shapes) fine-tuned on scikit-learn's
real handwritten digits, one run per method, offline on a CPU."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Subset

from monatune.data.digits import Digits
from monatune.demo.runner import DemoTask
from monatune.engine.config import ExperimentConfig, parse_config
from monatune.tasks.classification import ClassificationModule, build_classifier
from monatune.tasks.classification.data import ClassificationData

BACKBONE = "swin_nano_synthetic"
FULL = {"epochs": 8, "train_images": None}
QUICK = {"epochs": 2, "train_images": 384}


def make_config(method: str, quick: bool, out_dir: Path) -> ExperimentConfig:
    setting = QUICK if quick else FULL
    return parse_config(
        {
            "task": "classification",
            "model": {"backbone": BACKBONE, "method": method, "num_classes": 10, "drop_path_rate": 0.1},
            "data": {"dataset": "digits", "image_size": 64, "batch_size": 32, "num_workers": 0, "options": setting},
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


def make_data(cfg: ExperimentConfig) -> ClassificationData:
    train = Digits("train", seed=cfg.trainer.seed, augment=True)
    limit = cfg.data.options.get("train_images")
    if limit:
        train = Subset(train, range(min(limit, len(train))))
    return ClassificationData(cfg, train, Digits("val", seed=cfg.trainer.seed))


def _backbone_of(model):
    return _WithoutHead(model)


class _WithoutHead:
    """Parameters of a timm classifier except its head (the backbone the method tunes)."""

    def __init__(self, model) -> None:
        self.model = model

    def parameters(self):
        return (p for n, p in self.model.named_parameters() if not n.startswith("head."))


DEMO = DemoTask(
    name="classification",
    metric_key="val/top1",
    metric_label="top-1 (%)",
    make_config=make_config,
    make_module=lambda cfg: ClassificationModule(build_classifier(cfg), cfg),
    make_data=make_data,
    backbone_of=_backbone_of,
    description="embedded Swin (pretrained on synthetic shapes) -> sklearn digits, 10 classes",
)
