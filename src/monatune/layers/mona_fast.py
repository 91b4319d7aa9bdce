"""Mona's fast form: the CPU's training kernel (``form="fast"``), and the composed inference path.

The three averaged depthwise convs plus identity run as one depthwise conv whose kernel is composed on
the fly, the 1x1 projector plus identity as one matmul with W + I (the identities apart in fp16/bf16:
``folds_identity``), all channels-last. In training ``FastMonaFunction`` keeps only the output y
(which the next LayerNorm keeps anyway), the LN statistics, z1 (the n-wide project1 output) and a bool
dropout mask; backward recomputes the conv, the projector, gelu and project2 bit-identically, recovers
x = y - project2(...) up to one rounding, and LN(x) from it. The depthwise weight gradient is a tiled
forward conv on the CPU (``depthwise_weight_grad``). ``fast_forward(..., for_inference=True)`` is
also the fused inference path of every form (``monatune.fuse``).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from monatune.layers.dropout import keep_mask

__all__ = ["ComposedWeights", "FastMonaFunction", "autocast_dtype", "depthwise_weight_grad", "fast_forward"]


class ComposedWeights(NamedTuple):
    """The fast form's weights (``Mona.composed_weights``), in the order its function takes them."""

    ln_w: torch.Tensor  # gamma * LN weight
    ln_b: torch.Tensor  # gamma * LN bias
    gammax: torch.Tensor
    w1: torch.Tensor
    b1: torch.Tensor
    kernel: torch.Tensor  # (n, 1, k, k): mean of the depthwise kernels (+ identity when folded)
    kbias: torch.Tensor
    proj: torch.Tensor  # (n, n): projector (+ I when folded)
    pbias: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor


def autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The autocast compute dtype for ``x``'s device, or None when autocast is off there."""
    device = x.device.type
    if device in ("cpu", "cuda", "xpu", "mps") and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return None


