"""Backbones: dense Swin maps, block discovery, timm/torchvision agreement, and where each method acts."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from core_cases import (
    BACKBONES,
    BLOCK_DIMS,
    DEPTHS,
    HEADS,
    METHOD_CASES,
    STAGE_DIMS,
    base_and_copy,
    images,
    tiny_timm_swin,
    tiny_torchvision_swin,
)
from torch import nn

import monatune
from monatune.backbones import TorchvisionDenseSwin, find_block_sites

# --- dense Swin: four NCHW maps at strides 4/8/16/32 ------------------------------------------------


def _dense_timm_tiny(**kw):
    return monatune.create_backbone(
        "swin_tiny_patch4_window7_224", dense=True, embed_dim=16, depths=DEPTHS, num_heads=HEADS, **kw
    )


DENSE = {
    "timm-tiny": (_dense_timm_tiny, STAGE_DIMS),
    "torchvision-tiny": (lambda **kw: TorchvisionDenseSwin(tiny_torchvision_swin(), **kw), STAGE_DIMS),
    "torchvision-v2-tiny": (lambda **kw: TorchvisionDenseSwin(tiny_torchvision_swin(v2=True), **kw), STAGE_DIMS),
    "torchvision-swin_t": (lambda **kw: monatune.create_backbone("swin_t", dense=True, **kw), (96, 192, 384, 768)),
}


@pytest.mark.parametrize("name", list(DENSE))
def test_dense_swin_returns_four_nchw_maps(name):
    build, channels = DENSE[name]
    model = build().eval()
    h, w = 72, 88  # not divisible by 32: the last stages pad
    with torch.no_grad():
        outs = model(images(batch=2, h=h, w=w))
    assert model.out_channels == list(channels)
    assert model.strides == [4, 8, 16, 32]
    assert [tuple(o.shape) for o in outs] == [
        (2, c, math.ceil(h / s), math.ceil(w / s)) for c, s in zip(channels, (4, 8, 16, 32))
    ]
    # Each map went through its own stage norm: per-pixel channel statistics are normalised.
    for o in outs:
        torch.testing.assert_close(o.mean(dim=1), torch.zeros_like(o.mean(dim=1)), rtol=0, atol=1e-4)
    stage_norms = [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm) and n.startswith("norm")]
    assert stage_norms == ["norm0", "norm1", "norm2", "norm3"]


def test_dense_swin_out_indices():
    model = _dense_timm_tiny(out_indices=(1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(images(h=64, w=64))
    assert model.out_channels == [32, 64, 128] and model.strides == [8, 16, 32]
    assert [o.shape[1:] for o in outs] == [(32, 8, 8), (64, 4, 4), (128, 2, 2)]
    with pytest.raises(ValueError, match="out_indices"):
        _dense_timm_tiny(out_indices=(4,))


@pytest.mark.parametrize("name", ["timm-tiny", "torchvision-tiny"])
@pytest.mark.parametrize("method", ["mona", "lora", "adaptformer"])
def test_tuned_dense_swin_keeps_its_maps(name, method):
    model = DENSE[name][0]().eval()
    x = images(h=72, w=88)
    with torch.no_grad():
        before = [o.shape for o in model(x)]
        monatune.apply(model, method)
        after = [o.shape for o in model(x)]
    assert after == before
    assert monatune.count_parameters(model)[0] == sum(METHOD_CASES[method].added_per_block(d) for d in BLOCK_DIMS)


# --- block discovery and timm/torchvision agreement --------------------------------------------------


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_block_sites(backbone):
    sites = find_block_sites(BACKBONES[backbone].build())
    assert [s.name + "." for s in sites] == list(BACKBONES[backbone].block_prefixes)
    assert [s.dim for s in sites] == list(BLOCK_DIMS)
    assert [(s.stage, s.index) for s in sites] == [(i, j) for i in range(4) for j in range(DEPTHS[i])]
    wrapped = nn.Sequential(BACKBONES[backbone].build(), nn.Linear(128, 3))
    assert [s.name for s in find_block_sites(wrapped)] == ["0." + s.name for s in sites]


def test_tiny_timm_and_torchvision_are_the_same_architecture():
    timm_model, tv_model = tiny_timm_swin(), tiny_torchvision_swin()
    shapes = lambda m: sorted(tuple(p.shape) for p in m.parameters())  # noqa: E731
    assert shapes(timm_model) == shapes(tv_model)


@pytest.mark.parametrize("method", list(METHOD_CASES))
def test_timm_and_torchvision_give_the_same_counts(method):
    counts = [monatune.count_parameters(monatune.apply(BACKBONES[b].build(), method)) for b in ("timm", "torchvision")]
    assert counts[0] == counts[1]


@pytest.fixture(scope="module")
def meta_swin_b():
    return {
        "timm": monatune.create_backbone("swin_base_patch4_window7_224", meta=True),
        "torchvision": monatune.create_backbone("swin_b", meta=True),
        "torchvision-dense": monatune.create_backbone("swin_b", dense=True, meta=True),
    }


# SPEC section 4, Swin-B column (the torchvision build must reproduce it too).
SPEC_SWIN_B_DENSE = {
    "full": 86_745_016,
    "fixed": 0,
    "bitfit": 201_656,
    "normtuning": 59_392,
    "partial1": 12_601_632,
    "adapter": 3_107_328,
    "adaptformer": 1_553_664,
    "lora": 3_080_192,
    "mona": 3_667_456,
}


@pytest.mark.parametrize("method", list(SPEC_SWIN_B_DENSE))
def test_torchvision_dense_swin_b_reproduces_spec_counts(meta_swin_b, method):
    model = monatune.apply(copy.deepcopy(meta_swin_b["torchvision-dense"]), method)
    trainable, total = monatune.count_parameters(model)
    assert trainable == SPEC_SWIN_B_DENSE[method]
    added = trainable if METHOD_CASES[method].added_suffixes else 0  # methods that add modules train only them
    assert total == SPEC_SWIN_B_DENSE["full"] + added


@pytest.mark.parametrize("method", ["bitfit", "normtuning", "mona", "lora"])
def test_meta_swin_b_timm_equals_torchvision(meta_swin_b, method):
    counts = [
        monatune.count_parameters(monatune.apply(copy.deepcopy(meta_swin_b[k]), method))
        for k in ("timm", "torchvision")
    ]
    assert counts[0] == counts[1]
    # Classification Swin: one final norm instead of four stage norms (1024 + 512 + 256 + 128 - 1024 channels).
    if method == "normtuning":
        assert counts[0][0] == SPEC_SWIN_B_DENSE["normtuning"] - 2 * (128 + 256 + 512)


def test_create_backbone_errors():
    with pytest.raises(ValueError, match="swin_tiny_patch4_window7_224"):
        monatune.create_backbone("swin_nonexistent")
    with pytest.raises(ValueError, match="meta"):
        monatune.create_backbone("swin_t", meta=True, weights="x.safetensors")


@pytest.mark.parametrize("name", ["swin_t", "swin_v2_t"])
def test_drop_path_rate_reaches_torchvision_blocks(name):
    from torchvision.ops import StochasticDepth

    for dense in (False, True):
        model = monatune.create_backbone(name, drop_path_rate=0.1, dense=dense)
        probabilities = [m.p for m in model.modules() if isinstance(m, StochasticDepth)]
        # torchvision's rule: linear over the 2+2+6+2 blocks, 0 for the first, the rate for the last
        assert probabilities == pytest.approx([0.1 * i / 11 for i in range(12)])


# --- where each method acts inside a block -------------------------------------------------------------


class _Zero(nn.Module):
    """Stands in for drop-path with drop probability 1: the whole branch is dropped."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def _drop_all_paths(block: nn.Module) -> None:
    for name in ("drop_path1", "drop_path2", "stochastic_depth"):
        if hasattr(block, name):
            setattr(block, name, _Zero())


