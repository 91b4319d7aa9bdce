"""Where things are in Hugging Face transformers' plain ViTs (transformers >= 5: ``ViTModel``,
``Dinov2Model`` and ``Dinov2WithRegistersModel``, ``CLIPVisionModel``, and their
``...ForImageClassification``): pre-norm layers with split ``q_proj``/``k_proj``/``v_proj``
attention, on (B, N, C) sequences led by the class (and register) tokens. Layers are found by class
name, so transformers stays an optional import (``pip install monatune[transformers]``); the number
of prefix tokens is read off each forward (tokens minus the patch grid)."""

from __future__ import annotations

import torch
from torch import nn

from monatune.backbones.blocks import BlockOps, BlockSite
from monatune.layers.tokens import token_layout


def _vit_attn(block: nn.Module, x: torch.Tensor, attention_mask=None, **kwargs) -> torch.Tensor:
    return block.dropout(block.attention(block.layernorm_before(x), attention_mask, **kwargs)[0])


def _vit_mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.dropout(block.mlp(block.layernorm_after(x)))


def _dino_attn(block: nn.Module, x: torch.Tensor, attention_mask=None, **kwargs) -> torch.Tensor:
    return block.layer_scale1(block.attention(block.norm1(x), attention_mask=attention_mask, **kwargs)[0])


def _dino_mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.layer_scale2(block.mlp(block.norm2(x)))


def _clip_attn(block: nn.Module, x: torch.Tensor, attention_mask=None, **kwargs) -> torch.Tensor:
    return block.self_attn(hidden_states=block.layer_norm1(x), attention_mask=attention_mask, **kwargs)[0]


def _clip_mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.mlp(block.layer_norm2(x))


def _identity(block: nn.Module) -> nn.Module:
    return nn.Identity()


def _drop_path(block: nn.Module) -> nn.Module:
    return block.drop_path


# layer class name -> (ops, attention attribute holding q_proj/v_proj)
LAYERS: dict[str, tuple[BlockOps, str]] = {
    "ViTLayer": (BlockOps(_vit_attn, _vit_mlp, _identity, _identity), "attention"),
    "Dinov2Layer": (BlockOps(_dino_attn, _dino_mlp, _drop_path, _drop_path), "attention"),
    "Dinov2WithRegistersLayer": (BlockOps(_dino_attn, _dino_mlp, _drop_path, _drop_path), "attention"),
    "CLIPEncoderLayer": (BlockOps(_clip_attn, _clip_mlp, _identity, _identity), "self_attn"),
}


def _swin_attn(block: nn.Module, x: torch.Tensor, input_dimensions: tuple[int, int], always_partition: bool = False, **kwargs) -> torch.Tensor:
    """transformers' SwinLayer attention path on (B, H*W, C) tokens (its own methods, in its order):
    norm, pad, cyclic shift, windows, attention, reverse, crop. Records the grid for its Mona."""
    block.__dict__[_GRID_ATTR].hw = tuple(int(v) for v in input_dimensions)
    if not always_partition:
        block.set_shift_and_window_size(input_dimensions)
    height, width = input_dimensions
    bsz, _, channels = x.shape
    h = block.layernorm_before(x).view(bsz, height, width, channels)
    h, pad_values = block.maybe_pad(h, height, width)
    _, height_pad, width_pad, _ = h.shape
    window = block.window_size
    windows = _window_partition(block.cyclic_shift(h), window).view(-1, window * window, channels)
    mask = block.get_attn_mask(height_pad, width_pad, dtype=h.dtype, device=windows.device)
    attn = block.dropout(block.attention(windows, mask, **kwargs)[0]).view(-1, window, window, channels)
    attn = block.cyclic_shift(_window_reverse(attn, window, height_pad, width_pad), reverse=True)
    if pad_values[3] > 0 or pad_values[5] > 0:
        attn = attn[:, :height, :width, :].contiguous()
    return attn.view(bsz, height * width, channels)


def _swin_mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block.dropout(block.mlp(block.layernorm_after(x)))


def _window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    from transformers.models.swin.modeling_swin import window_partition

    return window_partition(x, window)


