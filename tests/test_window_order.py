"""SPEC §8.1: dense Swin blocks attend in the original detection-code order (pad to a multiple of the
window, roll, region mask on the padded frame, attend, reverse, roll back, crop), for every method.

The reference below is written from that description, token by token within each window, with its
own relative-position indexing; it shares no code with monatune or timm.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import monatune
from monatune.backbones.window_order import uses_original_window_order


def _region(i: int, size: int, window: int, shift: int) -> int:
    """Region of padded coordinate i after the roll: [0, size-window), [size-window, size-shift), [size-shift, size)."""
    if i < size - window:
        return 0
    return 1 if i < size - shift else 2


def reference_window_attention(x, qkv_w, qkv_b, proj_w, proj_b, table, heads, window, shift):
    """x: (B, H, W, C) already normalised. Returns (B, H, W, C)."""
    b, h, w, c = x.shape
    hp, wp = -(-h // window) * window, -(-w // window) * window
    padded = torch.zeros(b, hp, wp, c, dtype=x.dtype)
    padded[:, :h, :w] = x
    if shift:
        padded = torch.roll(padded, shifts=(-shift, -shift), dims=(1, 2))
    out = torch.zeros_like(padded)
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    rel = (ys[:, None] - ys[None, :] + window - 1) * (2 * window - 1) + (xs[:, None] - xs[None, :] + window - 1)
    bias = table[rel].permute(2, 0, 1)  # (heads, area, area)
    head_dim = c // heads
    for top in range(0, hp, window):
        for left in range(0, wp, window):
            tokens = padded[:, top : top + window, left : left + window].reshape(b, -1, c)
            regions = torch.tensor(
                [_region(top + y, hp, window, shift) * 3 + _region(left + x, wp, window, shift) for y, x in zip(ys.tolist(), xs.tolist())]
            )
            block_mask = torch.where(regions[:, None] == regions[None, :], 0.0, -100.0) if shift else 0.0
            q, k, v = (tokens @ qkv_w.T + qkv_b).reshape(b, -1, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
            logits = (q * head_dim**-0.5) @ k.transpose(-1, -2) + bias + block_mask
            attended = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, c)
            out[:, top : top + window, left : left + window] = (attended @ proj_w.T + proj_b).reshape(b, window, window, c)
    if shift:
        out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
    return out[:, :h, :w]


def _reference(block, x):
    """The reference with a block's own weights; window and shift live on the block (timm) or its
    attention (torchvision)."""
    a = block.attn
    window, shift = (block.window_size, block.shift_size) if hasattr(block, "shift_size") else (a.window_size, a.shift_size)
    return reference_window_attention(
        x, a.qkv.weight, a.qkv.bias, a.proj.weight, a.proj.bias, a.relative_position_bias_table,
        a.num_heads, window[0], shift[0],
    )  # fmt: skip


GRIDS = [(50, 50), (56, 80), (128, 128)]


@pytest.fixture(scope="module")
def dense_timm_swin_t():
    torch.manual_seed(0)
    return monatune.create_backbone("swin_tiny_patch4_window7_224", dense=True).eval()


@pytest.mark.parametrize("grid", GRIDS)
def test_timm_dense_block_attends_in_the_original_order(dense_timm_swin_t, grid):
    block = dense_timm_swin_t.layers[0].blocks[1]  # shifted block, dim 96
    assert block.shift_size == (3, 3) and uses_original_window_order(block)
    torch.manual_seed(1)
    x = torch.randn(1, *grid, 96)
    with torch.no_grad():
        expected_attn = _reference(block, block.norm1(x))
        got_attn = block._attn(block.norm1(x))
        torch.testing.assert_close(got_attn, expected_attn, atol=2e-5, rtol=1e-4)
        # the whole block: residual + MLP around that attention
        h = x + expected_attn
        expected_block = h + block.mlp(block.norm2(h))
        torch.testing.assert_close(block(x), expected_block, atol=5e-5, rtol=1e-4)
        # timm's own order (roll before pad) differs on these grids: the fix is not a no-op
        timm_order = type(block)._attn(block, block.norm1(x))
    changed = (timm_order - expected_attn).abs().amax(-1) > 1e-3
    assert changed.float().mean() > 0.01  # 56x80: only the last column band; 50x50 and 128x128: far more


def test_every_method_runs_the_original_order(dense_timm_swin_t):
    """Methods that attach no module (full, fixed, bitfit, ...) run the same corrected blocks."""
    import copy

    torch.manual_seed(2)
    x = torch.randn(1, 3, 200, 200)  # stage grids 50, 25, 13, 7
    with torch.no_grad():
        plain = dense_timm_swin_t(x)
    for method in ("full", "fixed", "bitfit", "normtuning", "partial1", "lora"):
        model = monatune.apply(copy.deepcopy(dense_timm_swin_t), method)
        blocks = [m for m in model.modules() if type(m).__name__ == "SwinTransformerBlock"]
        assert blocks and all(uses_original_window_order(b) for b in blocks)
        with torch.no_grad():
            outs = model(x)
        for a, b in zip(outs, plain):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)  # LoRA's B starts at zero
    mona = monatune.apply(copy.deepcopy(dense_timm_swin_t), "mona")
    block = mona.layers[0].blocks[1]
    with torch.no_grad():
        y = torch.randn(1, 50, 50, 96)
        expected = block.mona1(y + _reference(block, block.norm1(y)))
        h = block.mona1
        got_after_attn = []
        handle = h.register_forward_hook(lambda mod, inp, out: got_after_attn.append(out))
        block(y)
        handle.remove()
    torch.testing.assert_close(got_after_attn[0], expected, atol=5e-5, rtol=1e-4)


def test_classification_at_224_is_unchanged():
    """At 224 every stage grid (56, 28, 14, 7) is a multiple of 7: both orders give the same logits."""
    from monatune.backbones.window_order import use_original_window_order

    torch.manual_seed(3)
    model = monatune.create_backbone("swin_tiny_patch4_window7_224", num_classes=5).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        before = model(x)
        assert use_original_window_order(model) == 12
        after = model(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_timm_order_stays_available():
    model = monatune.create_backbone("swin_tiny_patch4_window7_224", dense=True, meta=True, window_order="timm")
    assert not any(uses_original_window_order(m) for m in model.modules())
    with pytest.raises(ValueError, match="window_order 'pad'.*original, timm"):
        monatune.create_backbone("swin_tiny_patch4_window7_224", dense=True, meta=True, window_order="pad")


@pytest.mark.parametrize("grid", GRIDS)
def test_torchvision_dense_block_matches_the_same_reference(grid):
    """torchvision's Swin already pads before rolling; its dense blocks match the reference too."""
    torch.manual_seed(4)
    model = monatune.create_backbone("swin_t", dense=True).eval()
    block = model.features[1][1]
    assert list(block.attn.shift_size) == [3, 3]
    x = torch.randn(1, *grid, 96)
    with torch.no_grad():
        got = block.attn(block.norm1(x))
        expected = _reference(block, block.norm1(x))
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


