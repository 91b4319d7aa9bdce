"""Shared cases for the core tests: tiny Swin backbones and one table row per tuning method.

Each method row states, independently of the library code, which parameters must train:
a rule over the *backbone's* parameter names (what the public code selects) and the parameter
names the method adds to every block, with their count as a closed formula of the block width.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

# ---------------------------------------------------------------------------------------------
# Tiny backbones (same architecture in both libraries: embed 16, depths 2-2-2-2, window 2)

EMBED = 16
DEPTHS = (2, 2, 2, 2)
HEADS = (1, 2, 2, 4)
STAGE_DIMS = tuple(EMBED * 2**i for i in range(4))


def tiny_timm_swin(embed_dim: int = EMBED, depths=DEPTHS, num_classes: int = 0, **kwargs) -> nn.Module:
    """A timm SwinTransformer small enough for CPU tests; accepts any input size (multiple of 4)."""
    from timm.models.swin_transformer import SwinTransformer

    # img_size 64 keeps the last stage's grid (2x2) at the window size, so timm does not shrink its
    # relative-position tables and the model matches torchvision's parameter for parameter.
    kwargs.setdefault("img_size", 64)
    return SwinTransformer(
        patch_size=4,
        embed_dim=embed_dim,
        depths=tuple(depths),
        num_heads=HEADS,
        window_size=2,
        num_classes=num_classes,
        strict_img_size=False,
        **kwargs,
    )


def tiny_torchvision_swin(v2: bool = False, embed_dim: int = EMBED) -> nn.Module:
    """A torchvision SwinTransformer (v1, or v2 blocks and patch merging) without classifier head."""
    from torchvision.models import swin_transformer as tv

    extra = {"block": tv.SwinTransformerBlockV2, "downsample_layer": tv.PatchMergingV2} if v2 else {}
    model = tv.SwinTransformer(
        patch_size=[4, 4],
        embed_dim=embed_dim,
        depths=list(DEPTHS),
        num_heads=list(HEADS),
        window_size=[2, 2],
        **extra,
    )
    model.head = nn.Identity()
    return model


@dataclass(frozen=True)
class BackboneCase:
    """A tiny backbone and where its blocks are, by parameter-name prefix."""

    name: str
    build: Callable[[], nn.Module]
    block_prefixes: tuple[str, ...]  # one per block, forward order, ending in "."
    norm_rule: Callable[[str], bool]  # parameter names that belong to a LayerNorm


def _timm_norm(name: str) -> bool:
    return re.search(r"(^|\.)norm\d*\.(weight|bias)$", name) is not None


def _tv_norm(name: str) -> bool:
    # torchvision's patch-embed norm is features.0.2 (Conv2d, Permute, LayerNorm)
    return _timm_norm(name) or name.startswith("features.0.2.")


BACKBONES: dict[str, BackboneCase] = {
    "timm": BackboneCase(
        "timm",
        tiny_timm_swin,
        tuple(f"layers.{s}.blocks.{b}." for s in range(4) for b in range(DEPTHS[s])),
        _timm_norm,
    ),
    "torchvision": BackboneCase(
        "torchvision",
        tiny_torchvision_swin,
        tuple(f"features.{2 * s + 1}.{b}." for s in range(4) for b in range(DEPTHS[s])),
        _tv_norm,
    ),
    "torchvision_v2": BackboneCase(
        "torchvision_v2",
        lambda: tiny_torchvision_swin(v2=True),
        tuple(f"features.{2 * s + 1}.{b}." for s in range(4) for b in range(DEPTHS[s])),
        _tv_norm,
    ),
}
BLOCK_DIMS = tuple(STAGE_DIMS[s] for s in range(4) for _ in range(DEPTHS[s]))


# ---------------------------------------------------------------------------------------------
# The method table


def _bottleneck_suffixes(child: str) -> list[str]:
    return [f"{child}.{lin}.{p}" for lin in ("down", "up") for p in ("weight", "bias")]


def _mona_suffixes(child: str) -> list[str]:
    names = ["norm.weight", "norm.bias", "gamma", "gammax", "project1.weight", "project1.bias"]
    names += [f"adapter_conv.{c}.{p}" for c in ("conv1", "conv2", "conv3", "projector") for p in ("weight", "bias")]
    names += ["project2.weight", "project2.bias"]
    return [f"{child}.{n}" for n in names]


def _lorand_suffixes(child: str) -> list[str]:
    return [f"{child}.{p}.{t}" for p in ("P1", "P2") for t in ("lorand_A", "lorand_K", "lorand_B", "bias")]


def _lorand_linear(i: int, o: int, a: int = 4, b: int = 16) -> int:
    return a * (i * b + b * b + b * o) + o


@dataclass(frozen=True)
class MethodCase:
    """What one method must train on a tiny Swin.

    backbone_rule(name, backbone) -> bool: existing backbone parameters that train.
    added_suffixes: parameter names the method adds to each block (relative to the block).
    added_per_block(d): their parameter count in a block of width d, as a closed formula.
    identity_at_init: the tuned model computes the untuned model's function before training.
    """

    name: str
    backbone_rule: Callable[[str, BackboneCase], bool] = lambda n, b: False
    added_suffixes: tuple[str, ...] = ()
    added_per_block: Callable[[int], int] = lambda d: 0
    identity_at_init: bool = True
    options: dict = field(default_factory=dict)


def _last_block(name: str, backbone: BackboneCase) -> bool:
    return name.startswith(backbone.block_prefixes[-1])


METHOD_CASES: dict[str, MethodCase] = {
    case.name: case
    for case in (
        MethodCase("full", backbone_rule=lambda n, b: True),
        MethodCase("fixed"),
        MethodCase("bitfit", backbone_rule=lambda n, b: "bias" in n),  # SPEC: name holds "bias"
        MethodCase("normtuning", backbone_rule=lambda n, b: b.norm_rule(n)),
        MethodCase("partial1", backbone_rule=_last_block),
        MethodCase(
            "adapter",
            added_suffixes=tuple(_bottleneck_suffixes("adapter1") + _bottleneck_suffixes("adapter2")),
            added_per_block=lambda d: 2 * ((d * 64 + 64) + (64 * d + d)),
            identity_at_init=False,
        ),
        MethodCase(
            "lora",
            added_suffixes=tuple(f"attn.qkv.lora_{w}.lora_{m}" for w in "qv" for m in "AB"),
            added_per_block=lambda d: 2 * (64 * d + d * 64),
        ),
        MethodCase(
            "adaptformer",
            added_suffixes=tuple(_bottleneck_suffixes("adaptformer")),
            added_per_block=lambda d: (d * 64 + 64) + (64 * d + d),
            identity_at_init=False,
        ),
        MethodCase(
            "lorand",
            added_suffixes=tuple(_lorand_suffixes("lorand1") + _lorand_suffixes("lorand2")),
            added_per_block=lambda d: 2 * (_lorand_linear(d, d // 2) + _lorand_linear(d // 2, d)),
        ),
        MethodCase(
            "mona",
            added_suffixes=tuple(_mona_suffixes("mona1") + _mona_suffixes("mona2")),
            added_per_block=lambda d: 2 * (133 * d + 9728),
            identity_at_init=False,
        ),
    )
}

# (backbone, method) pairs the common checks run on; torchvision v2 only for mona and lora.
COMMON_PAIRS = [(b, m) for b in ("timm", "torchvision") for m in METHOD_CASES] + [
    ("torchvision_v2", "mona"),
    ("torchvision_v2", "lora"),
]


def expected_trainable(base_names: list[str], backbone: BackboneCase, case: MethodCase) -> set[str]:
    """Names of the parameters that must train after applying ``case`` (no train_modules)."""
    names = {n for n in base_names if case.backbone_rule(n, backbone)}
    return names | expected_added(backbone, case)


def expected_added(backbone: BackboneCase, case: MethodCase) -> set[str]:
    return {p + s for p in backbone.block_prefixes for s in case.added_suffixes}


# ---------------------------------------------------------------------------------------------
# Helpers


def named_numel(model: nn.Module) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters()}


def trainable_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def perturb_trainable(model: nn.Module, scale: float = 0.05, seed: int = 1) -> None:
    """Add noise to every trainable parameter (zero-initialised ones, e.g. LoRA B, then matter)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every parameter and buffer, by name."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert set(after) == set(before), f"state keys changed: {set(after) ^ set(before)}"
    changed = [k for k in before if not torch.equal(after[k], before[k])]
    assert not changed, f"tensors changed: {changed[:5]}"


def images(batch: int = 2, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def base_and_copy(backbone: str) -> tuple[nn.Module, nn.Module]:
    """A tiny backbone in eval mode and an independent copy with identical weights."""
    model = BACKBONES[backbone].build().eval()
    return model, copy.deepcopy(model)