def _window_reverse(x: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    from transformers.models.swin.modeling_swin import window_reverse

    return window_reverse(x, window, height, width)


_GRID_ATTR = "_monatune_token_layout"


def _grid(conv: nn.Module, inputs: tuple, output: torch.Tensor) -> tuple[int, int]:
    return output.shape[-2], output.shape[-1]


def _patch_conv(embeddings: nn.Module) -> nn.Conv2d:
    return next(m for m in embeddings.modules() if isinstance(m, nn.Conv2d))


SWIN_OPS = BlockOps(_swin_attn, _swin_mlp, _drop_path, _drop_path, output=lambda y: (y, None))


def hf_swin_sites(model: nn.Module) -> list[BlockSite]:
    """Every transformers ``SwinLayer`` in ``model`` (``SwinModel``, ``SwinForImageClassification``):
    pre-norm, (B, H*W, C) tokens with the grid passed as ``input_dimensions``; stages from
    ``encoder.layers.<i>``. Each block records its grid for its Mona (no prefix tokens)."""
    from monatune.layers.tokens import TokenLayout

    sites: list[BlockSite] = []
    stage_of: dict[str, int] = {}
    for name, layer in model.named_modules():
        if type(layer).__name__ != "SwinLayer":
            continue
        stage_prefix, index = name.rsplit(".blocks.", 1)
        stage = stage_of.setdefault(stage_prefix, len(stage_of))
        layout = layer.__dict__.setdefault(_GRID_ATTR, TokenLayout(0))
        dim = layer.layernorm_before.normalized_shape[0]
        sites.append(BlockSite(name, layer, stage, int(index), dim, layer.attention, SWIN_OPS, layout))
    return sites


def hf_vit_sites(model: nn.Module) -> list[BlockSite]:
    """Every supported transformers ViT layer in ``model``, in forward order (stage 0). A layer belongs
    to the nearest enclosing module with ``embeddings`` (CLIP's text layers have no patch conv: skipped)."""
    sites: list[BlockSite] = []
    modules = dict(model.named_modules())
    counts: dict[str, int] = {}
    for name, layer in modules.items():
        kind = LAYERS.get(type(layer).__name__)
        if kind is None:
            continue
        owner = next((modules[p] for p in _ancestors(name) if hasattr(modules[p], "embeddings")), None)
        convs = [m for m in owner.embeddings.modules() if isinstance(m, nn.Conv2d)] if owner is not None else []
        if not convs:
            continue  # e.g. a CLIP text encoder layer
        layout = token_layout(owner, convs[0], None, _grid)
        ops, attn = kind
        index = counts.setdefault(id(owner), 0)
        counts[id(owner)] += 1
        dim = next(m for m in layer.modules() if isinstance(m, nn.LayerNorm)).normalized_shape[0]
        sites.append(BlockSite(name, layer, 0, index, dim, getattr(layer, attn), ops, layout))
    return sites


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, -1, -1)]


class HFLogits(nn.Module):
    """A transformers image classifier as a plain module: images in, logits out (what the engine's
    classification module expects). The wrapped model is ``hf``; its head ``hf.classifier``."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.hf(pixel_values=images).logits


def create_hf_model(spec: str, num_classes: int = 0) -> nn.Module:
    """``hf:<spec>`` of ``create_backbone``: a local ``from_pretrained`` folder (its weights), or a
    transformers model type (``vit``, ``dinov2``, ``dinov2_with_registers``, ``clip_vision_model``) with
    its default config and random weights. ``num_classes > 0``: the ``...ForImageClassification``
    variant (a new head), as :class:`HFLogits`."""
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(f"backbone 'hf:{spec}' needs Hugging Face transformers: pip install monatune[transformers]") from exc
    from pathlib import Path

    local = Path(spec).is_dir()
    config = transformers.AutoConfig.from_pretrained(spec) if local else transformers.AutoConfig.for_model(spec)
    if num_classes:
        config.num_labels = num_classes
        auto = transformers.AutoModelForImageClassification
        model = auto.from_pretrained(spec, config=config, ignore_mismatched_sizes=True) if local else auto.from_config(config)
        return HFLogits(model.train())  # from_pretrained returns eval mode; a new backbone trains like timm's
    model = transformers.AutoModel.from_pretrained(spec) if local else transformers.AutoModel.from_config(config)
    return model.train()