def test_masks_are_built_on_the_padded_frame():
    """A 9x9 grid pads to 14x14; regions are cut at 14-7 and 14-3, not at 9-7 and 9-3."""
    from monatune.backbones.window_order import shifted_window_mask

    mask = shifted_window_mask(14, 14, (7, 7), (3, 3), torch.device("cpu"), torch.float32)
    assert mask.shape == (4, 49, 49)
    assert torch.count_nonzero(mask[0]) == 0  # the top-left window lies in one region
    # bottom-right window: rows and columns split 4 | 3 -> four regions of 16, 12, 12, 9 tokens
    same = (mask[3] == 0).sum(1)
    assert sorted(set(same.tolist())) == [9, 12, 16]
    assert F.relu(-mask).max() == 100


def test_small_grids_torchvision_drops_the_shift_ours_keeps_it(dense_timm_swin_t):
    """A stage grid of at most one window (e.g. 5x6): the original code still shifts and masks inside
    the single padded 7x7 window; torchvision drops the shift there, monatune's timm blocks do not."""
    torch.manual_seed(5)
    x = torch.randn(1, 5, 6, 96)
    block = dense_timm_swin_t.layers[0].blocks[1]
    with torch.no_grad():
        torch.testing.assert_close(block._attn(block.norm1(x)), _reference(block, block.norm1(x)), atol=2e-5, rtol=1e-4)
        tv = monatune.create_backbone("swin_t", dense=True).eval().features[1][1]
        unshifted = reference_window_attention(
            tv.norm1(x), tv.attn.qkv.weight, tv.attn.qkv.bias, tv.attn.proj.weight, tv.attn.proj.bias,
            tv.attn.relative_position_bias_table, tv.attn.num_heads, 7, 0,
        )  # fmt: skip
        torch.testing.assert_close(tv.attn(tv.norm1(x)), unshifted, atol=2e-5, rtol=1e-4)
        assert not torch.allclose(tv.attn(tv.norm1(x)), _reference(tv, tv.norm1(x)), atol=1e-3)
