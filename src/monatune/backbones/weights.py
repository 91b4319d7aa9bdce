"""Loading backbone weights safely: timm hub names, local safetensors/timm files, Microsoft Swin .pth."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class WeightsError(RuntimeError):
    """Weights could not be found, read or matched to the model."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``.pth/.pt/.bin`` checkpoint, never executing pickled code.

    Nested ``{"model": ...}`` / ``{"state_dict": ...}`` checkpoints (the original Swin releases,
    Lightning) are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle with code, truncated file, not a checkpoint
        raise WeightsError(
            f"cannot read {path} as a tensor-only checkpoint ({type(exc).__name__}: {exc}); "
            "monatune loads weights with weights_only=True and never runs pickled code"
        ) from exc
    for key in ("model", "state_dict", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return obj


def load_timm_swin_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load a timm or original Microsoft Swin checkpoint into a timm SwinTransformer.

    Microsoft keys (downsample at the end of a stage, ``head.*``) are converted by timm's own
    ``checkpoint_filter_fn``; relative-position tables are resized to the model's window.
    Returns the model keys left at their initial values (e.g. a new classifier head).
    Raises WeightsError naming keys whose shapes do not match.
    """
    from timm.models.swin_transformer import checkpoint_filter_fn

    state = checkpoint_filter_fn(read_state_dict(path), model)
    own = model.state_dict()
    head_keys = {k for k in state if k.startswith("head.")}
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape and k not in head_keys
    ]
    if mismatched:
        raise WeightsError(
            f"{path} does not fit this backbone; {len(mismatched)} tensor(s) with mismatched shapes:\n  "
            + "\n  ".join(mismatched[:20])
            + ("\n  ..." if len(mismatched) > 20 else "")
        )
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    unexpected = sorted(set(state) - set(own) - head_keys)
    if unexpected:
        raise WeightsError(f"{path} has keys this backbone lacks: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))
