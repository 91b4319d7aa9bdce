"""Write the paper's dense-task configs (SPEC §5) for every method:

    configs/paper/detection/voc_retinanet_swin_l/<method>.yaml
    configs/paper/instance_segmentation/coco_cascade_mask_rcnn_swin_b_3x/<method>.yaml
    configs/paper/semantic_segmentation/ade20k_upernet_swin_l_160k/<method>.yaml

Run from the repository root: ``python scripts/make_dense_configs.py``. The files are committed; this
script is their single source of truth. ``data.batch_size`` is per device: the totals of the recipes
(VOC 2, COCO 16, ADE20K 16) come with the ``trainer.devices`` set here (1, 8, 8).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from monatune.methods import methods

class _Dumper(yaml.SafeDumper):
    """Lists of numbers on one line ([1, 2, 3]), everything else in block style."""


_Dumper.add_representer(
    list,
    lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=all(isinstance(x, (int, float)) for x in v)),
)

# SPEC §8.9: mmdet/mmseg exempt parameters named "norm" and position tables; biases (and head BNs) are decayed.
DENSE_NO_DECAY = ["norm_name", "rel_pos", "abs_pos"]
# SPEC §8.6: the public ADE20K configs of these methods use synchronised BatchNorm in the heads.
ADE20K_SYNC_BN_METHODS = ("mona", "full", "fixed")

SWIN_L = ("swin_large_patch4_window7_224", "swin_large_patch4_window7_224.ms_in22k")
SWIN_B = ("swin_base_patch4_window7_224", "swin_base_patch4_window7_224.ms_in22k")


def _model(swin: tuple[str, str], method: str, num_classes: int, drop_path: float, head: str, head_options: dict) -> dict:
    return {
        "backbone": swin[0],
        "pretrained": swin[1],
        "weights": None,
        "method": method,
        "num_classes": num_classes,
        "drop_path_rate": drop_path,
        "head": head,
        "head_options": head_options,
    }


def voc_retinanet(method: str) -> dict:
    """RetinaNet, Swin-L stages 2-4, VOC 07+12 trainval -> VOC07 test; 12 epochs, lr x0.1 after 9, batch 2."""
    return {
        "task": "detection",
        "model": _model(
            SWIN_L, method, 20, 0.2, "retinanet",
            {"out_indices": [1, 2, 3], "min_size": 600, "max_size": 1000, "fpn_channels": 256, "score_thresh": 0.05,
             "nms_thresh": 0.5, "detections_per_img": 100, "topk_candidates": 1000},
        ),  # fmt: skip
        "data": {
            "dataset": "voc",
            "root": "data/VOCdevkit",
            "train_split": "2007/trainval+2012/trainval",
            "val_split": "2007/test",
            "batch_size": 2,
            "eval_batch_size": 1,
            "num_workers": 4,
            "options": {"scale": [1000, 600], "flip_prob": 0.5, "skip_difficult": True},
        },
        # The public Mona VOC config: AdamW, one step at epoch 9, no warmup, no gradient clipping.
        "optim": {
            "optimizer": "adamw",
            "lr": 1e-4,
            "weight_decay": 0.05,
            "schedule": "step",
            "milestones": [9],
            "gamma": 0.1,
            "warmup_steps": 0,
            "grad_clip": None,
            "no_decay": DENSE_NO_DECAY,
        },
        "trainer": {"max_epochs": 12, "precision": "auto", "devices": 1, "out_dir": f"runs/voc_retinanet_swin_l/{method}"},
    }


def coco_cascade(method: str) -> dict:
    """Cascade Mask R-CNN, Swin-B all stages, COCO 2017; 36 epochs, steps at 27 and 33, 500-iter warmup."""
    return {
        "task": "instance_segmentation",
        "model": _model(
            SWIN_B, method, 80, 0.3, "cascade_mask_rcnn",
            {"out_indices": [0, 1, 2, 3], "min_size": 800, "max_size": 1333, "fpn_channels": 256, "box_head_norm": "bn",
             "class_agnostic": False, "box_loss_weight": 10.0, "score_thresh": 0.05, "nms_thresh": 0.5,
             "detections_per_img": 100},
        ),  # fmt: skip
        "data": {
            "dataset": "coco",
            "root": "data/coco",
            "train_split": "train2017",
            "val_split": "val2017",
            "batch_size": 2,
            "eval_batch_size": 1,
            "num_workers": 4,
            "options": {
                "short_sides": list(range(480, 801, 32)),
                "max_size": 1333,
                "crop_short_sides": [400, 500, 600],
                "crop_size": [384, 600],
                "flip_prob": 0.5,
            },
        },
        "optim": {
            "optimizer": "adamw",
            "lr": 1e-4,
            "weight_decay": 0.05,
            "schedule": "step",
            "milestones": [27, 33],
            "gamma": 0.1,
            "warmup_steps": 500,
            "warmup_ratio": 0.001,
            "grad_clip": None,
            "no_decay": DENSE_NO_DECAY,
        },
        "trainer": {"max_epochs": 36, "precision": "auto", "devices": 8, "out_dir": f"runs/coco_cascade_mask_rcnn_swin_b_3x/{method}"},
    }


def ade20k_upernet(method: str) -> dict:
    """UperNet + FCN aux, Swin-L, ADE20K; 160k iterations, poly with 1500-iter warmup, batch 16.
    Mona: lr 3e-4 and drop-path 0.2; the other methods 6e-5 and 0.3."""
    mona = method == "mona"
    return {
        "task": "semantic_segmentation",
        "model": _model(
            SWIN_L, method, 150, 0.2 if mona else 0.3, "upernet",
            {"out_indices": [0, 1, 2, 3], "channels": 512, "pool_scales": [1, 2, 3, 6], "dropout": 0.1, "aux_stage": 2,
             "aux_channels": 256, "aux_loss_weight": 0.4, "ignore_index": 255},
        ),  # fmt: skip
        "data": {
            "dataset": "ade20k",
            "root": "data/ADEChallengeData2016",
            "train_split": "training",
            "val_split": "validation",
            "batch_size": 2,
            "eval_batch_size": 1,
            "num_workers": 4,
            "options": {
                "scale": [2048, 512],
                "ratio_range": [0.5, 2.0],
                "crop_size": 512,
                "cat_max_ratio": 0.75,
                "flip_prob": 0.5,
                "photometric": True,
                "test_scale": [2048, 512],
                "reduce_zero_label": True,
            },
        },
        "optim": {
            "optimizer": "adamw",
            "lr": 3e-4 if mona else 6e-5,
            "weight_decay": 0.01,
            "schedule": "poly",
            "poly_power": 1.0,
            "warmup_steps": 1500,
            "warmup_ratio": 1e-6,
            "grad_clip": None,
            "no_decay": DENSE_NO_DECAY,
        },
        # 20,210 images / (8 x 2) = 1,264 iterations per epoch: validate and checkpoint about every 16k.
        "trainer": {
            "max_steps": 160000,
            "precision": "auto",
            "devices": 8,
            "val_every_n_epochs": 13,
            "checkpoint_every_n_steps": 16000,
            "sync_batchnorm": method in ADE20K_SYNC_BN_METHODS,
            "out_dir": f"runs/ade20k_upernet_swin_l_160k/{method}",
        },
    }


SETTINGS = {
    ("detection", "voc_retinanet_swin_l"): (voc_retinanet, "VOC 07+12, RetinaNet, Swin-L (ImageNet-22k)"),
    ("instance_segmentation", "coco_cascade_mask_rcnn_swin_b_3x"): (coco_cascade, "COCO 2017, Cascade Mask R-CNN 3x, Swin-B (ImageNet-22k)"),
    ("semantic_segmentation", "ade20k_upernet_swin_l_160k"): (ade20k_upernet, "ADE20K, UperNet 160k, Swin-L (ImageNet-22k)"),
}


def main() -> None:
    count = 0
    for (task, name), (make, title) in SETTINGS.items():
        for method in methods():
            path = Path("configs/paper") / task / name / f"{method}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            header = (
                f"# {title}, {method}: the paper's recipe (SPEC §5). Generated by scripts/make_dense_configs.py\n"
                "# data.batch_size is per device; with trainer.devices it gives the recipe's total batch.\n"
            )
            path.write_text(header + yaml.dump(make(method), Dumper=_Dumper, sort_keys=False))
            count += 1
    print(f"wrote {count} dense-task configs under configs/paper/")


if __name__ == "__main__":
    main()
