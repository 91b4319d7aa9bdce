"""The paper's oriented-detection recipes (SPEC §5, with the corrections of §8) as config mappings, one per
dataset x detector x method.

``write_oriented_paper_configs("configs/paper/oriented")`` writes
``<dataset>/<detector>/<method>.yaml``; the files are committed and this module is their single
source of truth (``configs/paper/oriented/README.md`` documents the keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from monatune.data.dota import DOTA_V1_CLASSES, STAR_CLASSES
from monatune.methods import methods

ORIENTED_DATASETS = {
    # dataset: (classes, root holding the original <split>/images + labelTxt, training split(s), H2RBox-v2 lr)
    # DOTA v1.0 trains on train + val (mmrotate's "trainval"; its test labels are private: the Task1
    # files of `monatune test` go to the evaluation server), STAR on train.
    "dota": (DOTA_V1_CLASSES, "data/dota", "train+val", 5e-5),
    "star": (STAR_CLASSES, "data/star", "train", 1e-4),
}
ORIENTED_DETECTORS = ("rotated_retinanet", "oriented_rcnn", "h2rbox_v2")
_CONVENTION = {"rotated_retinanet": "oc", "oriented_rcnn": "le90", "h2rbox_v2": "le90"}
# H2RBox-v2p's classes without a meaningful angle ("square_cls") and those shrunk at test ("resize_cls"),
# as the public configs list them (SPEC §8.5).
H2RBOX_ANGLE_FREE = {
    "dota": ("baseball-diamond", "storage-tank", "roundabout"),
    "star": ("tank", "roundabout"),
}
H2RBOX_RESIZED = {"dota": ("baseball-diamond",), "star": ()}
# Weight decay exemptions (SPEC §8.9): biases are decayed in the oriented configs; H2RBox-v2p decays everything.
NO_DECAY = {"rotated_retinanet": ["norm_name", "rel_pos", "abs_pos"], "oriented_rcnn": ["norm_name", "rel_pos", "abs_pos"], "h2rbox_v2": []}
# LoRand as STAR-MMRotate builds it (SPEC §8.10).
METHOD_OPTIONS: dict[str, dict[str, Any]] = {"lorand": {"beta": 8, "init": "kaiming", "bias_init": "uniform"}}


def _class_indices(dataset: str, names: tuple[str, ...]) -> list[int]:
    classes = ORIENTED_DATASETS[dataset][0]
    return [classes.index(n) for n in names]


def _head_options(dataset: str, detector: str) -> dict[str, Any]:
    # SPEC §8.2: Oriented R-CNN reads all four Swin stages, the single-stage detectors stages 2-4
    options: dict[str, Any] = {"out_indices": [0, 1, 2, 3] if detector == "oriented_rcnn" else [1, 2, 3]}
    if detector == "rotated_retinanet":
        options.update(box_loss="kld", tau=1.0, box_loss_reduction="per_level", box_loss_weight=1.0)  # SPEC §8.3
    if detector == "h2rbox_v2":  # SPEC §8.5: the public v2p variant
        options.update(variant="v2p", rotation_prob=0.95, symmetry_weight=0.2, symmetry_beta=0.1)
        options["rotation_agnostic_classes"] = _class_indices(dataset, H2RBOX_ANGLE_FREE[dataset])
        if H2RBOX_RESIZED[dataset]:
            options.update(resize_classes=_class_indices(dataset, H2RBOX_RESIZED[dataset]), resize_factor=0.85)
    options.update(score_threshold=0.05, nms_iou=0.1, max_per_image=2000)
    return options


def merge_and_score_options(dataset: str, detector: str) -> dict[str, Any]:
    """The ``data.options`` that merge patch detections and score them (SPEC §8.4): DOTA class-wise
    NMS 0.1, difficult ignored, polygon IoU; STAR NMS 0.4 (class-agnostic for the single-stage
    detectors), difficult counted, rotated-box IoU; no cap on boxes per image; IoU 0.5."""
    if dataset == "dota":
        return {"merge_nms_iou": 0.1, "merge_class_agnostic": False, "merge_max_per_image": None,
                "eval_iou_threshold": 0.5, "eval_difficult": "ignore", "eval_iou": "polygon"}  # fmt: skip
    return {"merge_nms_iou": 0.4, "merge_class_agnostic": detector != "oriented_rcnn", "merge_max_per_image": None,
            "eval_iou_threshold": 0.5, "eval_difficult": "count", "eval_iou": "rotated"}  # fmt: skip


def oriented_paper_config(dataset: str, detector: str, method: str) -> dict[str, Any]:
    """The config mapping (engine schema: task/model/data/optim/trainer) of one run."""
    if dataset not in ORIENTED_DATASETS:
        raise ValueError(f"unknown oriented dataset {dataset!r}; valid: {', '.join(ORIENTED_DATASETS)}")
    if detector not in ORIENTED_DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; valid: {', '.join(ORIENTED_DETECTORS)}")
    classes, root, train_split, h2rbox_lr = ORIENTED_DATASETS[dataset]
    return {
        "task": "oriented",
        "model": {
            "backbone": "swin_base_patch4_window7_224",
            "pretrained": "swin_base_patch4_window7_224.ms_in22k",
            "weights": None,
            "method": method,
            "method_options": dict(METHOD_OPTIONS.get(method, {})),
            "num_classes": len(classes),
            "drop_path_rate": 0.2,
            "head": detector,
            "head_options": _head_options(dataset, detector),
        },
        "data": {
            "dataset": dataset,
            "root": root,
            "train_split": train_split,
            "val_split": "val",
            "test_split": "test",
            "image_size": 1024,
            "batch_size": 2,
            "num_workers": 4,
            "options": {
                "angle_convention": _CONVENTION[detector],
                "patch_size": 1024,
                "overlap": 200,
                "iof_threshold": 0.7,
                "flip_prob": 0.75,
                "flip_directions": ["horizontal", "vertical", "diagonal"],
                "skip_difficult": False,
                "skip_empty": True,
                **merge_and_score_options(dataset, detector),
            },
        },
        "optim": {
            "optimizer": "adamw",
            "lr": h2rbox_lr if detector == "h2rbox_v2" else 1e-4,
            "weight_decay": 0.05,
            "no_decay": list(NO_DECAY[detector]),
            "schedule": "step",
            "milestones": [8, 11],
            "gamma": 0.1,
            "warmup_steps": 500,
            "warmup_ratio": 0.3333333333333333,
            "grad_clip": 35.0,
        },
        "trainer": {
            "max_epochs": 12,
            "precision": "auto",
            "devices": "auto",
            "out_dir": f"runs/{dataset}/{detector}/{method}",
        },
    }


def write_oriented_paper_configs(root: str | Path = "configs/paper/oriented") -> list[Path]:
    """Write every ``<dataset>/<detector>/<method>.yaml`` under ``root``; returns the paths."""
    paths = []
    for dataset in ORIENTED_DATASETS:
        for detector in ORIENTED_DETECTORS:
            for method in methods():
                path = Path(root) / dataset / detector / f"{method}.yaml"
                path.parent.mkdir(parents=True, exist_ok=True)
                header = (
                    f"# {dataset}, {detector}, Swin-B (ImageNet-22k), {method}: the paper's recipe (SPEC §5, §8). "
                    "Generated by monatune.tasks.oriented.paper_configs\n"
                )
                config = oriented_paper_config(dataset, detector, method)
                path.write_text(header + yaml.safe_dump(config, sort_keys=False))
                paths.append(path)
    return paths


__all__ = [
    "H2RBOX_ANGLE_FREE",
    "H2RBOX_RESIZED",
    "METHOD_OPTIONS",
    "NO_DECAY",
    "ORIENTED_DATASETS",
    "ORIENTED_DETECTORS",
    "merge_and_score_options",
    "oriented_paper_config",
    "write_oriented_paper_configs",
]