def fast_forward(
    x: torch.Tensor, weights: Sequence[torch.Tensor], eps: float, p: float, dtype: torch.dtype | None,
    fold: bool = True, for_inference: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:  # fmt: skip
    """Fast-form forward on a contiguous (B, H, W, C) map; returns y and what backward keeps.

    Matmuls and the conv run in ``dtype`` (the autocast dtype) or x's dtype; LN and the input mix in
    x's dtype, as autocast does for the plain form. Kept for backward: LN mean/rstd, z1 = project1
    output and the dropout mask (bytes), plus y itself (``FastMonaFunction``). Backward recomputes z2,
    z3, the activation and project2's output with the same ops on the same inputs (bit-identical),
    then x = y - project2(...) (equal to x up to one rounding) and LN(x) from it.
    ``fold``: the identities are in the composed kernel and projector (``folds_identity``).
    ``for_inference``: z1 is not kept, so z3 may overwrite it.
    """
    ln_w, ln_b, gammax, w1, b1, kernel, kbias, proj, pbias, w2, b2 = ComposedWeights(*weights)
    bsz, h, w, c = x.shape
    md = dtype or x.dtype
    x2 = x.view(-1, c)
    with torch.autocast(x.device.type, enabled=False):
        u, mean, rstd = _adapter_input(x2, ln_w, ln_b, gammax, eps)
        z1 = F.linear(u.to(md), w1.to(md), b1.to(md))  # (M, n)
        # Dead buffers take later results (fresh large CPU allocations cost page faults).
        z2, z3 = _conv_and_projector(z1, bsz, h, w, kernel, kbias, proj, pbias, fold, out=z1 if for_inference else None)
        del z2
        act = torch.ops.aten.gelu_(z3)  # temporaries are reused in place: less heap fragmentation
        w2 = w2.to(md)
        mask = None
        if p > 0.0:  # dropout, kept as a byte mask; 1/(1-p) folded into project2
            keep = keep_mask(act.shape, p, act.device)
            act = act.mul_(keep)
            mask = keep  # bool, 1 byte per element (a uint8 view of it breaks inductor: aten.view.dtype on bool)
            w2 = w2 * _dropout_scale(p)
        if u.dtype == md:
            out = torch.addmm(b2.to(md), act, w2.t(), out=u)
        else:
            out = F.linear(act, w2, b2.to(md))
        del u
        y = out.add_(x2) if out.dtype == x2.dtype else x2 + out  # autocast: y in x's (wider) dtype
    return y.view(bsz, h, w, c), (mean, rstd, z1, mask)


def _adapter_input(
    x2: torch.Tensor, ln_w: torch.Tensor, ln_b: torch.Tensor, gammax: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """u = LN(x; gamma*w, gamma*b) + gammax * x on (M, C) rows, with the LN mean and rstd."""
    nd = x2.dtype
    u, mean, rstd = torch.native_layer_norm(x2, (x2.shape[1],), ln_w.to(nd), ln_b.to(nd), eps)
    return u.addcmul_(x2, gammax.to(nd)), mean, rstd


def _conv_and_projector(
    z1: torch.Tensor, bsz: int, h: int, w: int, kernel: torch.Tensor, kbias: torch.Tensor,
    proj: torch.Tensor, pbias: torch.Tensor, fold: bool = True, out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """z2 = z1 + composed depthwise conv of z1, z3 = z2 + z2 W^T + b; (M, n) rows. ``fold``: the
    identities are in ``kernel`` and ``proj`` (float32/64); otherwise they are adds of their own.

    ``out``: an (M, n) buffer for z3 (may be z1 itself: the conv has read it by then)."""
    md, n = z1.dtype, z1.shape[1]
    z2 = F.conv2d(_nchw(z1, bsz, h, w), kernel.to(md), kbias.to(md), padding=kernel.shape[-1] // 2, groups=n)
    z2 = z2.permute(0, 2, 3, 1).reshape(-1, n)  # no copy: the conv keeps channels-last
    if not fold:
        z2 = z2.add_(z1)
    z3 = F.linear(z2, proj.to(md), pbias.to(md)) if out is None else torch.addmm(pbias.to(md), z2, proj.to(md).t(), out=out)
    return z2, z3 if fold else z3.add_(z2)


def _colsum(t: torch.Tensor) -> torch.Tensor:
    """Sum over rows, accumulated in at least float32."""
    return t.sum(0, dtype=torch.promote_types(t.dtype, torch.float32))


def _dropout_scale(p: float) -> float:
    return 1.0 / (1.0 - p) if p < 1.0 else 0.0


def depthwise_weight_grad(x: torch.Tensor, g: torch.Tensor, k: int, tile: int = 32) -> torch.Tensor:
    """Weight gradient (n, 1, k, k) of a stride-1, 'same'-padded depthwise k x k conv.

    x (the conv input) and g (the output gradient) are (B, H, W, n) channels-last. The gradient,
    sum over pixels of g[h, w] * x_pad[h + i, w + j], is computed as a *forward* depthwise conv:
    each channel of each image tile of g (at most ``tile`` pixels a side) is a kernel, its padded
    x region the input, the k x k output the partial sum, then summed over images and tiles.
    oneDNN's backward-weights kernel runs a generic grouped path for depthwise convs (channels
    padded to blocks of 16); this is faster on the benchmark CPU (``bench/depthwise_weight_grad.py``).
    The sums are the same up to float reassociation.
    """
    bsz, h, w, n = x.shape
    p = k // 2
    th, tw = -(-h // -(-h // tile)), -(-w // -(-w // tile))  # tile sides: near-equal split of H, W
    nh, nw = -(-h // th), -(-w // tw)
    hp, wp = nh * th, nw * tw
    gp = F.pad(g, (0, 0, 0, wp - w, 0, hp - h))
    xp = F.pad(x, (0, 0, p, wp - w + p, p, hp - h + p))
    sb, sh, sw, sc = xp.stride()
    rh, rw = th + k - 1, tw + k - 1
    # Channel index of the grouped conv = (image, tile row, tile col, channel), innermost last.
    regions = xp.as_strided((rh, rw, bsz, nh, nw, n), (sh, sw, sb, th * sh, tw * sw, sc)).contiguous()
    inputs = regions.view(1, rh, rw, -1).permute(0, 3, 1, 2)  # channels-last (1, C', rh, rw)
    kernels = gp.view(bsz, nh, th, nw, tw, n).permute(0, 1, 3, 5, 2, 4).reshape(-1, 1, th, tw)
    partial = F.conv2d(inputs, kernels, groups=kernels.shape[0])  # (1, C', k, k)
    partial = partial.permute(0, 2, 3, 1).reshape(k, k, -1, n)
    return partial.sum(2, dtype=torch.promote_types(partial.dtype, torch.float32)).permute(2, 0, 1).unsqueeze(1)


def _nchw(t: torch.Tensor, bsz: int, h: int, w: int) -> torch.Tensor:
    """(M, n) rows of a (B, H, W, n) map -> (B, n, H, W) channels-last view (no copy)."""
    return t.view(bsz, h, w, -1).permute(0, 3, 1, 2)


class FastMonaFunction(torch.autograd.Function):
    """Fast-form training step: keeps y, LN stats, z1 and a byte mask; recomputes the rest in backward."""

    @staticmethod
    def forward(ctx, x, eps, p, dtype, fold, *weights):  # noqa: D401 - autograd API
        y, (mean, rstd, z1, mask) = fast_forward(x, weights, eps, p, dtype, fold)
        ctx.eps, ctx.p, ctx.fold = eps, p, fold
        ctx.has_mask = mask is not None
        # y, not x: the next layer (a LayerNorm) keeps y anyway, so no stream-wide tensor is added
        ctx.save_for_backward(y, mean, rstd, z1, *weights, *([mask] if mask is not None else []))
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        y, mean, rstd, z1, *weights = ctx.saved_tensors
        mask = weights.pop() if ctx.has_mask else None
        ln_w, ln_b, gammax, w1, b1, kernel, kbias, proj, pbias, w2, b2 = weights = ComposedWeights(*weights)
        need = ComposedWeights(*ctx.needs_input_grad[5:])  # which weights want a gradient, by name
        bsz, h, w, c = y.shape
        n = z1.shape[1]
        md, nd = z1.dtype, y.dtype
        w2s = w2.to(md) * _dropout_scale(ctx.p) if mask is not None else w2.to(md)  # as in forward
        grads: dict[str, torch.Tensor | None] = dict.fromkeys(ComposedWeights._fields)
        with torch.autocast(y.device.type, enabled=False):
            gy2 = gy.reshape(-1, c)
            gym = gy2.to(md)
            z2, z3 = _conv_and_projector(z1, bsz, h, w, kernel, kbias, proj, pbias, ctx.fold)
            # project2, dropout, gelu
            act = F.gelu(z3)
            if mask is not None:
                act = act.mul_(mask)
            # x = y - project2(act): the forward's own ops, so `out` is bit-identical; x up to rounding
            out = torch.addmm(b2.to(md), act, w2s.t())
            x2 = torch.sub(y.view(-1, c), out, out=out) if out.dtype == nd else y.view(-1, c) - out
            if need.w2:
                grads["w2"] = gym.t() @ act
                if mask is not None:
                    grads["w2"].mul_(_dropout_scale(ctx.p))
            if need.b2:
                grads["b2"] = _colsum(gym)
            g = torch.mm(gym, w2s, out=act)  # act is dead: its buffer takes g
            del act
            if mask is not None:
                g = g.mul_(mask)
            g = torch.ops.aten.gelu_backward.grad_input(g, z3, grad_input=g)
            # projector (W + I)
            if need.proj:
                grads["proj"] = g.t() @ z2
            if need.pbias:
                grads["pbias"] = _colsum(g)
            del z2
            # z3 is dead: its buffer takes the new g
            g = torch.mm(g, proj.to(md), out=z3) if ctx.fold else torch.addmm(g, g, proj.to(md), out=z3)
            del z3
            g_z2 = g
            # composed depthwise conv
            k = kernel.shape[-1]
            tiled = need.kernel and z1.device.type == "cpu"  # see depthwise_weight_grad
            if tiled:
                grads["kernel"] = depthwise_weight_grad(z1.view(bsz, h, w, n), g.view(bsz, h, w, n), k)
            if need.kbias:
                grads["kbias"] = _colsum(g)
            g, gk, _ = torch.ops.aten.convolution_backward(
                _nchw(g, bsz, h, w), _nchw(z1, bsz, h, w), kernel.to(md), None, [1, 1],
                [k // 2] * 2, [1, 1], False, [0, 0], n, [True, need.kernel and not tiled, False],
            )  # fmt: skip
            if need.kernel and not tiled:
                grads["kernel"] = gk
            g = g.permute(0, 2, 3, 1).reshape(-1, n)
            if not ctx.fold:
                g = g.add_(g_z2)
            del g_z2
            # project1, on u = LN'(x) + gammax * x recomputed
            u = _adapter_input(x2, ln_w, ln_b, gammax, ctx.eps)[0] if need.w1 or need.gammax else None
            if need.w1:
                grads["w1"] = g.t() @ u.to(md)
            if need.b1:
                grads["b1"] = _colsum(g)
            gu = (g @ w1.to(md)).to(nd)
            del g
            if need.gammax:
                grads["gammax"] = _colsum(torch.mul(gu, x2, out=u))
            del u
            need_x = ctx.needs_input_grad[0]
            gx, grads["ln_w"], grads["ln_b"] = torch.ops.aten.native_layer_norm_backward(
                gu, x2, (c,), mean, rstd, ln_w.to(nd), ln_b.to(nd), [need_x, need.ln_w, need.ln_b]
            )
            if need_x:
                gx = gx.addcmul_(gu, gammax.to(nd)).add_(gy2).view(bsz, h, w, c)
            del x2
        out = [None if grads[f] is None else grads[f].to(t.dtype) for f, t in zip(ComposedWeights._fields, weights)]
        return gx, None, None, None, None, *out
