"""The input statistics a backbone was pretrained with: what images are standardised with before it.

A backbone owns them (timm's ``pretrained_cfg`` idea): the embedded backbones carry the synthetic
images' statistics, every hub/torchvision Swin ImageNet's. Tasks, data transforms and predictors ask
here instead of keeping their own copies.
"""

from __future__ import annotations

Stats = tuple[tuple[float, ...], tuple[float, ...]]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Channel statistics of the procedural pretraining images in [0, 1] (``data.synthetic_images``;
# measured on 4096 training images of seed 0: mean 0.497-0.498, std 0.285 in every channel), rounded.
SYNTHETIC_MEAN = (0.5, 0.5, 0.5)
SYNTHETIC_STD = (0.285, 0.285, 0.285)


def input_stats(backbone: str) -> Stats:
    """(mean, std) of 0-1 RGB images for backbone ``backbone`` (a ``create_backbone`` name): an embedded
    backbone's own, a timm model's ``pretrained_cfg`` ones, else ImageNet's (torchvision, transformers)."""
    from monatune.backbones.embedded import EMBEDDED_BACKBONES

    embedded = EMBEDDED_BACKBONES.get(backbone)
    if embedded is not None:
        return tuple(embedded["mean"]), tuple(embedded["std"])
    try:  # timm's pretrained_cfg, e.g. CLIP's statistics for a CLIP ViT (ImageNet's for every Swin)
        import timm

        cfg = timm.models.get_pretrained_cfg(backbone)
    except Exception:  # not a timm name (torchvision, transformers): ImageNet's
        cfg = None
    if cfg is not None and cfg.mean and cfg.std:
        return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)
    return IMAGENET_MEAN, IMAGENET_STD


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SYNTHETIC_MEAN", "SYNTHETIC_STD", "Stats", "input_stats"]