def _attn_branch(backbone: str, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The attention branch output as each library defines it (v1 pre-norm, v2 post-norm)."""
    if backbone == "timm":
        return block._attn(block.norm1(x))
    if backbone == "torchvision":
        return block.attn(block.norm1(x))
    return block.norm1(block.attn(x))


def _mlp_branch(backbone: str, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if backbone == "torchvision_v2":
        return block.norm2(block.mlp(x))
    return block.mlp(block.norm2(x))


def _is_shifted(backbone: str, block: nn.Module) -> bool:
    shift = block.shift_size if backbone == "timm" else block.attn.shift_size
    return any(s > 0 for s in (shift if isinstance(shift, (tuple, list)) else (shift,)))


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_mona_sees_the_unpadded_unshifted_stage_map(backbone):
    model, _ = base_and_copy(backbone)
    monatune.apply(model, "mona")
    sites = find_block_sites(model)
    seen: dict[str, list] = {}
    for site in sites:
        for child in ("mona1", "mona2"):
            getattr(site.block, child).register_forward_hook(
                lambda m, args, out, key=f"{site.name}.{child}": seen.setdefault(key, []).append(args[0].detach())
            )
        site.block.register_forward_pre_hook(
            lambda m, args, key=site.name: seen.setdefault(key, []).append(args[0].detach())
        )
    h, w = 36, 28  # token grid 9x7: not a multiple of the window (2) at any stage
    with torch.no_grad():
        model(images(batch=2, h=h, w=w))
    grids = [(9, 7), (5, 4), (3, 2), (2, 1)]  # patch merging pads odd grids up
    for site in sites:
        for child in ("mona1", "mona2"):
            (x,) = seen[f"{site.name}.{child}"]
            assert tuple(x.shape) == (2, *grids[site.stage], site.dim), f"{site.name}.{child}"

    # In a shifted block, mona1's input is the plain stream x + attn(x), not the rolled one.
    site = sites[1]
    assert site.stage == 0 and _is_shifted(backbone, site.block)
    (x_in,) = seen[site.name]
    (mona1_in,) = seen[f"{site.name}.mona1"]
    with torch.no_grad():
        expected = x_in + _attn_branch(backbone, site.block, x_in)
    torch.testing.assert_close(mona1_in, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(mona1_in, torch.roll(expected, shifts=(-1, -1), dims=(1, 2)), atol=1e-3)


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_mona_with_zero_output_reproduces_the_untuned_backbone(backbone):
    model, base = base_and_copy(backbone)
    monatune.apply(model, "mona")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".project2." in name:
                p.zero_()
        x = images(h=36, w=28)
        torch.testing.assert_close(model(x), base(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backbone", ["timm", "torchvision", "torchvision_v2"])
def test_mona_branch_has_no_drop_path(backbone):
    model, _ = base_and_copy(backbone)
    monatune.apply(model, "mona")
    block = find_block_sites(model)[1].block
    _drop_all_paths(block)
    x = torch.randn(2, 9, 7, 16)
    with torch.no_grad():
        torch.testing.assert_close(block(x), block.mona2(block.mona1(x)))


@pytest.mark.parametrize("backbone", ["timm", "torchvision"])
def test_adaptformer_is_parallel_to_the_mlp_and_outside_drop_path(backbone):
    model, _ = base_and_copy(backbone)
    monatune.apply(model, "adaptformer")
    block = find_block_sites(model)[1].block
    x = torch.randn(2, 9, 7, 16)
    a = block.adaptformer
    with torch.no_grad():
        nn.init.normal_(a.up.weight)
        parallel = 0.1 * F.linear(F.gelu(F.linear(x, a.down.weight, a.down.bias)), a.up.weight, a.up.bias)
        x1 = x + _attn_branch(backbone, block, x)
        expected = x1 + _mlp_branch(backbone, block, x1) + 0.1 * F.linear(
            F.gelu(F.linear(x1, a.down.weight, a.down.bias)), a.up.weight, a.up.bias
        )
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
        _drop_all_paths(block)  # both residual branches dropped: only the (un-normalised) parallel branch stays
        torch.testing.assert_close(block(x), x + parallel, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backbone", ["timm", "torchvision"])
@pytest.mark.parametrize(
    ("method", "children"), [("adapter", ("adapter1", "adapter2")), ("lorand", ("lorand1", "lorand2"))]
)
def test_sequential_adapters_sit_before_the_residual_add(backbone, method, children):
    model, _ = base_and_copy(backbone)
    monatune.apply(model, method)
    block = find_block_sites(model)[1].block
    with torch.no_grad():
        for p in getattr(block, children[0]).parameters():
            p.add_(0.3 * torch.randn_like(p))
        for p in getattr(block, children[1]).parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(2, 9, 7, 16)
    first, second = getattr(block, children[0]), getattr(block, children[1])
    with torch.no_grad():
        x1 = x + first(_attn_branch(backbone, block, x))
        expected = x1 + second(_mlp_branch(backbone, block, x1))
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
        _drop_all_paths(block)  # the adapters are inside the dropped branches
        assert torch.equal(block(x), x)
