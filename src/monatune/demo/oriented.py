"""Oriented detection demo: rotated RetinaNet (KLD loss) on the embedded Swin (pretrained on procedural
shapes), fine-tuned on synthetic rotated rectangles of three classes written as a real DOTA folder and
read back by the DOTA reader. The DOTA protocol scaled down: 192-px images cut into 128-px patches
(overlap 64), h/v/diagonal flips, patch detections merged per image, DOTA mAP (polygon IoU 0.5, VOC07
11-point AP). One run per method, offline on a CPU."""

from __future__ import annotations

from pathlib import Path

from monatune.demo.runner import dense_demo_task, small_config_run
from monatune.engine.config import ExperimentConfig

FULL = {"epochs": 7, "num_train_images": 56, "num_val_images": 32}
QUICK = {"epochs": 2, "num_train_images": 12, "num_val_images": 4}


def make_config(method: str, quick: bool, out_dir: Path) -> ExperimentConfig:
    """``configs/small/oriented_retinanet_demo.yaml`` with the demo's epochs and image counts (the step
    decay at three quarters of the epochs)."""
    return small_config_run("oriented_retinanet_demo", method, out_dir, QUICK if quick else FULL, step_at=0.75)


DEMO = dense_demo_task(
    name="oriented",
    task="oriented",
    make_config=make_config,
    description="embedded Swin -> rotated RetinaNet (KLD) on synthetic DOTA-format rotated shapes, 3 classes",
)
