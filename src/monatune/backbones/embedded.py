"""Backbones that ship inside the package: small timm Swins pretrained offline by this project.

Both are four-stage timm ``SwinTransformer`` models pretrained on the procedural shape/texture images
of ``monatune.data.synthetic_images`` by ``scripts/pretrain_embedded.py``; their weights (fp16) and
model cards live in ``monatune/weights/``. They let every method train and be compared on a CPU with
no download.

- ``swin_mini_synthetic`` (9.1M): shaped like a real Swin (stage widths 64-128-256-512, head dim 32,
  4 stages with patch merging), so Mona's fixed 64-wide bottleneck is 7.3 % of the backbone as on
  Swin-T/B/L (4-5 %), not wider than the stages. The main demo's backbone.
- ``swin_nano_synthetic`` (2.7M, widths 32-256): for tests and ``monatune demo --quick``; too narrow
  to show what Mona is for (Mona is 19 % of it and wider than its first stages).

    model = create_embedded("swin_mini_synthetic", num_classes=10)   # 64x64 RGB in, (B, 10) out
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from monatune.backbones.stats import SYNTHETIC_MEAN as MEAN
from monatune.backbones.stats import SYNTHETIC_STD as STD
from monatune.backbones.weights import WeightsError, load_timm_swin_weights

EMBEDDED_BACKBONES: dict[str, dict] = {
    "swin_mini_synthetic": {
        "timm_kwargs": {
            "img_size": 64,
            "patch_size": 4,
            "window_size": 4,
            "embed_dim": 64,
            "depths": (2, 2, 2, 2),
            "num_heads": (2, 4, 8, 16),
            "strict_img_size": False,
        },
        "mean": MEAN,
        "std": STD,
        "input_size": (3, 64, 64),
        "weights_file": "swin_mini_synthetic.safetensors",
        "card_file": "swin_mini_synthetic.json",
        "description": "timm Swin, 9.1M parameters, stage widths 64-128-256-512 (head dim 32), pretrained by "
        "monatune on 24-class procedural shape x texture images (64x64)",
        # scripts/pretrain_embedded.py's recipe for this backbone (its flags override these)
        "pretraining": {"train_size": 65536, "epochs": 8, "batch_size": 128, "lr": 1e-3, "drop_path_rate": 0.1, "precision": "bf16",
                        # "none" was tried: digits probe no better (stage 3: 88.6 vs 92.5 %)
                        "augment": "dihedral"},
    },
    "swin_nano_synthetic": {
        "timm_kwargs": {
            "img_size": 64,
            "patch_size": 4,
            "window_size": 4,
            "embed_dim": 32,
            "depths": (2, 2, 4, 2),
            "num_heads": (1, 2, 4, 8),
            "strict_img_size": False,  # any input size runs (padded windows)
        },
        "mean": MEAN,
        "std": STD,
        "input_size": (3, 64, 64),
        "weights_file": "swin_nano_synthetic.safetensors",
        "card_file": "swin_nano_synthetic.json",
        "description": "timm Swin, 2.7M parameters, stage widths 32-64-128-256, pretrained by monatune "
        "on 24-class procedural shape x texture images (64x64)",
        "pretraining": {"train_size": 32768, "epochs": 5, "batch_size": 128, "lr": 1e-3, "drop_path_rate": 0.05, "precision": "fp32", "augment": "dihedral"},
    },
    "vit_nano_synthetic": {
        "family": "vit",  # a timm VisionTransformer (the others: SwinTransformer)
        "timm_kwargs": {
            "img_size": 64,
            "patch_size": 8,
            "embed_dim": 384,  # Mona (2 per block, 133 C + 9728 each) is 6.8 % of the model at this width
            "depth": 4,
            "num_heads": 6,
            "class_token": True,
            "reg_tokens": 4,
            "dynamic_img_size": True,  # any input size runs (position embedding interpolated)
        },
        "mean": MEAN,
        "std": STD,
        "input_size": (3, 64, 64),
        "weights_file": "vit_nano_synthetic.safetensors",
        "card_file": "vit_nano_synthetic.json",
        "description": "timm ViT, 7.2M parameters, width 384, 4 blocks, patch 8, class + 4 register tokens, pretrained "
        "by monatune on 24-class procedural shape x texture images (64x64)",
        # feature distillation from the shipped Swin mini: the ViT alone learnt too slowly from 24 labels (README)
        "pretraining": {"train_size": 16384, "epochs": 10, "batch_size": 64, "lr": 5e-4, "drop_path_rate": 0.05, "precision": "bf16",
                        "augment": "dihedral", "teacher": "swin_mini_synthetic"},
    },
}


def regenerate_command(name: str) -> str:
    """The command that (re)creates the shipped weights and card of embedded backbone ``name``."""
    return f"python scripts/pretrain_embedded.py --name {name} --seed 0 --out src/monatune/weights/"


def _config(name: str) -> dict[str, Any]:
    if name not in EMBEDDED_BACKBONES:
        raise ValueError(f"unknown embedded backbone {name!r}; valid: {', '.join(sorted(EMBEDDED_BACKBONES))}")
    return EMBEDDED_BACKBONES[name]


def embedded_weights_path(name: str) -> Path:
    """Where the package keeps the weights of ``name`` (the file may be missing in a bare checkout)."""
    return Path(str(resources.files("monatune.weights").joinpath(_config(name)["weights_file"])))


def embedded_model_card(name: str) -> dict[str, Any]:
    """The JSON model card shipped next to the weights: config, data, accuracy, command, date."""
    path = Path(str(resources.files("monatune.weights").joinpath(_config(name)["card_file"])))
    if not path.is_file():
        raise WeightsError(f"model card of {name!r} missing ({path}); regenerate it with `{regenerate_command(name)}`")
    return json.loads(path.read_text())


def create_embedded(name: str, *, num_classes: int = 0, load_weights: bool = True, **kwargs: Any) -> nn.Module:
    """A timm ``SwinTransformer`` (or ``VisionTransformer``: ``vit_nano_synthetic``) for embedded backbone
    ``name``, with its shipped weights.

    Args:
        name: a key of ``EMBEDDED_BACKBONES``.
        num_classes: classifier outputs; 0 = pooled features (B, final stage width). A classifier head is new
            (randomly initialised): the shipped file holds no head.
        load_weights: load the shipped pretrained weights (False: random init).
        kwargs: override the timm constructor arguments, e.g. ``drop_path_rate`` or
            ``always_partition=True`` for dense use; relative-position tables are resized to match.

    Input (B, 3, H, W) standardised with the config's ``mean``/``std``; 64x64 is the native size,
    other sizes run too. Raises WeightsError when the weights file is missing or does not fit.
    """
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    config = _config(name)
    if config.get("family") == "vit":
        kwargs.pop("always_partition", None)  # Swin options, translated for a ViT
        if kwargs.pop("strict_img_size", False):
            kwargs["dynamic_img_size"] = False
        model = VisionTransformer(**{**config["timm_kwargs"], **kwargs}, num_classes=num_classes)
    else:
        model = SwinTransformer(**{**config["timm_kwargs"], **kwargs}, num_classes=num_classes)
    # what timm.data.resolve_data_config reads, so timm's transforms match the pretraining
    model.pretrained_cfg = {
        "architecture": name,
        "input_size": config["input_size"],
        "mean": config["mean"],
        "std": config["std"],
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "num_classes": num_classes,
    }
    if not load_weights:
        return model
    path = embedded_weights_path(name)
    if not path.is_file():
        raise WeightsError(
            f"the pretrained weights of {name!r} are missing from the package ({path}); "
            f"regenerate them with `{regenerate_command(name)}` (10-45 minutes on a CPU), or pass load_weights=False"
        )
    left_out = [k for k in load_timm_swin_weights(model, path) if not k.startswith("head.")]
    if left_out:
        raise WeightsError(f"{path} lacks weights for {name!r}: {left_out[:10]}; regenerate it with `{regenerate_command(name)}`")
    return model
