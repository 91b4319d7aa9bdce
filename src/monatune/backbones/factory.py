"""Build a Swin backbone by name: timm ``swin_*`` variants and torchvision ``swin_t/s/b`` (+ v2)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from monatune.backbones.dense_swin import TimmDenseSwin, TorchvisionDenseSwin
from monatune.backbones.dense_vit import DenseViT
from monatune.backbones.weights import (
    OFFLINE_HINT,
    WeightsError,
    check_all_loaded,
    hub_weights_overlay,
    load_timm_swin_weights,
    load_torchvision_swin_weights,
    loaded_tensor_ids,
)

TORCHVISION_SWINS = ("swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b")
TORCHVISION_VITS = ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14")


def _is_timm_vit(arch: str) -> bool:
    """Whether timm builds ``arch`` as a plain ViT monatune tunes (``VisionTransformer``, ``Eva``)."""
    import timm
    from timm.models.eva import Eva
    from timm.models.vision_transformer import VisionTransformer

    with torch.device("meta"):
        return isinstance(timm.create_model(arch, pretrained=False), (VisionTransformer, Eva))


def available_backbones() -> list[str]:
    """Names ``create_backbone`` accepts (timm's swin_* plus torchvision's and the embedded ones)."""
    import timm

    from monatune.backbones.embedded import EMBEDDED_BACKBONES

    timm_names = [n for n in timm.list_models("swin_*") if not n.startswith("swinv2")]
    return sorted(timm_names) + list(TORCHVISION_SWINS) + list(TORCHVISION_VITS) + sorted(EMBEDDED_BACKBONES)


def _timm_swin(name: str, pretrained: bool, dense: bool, **kwargs) -> nn.Module:
    import timm

    arch = name.split(".", 1)[0]
    vit = timm.is_model(arch) and not arch.startswith("swin") and _is_timm_vit(arch)
    if timm.is_model(arch) and arch.startswith("swinv2") and dense:
        raise ValueError(f"{name!r}: dense heads on timm's Swin V2 are not implemented yet; use a Swin (v1) or a ViT")
    if not timm.is_model(arch) or not (vit or arch.startswith("swin_") or arch.startswith("swinv2")):
        raise ValueError(
            f"unknown backbone {name!r}; valid: {', '.join(available_backbones())}, or a timm VisionTransformer "
            "(vit_*, deit_*, ... e.g. vit_base_patch16_224)"
        )
    if vit:
        kwargs.pop("always_partition", None)  # a Swin option
    if vit:  # any input size: timm interpolates the position embedding to each forward's patch grid
        kwargs.setdefault("dynamic_img_size", True)
    if not vit:  # Dense heads follow the original detection Swin: always shift + pad, any input size.
        kwargs.setdefault("strict_img_size", False)
        if dense:
            kwargs.setdefault("always_partition", True)
    overlay = hub_weights_overlay(name) if pretrained else {}  # a cached hub file, or a fast error offline
    if overlay:
        kwargs["pretrained_cfg_overlay"] = {**overlay, **kwargs.get("pretrained_cfg_overlay", {})}
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError, ConnectionError) as exc:
        if not pretrained:
            raise
        raise WeightsError(f"could not fetch pretrained weights for {name!r} ({type(exc).__name__}: {exc}); {OFFLINE_HINT}") from exc


def create_backbone(
    name: str,
    *,
    dense: bool = False,
    out_indices: Sequence[int] = (0, 1, 2, 3),
    pretrained: bool = False,
    weights: str | Path | None = None,
    num_classes: int = 0,
    meta: bool = False,
    window_order: str = "original",
    allow_missing: Sequence[str] = (),
    **kwargs,
) -> nn.Module:
    """A Swin backbone.

    Args:
        name: timm name (``swin_base_patch4_window7_224`` or with a tag, ``...224.ms_in22k``),
            torchvision name (``swin_t``), or an embedded monatune backbone (``swin_nano_synthetic``).
        dense: return a ``DenseSwin`` (list of NCHW stage maps, a LayerNorm on each) instead of a classifier.
        out_indices: stages a dense backbone returns.
        pretrained: load the hub weights for ``name`` (needs network); see ``weights`` for offline use.
        weights: local weights file (safetensors, timm .pth or original Microsoft Swin .pth). Every
            tensor of the returned backbone must come from it, except the stage norms a dense backbone
            adds (``weights.DENSE_STAGE_NORMS``) and a new classifier head; WeightsError otherwise.
        num_classes: classifier outputs (0 = features only); ignored when ``dense``.
        meta: build on the meta device (shapes only: parameter counting without memory or download).
        window_order: dense timm Swins only: ``"original"`` shifted-window attention pads then rolls
            as the Swin detection code and torchvision do (SPEC §8.1); ``"timm"`` keeps timm's order.
        allow_missing: fnmatch patterns on the returned model's state-dict keys that ``weights`` may
            leave at their initial values (e.g. ``["layers.3.*"]``).
        kwargs: passed to the timm/torchvision constructor (e.g. ``drop_path_rate``, which becomes
            torchvision's per-block stochastic depth with torchvision's own linear rule).
    """
    from monatune.backbones.embedded import EMBEDDED_BACKBONES, create_embedded

    if meta and (pretrained or weights):
        raise ValueError("meta=True builds shapes only; it cannot load weights")
    device = torch.device("meta") if meta else None
    with torch.device(device) if device is not None else contextlib.nullcontext():
        if name.startswith("hf:"):
            if weights is not None or pretrained:
                raise ValueError(f"{name!r}: a transformers backbone loads from a local from_pretrained folder (hf:PATH), not from weights=/pretrained=")
            from monatune.backbones.hf_vit import create_hf_model

            model = create_hf_model(name[3:], 0 if dense else num_classes)
            family = "hf"
        elif name in EMBEDDED_BACKBONES:
            # a weights file replaces the shipped weights
            load_shipped = not meta and weights is None
            if dense:  # dense heads: always shift + pad, as every other dense timm Swin
                kwargs.setdefault("always_partition", True)
            model = create_embedded(name, num_classes=0 if dense else num_classes, load_weights=load_shipped, **kwargs)
            family = "timm"
        elif name in TORCHVISION_VITS:
            import torchvision

            if pretrained:
                raise WeightsError(f"{name!r}: torchvision ViTs take local weights only here (weights=PATH)")
            model = getattr(torchvision.models, name)(num_classes=max(num_classes, 1), **kwargs)
            if num_classes == 0 or dense:
                model.heads = nn.Identity()
            family = "torchvision"
        elif name in TORCHVISION_SWINS:
            import torchvision

            if pretrained:
                raise WeightsError(
                    f"torchvision backbones take local weights only here: pass weights=PATH for {name!r}"
                )
            drop_path_rate = kwargs.pop("drop_path_rate", None)
            model = getattr(torchvision.models, name)(num_classes=max(num_classes, 1), **kwargs)
            if drop_path_rate is not None:
                set_stochastic_depth(model, drop_path_rate)
            if num_classes == 0:
                model.head = nn.Identity()
            family = "torchvision"
        else:
            model = _timm_swin(name, pretrained, dense, num_classes=0 if dense else num_classes, **kwargs)
            family = "timm"
    loaded: set[int] = set()
    if weights is not None:
        loader = load_timm_swin_weights if family == "timm" else load_torchvision_swin_weights
        loaded = loaded_tensor_ids(model, loader(model, weights))
    if dense:
        from timm.models.vision_transformer import VisionTransformer

        if isinstance(model, VisionTransformer) or name in TORCHVISION_VITS or family == "hf":
            model = DenseViT(model, out_indices)  # refuses a transformers Swin, with the types it takes
        elif family == "timm":
            model = TimmDenseSwin(model, out_indices, window_order=window_order)
        else:
            model = TorchvisionDenseSwin(model, out_indices)
    if weights is not None:
        check_all_loaded(model, loaded, weights, name, allow_missing)
    return model


def set_stochastic_depth(model: nn.Module, rate: float) -> None:
    """Give a torchvision Swin's blocks drop-path ``rate`` by torchvision's rule: linear in the block
    index, 0 for the first block, ``rate`` for the last. (Its builders fix their own probability.)"""
    from torchvision.ops import StochasticDepth

    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1], got {rate}")
    drops = [m for m in model.modules() if isinstance(m, StochasticDepth)]
    for i, drop in enumerate(drops):
        drop.p = rate * i / max(len(drops) - 1, 1)

