"""Loading backbone weights safely: timm hub names, local safetensors/timm files, Microsoft Swin .pth."""

from __future__ import annotations

import os
from fnmatch import fnmatch
from pathlib import Path
from typing import Sequence

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


OFFLINE_HINT = (
    "download them on a connected machine (e.g. the timm/HF hub file or Microsoft's Swin .pth) and pass the "
    "file with weights=PATH (CLI: --weights PATH)"
)
HUB_WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm fetches from a hub repo, in order


def hub_weights_overlay(name: str) -> dict[str, str]:
    """Where timm should take the pretrained weights of ``name`` from, decided without waiting on the network.

    Returns ``{"file": path}`` (a ``pretrained_cfg_overlay``) when the hub file is in the local Hugging
    Face cache, so nothing is requested; ``{}`` when timm may download. Raises WeightsError at once when
    the file is not cached and the hub cannot be used (``HF_HUB_OFFLINE`` set, or no connection to it),
    instead of the hub client's minute of retries.
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        return {}  # unknown names and URL-only weights: timm's own handling
    cached = cached_hub_weights(name)
    if cached is not None:
        return {"file": cached}
    if _hub_offline():
        raise WeightsError(f"pretrained weights for {name!r} are not in the local cache and HF_HUB_OFFLINE is set; {OFFLINE_HINT}")
    reason = _hub_unreachable()
    if reason is not None:
        raise WeightsError(
            f"pretrained weights for {name!r} are not in the local cache and the hub cannot be reached ({reason}); {OFFLINE_HINT}"
        )
    return {}


def cached_hub_weights(name: str) -> str | None:
    """The local Hugging Face cache file holding the hub weights of timm name ``name`` (``arch.tag``),
    or None (not cached, not a hub name)."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except (RuntimeError, ValueError):
        return None
    if cfg is None or not cfg.hf_hub_id:
        return None
    for filename in (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HUB_WEIGHTS_FILES:
        found = try_to_load_from_cache(cfg.hf_hub_id, filename)
        if isinstance(found, str):
            return found
    return None


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(f is not None and f.strip().upper() in {"1", "ON", "YES", "TRUE"} for f in flags)


def _hub_unreachable(timeout_s: float = 5.0) -> str | None:
    """Why a TCP connection to the hub endpoint fails, or None when it opens (or a proxy decides)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # the proxy may reach what this machine cannot: let the hub client try
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        return f"{url.hostname}:{port}: {exc}"
    return None


# The one set of backbone tensors that no classification checkpoint holds: the stage-output norms a
# dense backbone adds (DenseSwin.norm0..norm3, fnmatch patterns on its state-dict keys). They start
# at their initial values by design; every other tensor a weights file leaves out is an error.
DENSE_STAGE_NORMS = tuple(f"norm{i}.*" for i in range(4))
# A classifier head is new when the model's class count differs from the file's (or the file has none).
CLASSIFIER_HEAD = "head.*"


def load_timm_swin_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load a timm (Swin, Swin V2, ViT, EVA) or original Microsoft Swin checkpoint into a timm model.

    Microsoft keys (downsample at the end of a stage, ``head.*``) are converted by timm's own
    ``checkpoint_filter_fn``; relative-position tables are resized to the model's window.
    Returns the model keys left at their initial values (e.g. a new classifier head).
    Raises WeightsError (one line) when the file is empty, has keys the model lacks, or tensors
    whose shapes do not match.
    """
    import importlib

    # timm's own key conversion for the model's family (Swin, Swin V2, VisionTransformer, EVA)
    checkpoint_filter_fn = getattr(importlib.import_module(type(model).__module__), "checkpoint_filter_fn", lambda state, model: state)
    state = read_state_dict(path)
    own = model.state_dict()
    foreign, mismatched = _foreign_position_tables(state, model)
    state = {k: v for k, v in state.items() if k not in foreign and k not in mismatched}
    try:
        state = checkpoint_filter_fn(state, model)
    except (AttributeError, KeyError, IndexError, RuntimeError, ValueError) as exc:
        raise WeightsError(
            f"{path} does not fit this backbone: converting its keys failed ({type(exc).__name__}: {exc})"
        ) from exc
    return _load_matching(model, own, state, path, foreign, mismatched)


def load_torchvision_swin_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load a torchvision Swin state dict into a torchvision SwinTransformer (v1 or v2).

    Returns the model keys left at their initial values (e.g. a new classifier head); raises
    WeightsError (one line) as ``load_timm_swin_weights`` does.
    """
    return _load_matching(model, model.state_dict(), read_state_dict(path), path, [], {})


def _foreign_position_tables(state: dict[str, torch.Tensor], model: nn.Module) -> tuple[list[str], dict[str, str]]:
    """Relative-position tables timm's converter cannot resize: of blocks the model lacks (keys
    it does not have) or with another head count (shape mismatches, ``key -> description``)."""
    suffix = ".relative_position_bias_table"
    foreign, mismatched = [], {}
    for key, value in state.items():
        if not key.endswith(suffix):
            continue
        try:
            table = model.get_submodule(key[: -len(suffix)]).relative_position_bias_table
        except AttributeError:
            foreign.append(key)
            continue
        if value.ndim != table.ndim or value.shape[-1] != table.shape[-1]:
            mismatched[key] = f"{key}: file {tuple(value.shape)} vs model {tuple(table.shape)}"
    return foreign, mismatched


def _load_matching(
    model: nn.Module,
    own: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    path: str | Path,
    foreign: list[str],
    mismatched: dict[str, str],
) -> list[str]:
    """Copy ``state`` into ``model`` after checking every key and shape (classifier-head tensors of
    another shape are skipped); return the model keys the file left out."""
    if not state and not foreign and not mismatched:
        raise WeightsError(f"{path} holds no tensors; expected the state dict of a Swin backbone")
    head = CLASSIFIER_HEAD[:-1]
    mismatched = dict(mismatched)
    for key, value in state.items():
        if key in own and own[key].shape != value.shape and not key.startswith(head):
            mismatched[key] = f"{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}"
    if mismatched:
        shown = [k for k in own if k in mismatched][:3]
        raise WeightsError(
            f"{path} does not fit this backbone (weights of another Swin?): {len(mismatched)} tensor(s) with "
            f"mismatched shapes, e.g. {'; '.join(mismatched[k] for k in shown)}"
        )
    unexpected = sorted(((set(state) - set(own)) | set(foreign)) - {k for k in state if k.startswith(head)})
    if unexpected:
        raise WeightsError(
            f"{path} does not fit this backbone (weights of a larger Swin?): {len(unexpected)} key(s) the "
            f"backbone lacks, e.g. {', '.join(unexpected[:4])}"
        )
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def loaded_tensor_ids(model: nn.Module, left: list[str]) -> set[int]:
    """Identities of the tensors of ``model`` that a loader filled (all but the ``left`` keys), so
    that a wrapper built on the same modules (a dense backbone) can tell which of its tensors came from the file."""
    left_out = set(left)
    return {id(t) for k, t in model.state_dict(keep_vars=True).items() if k not in left_out}


def check_all_loaded(
    model: nn.Module, loaded: set[int], path: str | Path, name: str, allow_missing: Sequence[str] = ()
) -> list[str]:
    """Raise WeightsError when a tensor of ``model`` did not come from the weights file ``path``.

    New by design, never an error: ``DENSE_STAGE_NORMS``, the classifier head (``CLASSIFIER_HEAD``) and
    the model's ``new_modules`` (a dense ViT's feature pyramid).
    ``allow_missing``: more fnmatch patterns on ``model``'s state-dict keys that may stay at their
    initial values. Returns the keys left at their initial values (allowed ones).
    """
    new = tuple(f"{m}.*" for m in getattr(model, "new_modules", ()))  # e.g. a dense ViT's pyramid
    allowed = (*DENSE_STAGE_NORMS, CLASSIFIER_HEAD, *new, *allow_missing)
    state = model.state_dict(keep_vars=True)
    left = [k for k, t in state.items() if id(t) not in loaded]
    refused = [k for k in left if not any(fnmatch(k, pattern) for pattern in allowed)]
    if refused:
        shared = os.path.commonprefix(refused)
        example = shared[: shared.rfind(".") + 1] + "*"
        raise WeightsError(
            f"{path} leaves {len(refused)} of {len(state)} tensors of {name} at their initial values "
            f"(weights of another model?), e.g. {', '.join(refused[:4])}; if that is intended, pass "
            f"allow_missing=[{example!r}] (fnmatch patterns on the backbone's state-dict keys)"
        )
    return left
