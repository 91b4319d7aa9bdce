"""Build a Swin backbone by name: timm ``swin_*`` variants and torchvision ``swin_t/s/b`` (+ v2)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from monatune.backbones.dense_swin import TimmDenseSwin, TorchvisionDenseSwin
from monatune.backbones.weights import WeightsError, load_timm_swin_weights, read_state_dict

TORCHVISION_SWINS = ("swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b")


def available_backbones() -> list[str]:
    """Names ``create_backbone`` accepts (timm's swin_* plus torchvision's and the embedded ones)."""
    import timm

    from monatune.backbones.embedded import EMBEDDED_BACKBONES

    timm_names = [n for n in timm.list_models("swin_*") if not n.startswith("swinv2")]
    return sorted(timm_names) + list(TORCHVISION_SWINS) + sorted(EMBEDDED_BACKBONES)


def _timm_swin(name: str, pretrained: bool, dense: bool, **kwargs) -> nn.Module:
    import timm

    arch = name.split(".", 1)[0]
    if not timm.is_model(arch) or not arch.startswith("swin_") or arch.startswith("swinv2"):
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(available_backbones())}")
    # Dense heads follow the original detection Swin: always shift + pad, any input size.
    kwargs.setdefault("strict_img_size", False)
    if dense:
        kwargs.setdefault("always_partition", True)
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError, ConnectionError) as exc:
        if not pretrained:
            raise
        raise WeightsError(
            f"could not fetch pretrained weights for {name!r} ({type(exc).__name__}: {exc}). Offline? "
            "Download them on a connected machine (e.g. the timm/HF hub file or Microsoft's Swin .pth) and "
            "pass the file with weights=PATH (CLI: --weights PATH)"
        ) from exc


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
    **kwargs,
) -> nn.Module:
    """A Swin backbone.

    Args:
        name: timm name (``swin_base_patch4_window7_224`` or with a tag, ``...224.ms_in22k``),
            torchvision name (``swin_t``), or an embedded monatune backbone (``swin_nano_synthetic``).
        dense: return a ``DenseSwin`` (list of NCHW stage maps, a LayerNorm on each) instead of a classifier.
        out_indices: stages a dense backbone returns.
        pretrained: load the hub weights for ``name`` (needs network); see ``weights`` for offline use.
        weights: local weights file (safetensors, timm .pth or original Microsoft Swin .pth).
        num_classes: classifier outputs (0 = features only); ignored when ``dense``.
        meta: build on the meta device (shapes only: parameter counting without memory or download).
        window_order: dense timm Swins only: ``"original"`` shifted-window attention pads then rolls
            as the Swin detection code and torchvision do (SPEC §8.1); ``"timm"`` keeps timm's order.
        kwargs: passed to the timm/torchvision constructor (e.g. ``drop_path_rate``).
    """
    from monatune.backbones.embedded import EMBEDDED_BACKBONES, create_embedded

    if meta and (pretrained or weights):
        raise ValueError("meta=True builds shapes only; it cannot load weights")
    device = torch.device("meta") if meta else None
    with torch.device(device) if device is not None else _nullcontext():
        if name in EMBEDDED_BACKBONES:
            model = create_embedded(name, num_classes=0 if dense else num_classes, load_weights=not meta, **kwargs)
            family = "timm"
        elif name in TORCHVISION_SWINS:
            import torchvision

            if pretrained:
                raise WeightsError(
                    f"torchvision backbones take local weights only here: pass weights=PATH for {name!r}"
                )
            if "drop_path_rate" in kwargs:  # torchvision's name for stochastic depth
                kwargs["stochastic_depth_prob"] = kwargs.pop("drop_path_rate")
            model = getattr(torchvision.models, name)(num_classes=max(num_classes, 1), **kwargs)
            if num_classes == 0:
                model.head = nn.Identity()
            family = "torchvision"
        else:
            model = _timm_swin(name, pretrained, dense, num_classes=0 if dense else num_classes, **kwargs)
            family = "timm"
    if weights is not None:
        if family == "timm":
            load_timm_swin_weights(model, weights)
        else:
            state = {k: v for k, v in read_state_dict(weights).items() if not k.startswith("head.")}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or [k for k in missing if not k.startswith("head")]:
                raise WeightsError(f"{weights} does not fit {name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if not dense:
        return model
    if family == "timm":
        return TimmDenseSwin(model, out_indices, window_order=window_order)
    return TorchvisionDenseSwin(model, out_indices)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
