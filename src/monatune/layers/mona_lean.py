"""Mona's lean form: the fewest operator launches per training step (the GPU path, issue 13).

A GPU step of a small adapter is bound by the host: each operator launch costs microseconds of CPU
time whatever its size. This form computes the same function as the plain form (SPEC §1) with as few
launches as the math allows, in one autograd function whose backward is written out:

- the weights are composed inside the function, without autograd nodes: the depthwise kernels are
  averaged into one k x k kernel (in place on slices of the largest) with the identity at its centre
  tap in float32/64 (in fp16/bf16 a 1 + w tap would round w to the 1's precision: there the identity
  is an add of its own), gamma is folded into the LayerNorm's affine, and under autocast all small
  weights are cast in one ``cat`` + ``to``;
- the projector's identity is an ``addmm`` on the conv output itself (``z2 + z2 @ W^T``); dropout is
  ``keep_mask`` (torch's own ``bernoulli_`` off the CPU, the same units as the other forms draw) and
  one multiply, its 1/(1-p) folded into project2's weight;
- backward keeps what the fast form keeps (y, LN statistics, z1, the mask: no stream-wide tensor
  inside a Swin stage), recomputes conv, projector, GELU and project2 (six launches), recovers
  x = y - project2(...) up to one rounding, and returns the parameters' gradients directly.

No host synchronisation, no Python branch on tensor values: CUDA-graph friendly and traceable by
``torch.compile``. On the CPU the fast form is quicker; this form is the default on every other device.

``compiled_lean`` is the same function through inductor (the "compiled" form): its elementwise work
fuses into a few generated kernels around the matmuls and the conv, a quarter of the fast form's
launches (``bench/launch_count.py``); it compiles once per input shape on first use.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from monatune.layers.dropout import keep_mask


class MonaParams(NamedTuple):
    """A Mona's parameters in the order the lean function takes them (convs last: their number varies)."""

    ln_w: torch.Tensor
    ln_b: torch.Tensor
    gamma: torch.Tensor
    gammax: torch.Tensor
    w1: torch.Tensor
    b1: torch.Tensor
    proj_w: torch.Tensor  # (n, n, 1, 1)
    proj_b: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    conv_w: tuple[torch.Tensor, ...]  # (n, 1, k, k) per kernel size
    conv_b: tuple[torch.Tensor, ...]

    def flat(self) -> tuple[torch.Tensor, ...]:
        return (*self[:10], *self.conv_w, *self.conv_b)

    @classmethod
    def from_flat(cls, tensors: Sequence[torch.Tensor]) -> "MonaParams":
        convs = len(tensors) - 10
        return cls(*tensors[:10], tuple(tensors[10 : 10 + convs // 2]), tuple(tensors[10 + convs // 2 :]))


class Composed(NamedTuple):
    """The weights one lean step computes with (md = compute dtype; LN affine in the stream dtype)."""

    ln_w: torch.Tensor  # gamma * LN weight
    ln_b: torch.Tensor  # gamma * LN bias
    w1: torch.Tensor
    b1: torch.Tensor
    kernel: torch.Tensor  # (n, 1, k, k): mean of the depthwise kernels (+ 1 at the centre tap: folds_identity)
    kbias: torch.Tensor
    proj_w: torch.Tensor  # (n, n): the projector without its identity
    proj_b: torch.Tensor
    w2: torch.Tensor  # times 1/(1-p) when dropout is on
    b2: torch.Tensor


class Saved(NamedTuple):
    """What the lean backward keeps besides the parameters: no stream-wide tensor but y."""

    y: torch.Tensor
    mean: torch.Tensor
    rstd: torch.Tensor
    z1: torch.Tensor
    mask: torch.Tensor | None
    composed: Composed


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t if t.dtype == dtype else t.to(dtype)


def compose(params: MonaParams, nd: torch.dtype, md: torch.dtype, dropout_scale: float = 1.0) -> Composed:
    """Compose the step's weights: 8 launches for 3 kernel sizes and dropout, plus 2 under autocast."""
    sizes = [w.shape[-1] for w in params.conv_w]
    big = max(range(len(sizes)), key=sizes.__getitem__)
    k, share = sizes[big], 1.0 / len(sizes)
    kernel = params.conv_w[big] * share
    for i, (weight, size) in enumerate(zip(params.conv_w, sizes)):
        if i != big:
            o = (k - size) // 2
            kernel[..., o : o + size, o : o + size].add_(weight, alpha=share)
    if folds_identity(md):
        kernel[..., k // 2, k // 2].add_(1.0)
    kbias = torch.stack(params.conv_b).mean(0)
    w2 = params.w2 * dropout_scale if dropout_scale != 1.0 else params.w2
    small = [params.w1, params.b1, kernel, kbias, params.proj_w.flatten(1), params.proj_b, w2, params.b2]
    if any(t.dtype != md for t in small):  # autocast: one cast for all of them
        flat = torch.cat([t.reshape(-1) for t in small]).to(md)
        small = [piece.view(t.shape) for piece, t in zip(flat.split([t.numel() for t in small]), small)]
    gamma = _as(params.gamma, nd)
    return Composed(gamma * _as(params.ln_w, nd), gamma * _as(params.ln_b, nd), *small)


def _nchw(t: torch.Tensor, bsz: int, h: int, w: int) -> torch.Tensor:
    """(M, n) rows of a (B, H, W, n) map -> (B, n, H, W) channels-last view (no copy)."""
    return t.view(bsz, h, w, -1).permute(0, 3, 1, 2)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(B, n, H, W) channels-last -> (M, n) rows (a view when the layout is channels-last)."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def _adapter_input(x2: torch.Tensor, c: Composed, gammax: torch.Tensor, eps: float):
    u, mean, rstd = torch.native_layer_norm(x2, (x2.shape[1],), c.ln_w, c.ln_b, eps)
    return u.addcmul_(x2, gammax), mean, rstd


def folds_identity(dtype: torch.dtype) -> bool:
    """Whether the composed kernel carries the conv's identity (float32/64) or it is added apart."""
    return dtype in (torch.float32, torch.float64)


def _conv_projector(z1: torch.Tensor, c: Composed, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """z2 = z1 + composed depthwise conv of z1; z3 = z2 + z2 W^T + b."""
    k = c.kernel.shape[-1]
    z2 = _rows(F.conv2d(_nchw(z1, *shape), c.kernel, c.kbias, padding=k // 2, groups=z1.shape[1]))
    if not folds_identity(z1.dtype):
        z2 = z2.add_(z1)
    return z2, torch.addmm(c.proj_b, z2, c.proj_w.t()).add_(z2)


def lean_forward(
    x2: torch.Tensor, shape: tuple[int, int, int], params: MonaParams, eps: float, p: float,
    md: torch.dtype | None, train: bool,
) -> tuple[torch.Tensor, Saved]:  # fmt: skip
    """y = Mona(x) on (M, C) rows of a (B, H, W, C) map, and what backward keeps."""
    nd = x2.dtype
    md = md or nd
    drop = train and p > 0.0
    with torch.autocast(x2.device.type, enabled=False):
        c = compose(params, nd, md, _scale(p) if drop else 1.0)
        u, mean, rstd = _adapter_input(x2, c, _as(params.gammax, nd), eps)
        z1 = torch.addmm(c.b1, _as(u, md), c.w1.t())
        del u
        _, z3 = _conv_projector(z1, c, shape)
        act = torch.ops.aten.gelu_(z3)
        mask = None
        if drop:
            mask = keep_mask(act.shape, p, act.device)
            act = act.mul_(mask)
        out = torch.addmm(c.b2, act, c.w2.t())
        y = out.add_(x2) if out.dtype == nd else x2 + out
    return y, Saved(y, mean, rstd, z1, mask, c)


def _scale(p: float) -> float:
    return 1.0 / (1.0 - p) if p < 1.0 else 0.0


def _colsum(t: torch.Tensor) -> torch.Tensor:
    """Sum over rows, accumulated and returned in at least float32."""
    return t.sum(0) if t.dtype in (torch.float32, torch.float64) else t.sum(0, dtype=torch.float32)


def lean_backward(gy: torch.Tensor, s: Saved, params: MonaParams, eps: float, p: float, need_x: bool):
    """Gradients of x and of every parameter (in ``MonaParams.flat`` order) from the saved tensors."""
    c = s.composed
    bsz, h, w, ch = s.y.shape
    shape, n, md, nd = (bsz, h, w), s.z1.shape[1], s.z1.dtype, s.y.dtype
    scale = _scale(p)
    with torch.autocast(gy.device.type, enabled=False):
        gy2 = gy.reshape(-1, ch)
        # recompute: conv, projector, gelu, dropout, project2 (the forward's ops), then x = y - out
        z2, z3 = _conv_projector(s.z1, c, shape)
        act = F.gelu(z3)
        if s.mask is not None:
            act = act.mul_(s.mask)
        out = torch.addmm(c.b2, act, c.w2.t())
        y2 = s.y.view(-1, ch)
        x2 = torch.sub(y2, out, out=out) if out.dtype == nd else y2 - out
        # project2, dropout, gelu
        gym = _as(gy2, md)
        g_w2 = gym.t() @ act
        if s.mask is not None:
            g_w2 = g_w2.mul_(scale)  # the forward multiplied by w2 * scale
        g_b2 = _colsum(gy2)
        g = torch.mm(gym, c.w2, out=act)  # act is dead: its buffer takes g
        if s.mask is not None:
            g = g.mul_(s.mask)
        g = torch.ops.aten.gelu_backward.grad_input(g, z3, grad_input=g)
        del z3
        # projector: z3 = z2 + z2 W^T + b
        g_pw = g.t() @ z2
        g_pb = _colsum(g)
        g_z2 = torch.addmm(g, g, c.proj_w, out=z2)
        # composed depthwise conv
        k = c.kernel.shape[-1]
        g, g_k, g_kb = torch.ops.aten.convolution_backward(
            _nchw(g_z2, *shape), _nchw(s.z1, *shape), c.kernel, [n], [1, 1], [k // 2] * 2, [1, 1], False, [0, 0], n,
            [True, True, True],
        )  # fmt: skip
        g = _rows(g) if folds_identity(md) else _rows(g).add_(g_z2)
        # project1 on u = LN'(x) + gammax * x, recomputed from the recovered x
        gammax = _as(params.gammax, nd)
        u = _as(_adapter_input(x2, c, gammax, eps)[0], md)
        g_w1 = g.t() @ u
        g_b1 = _colsum(g)
        gu = _as(g @ c.w1, nd)
        gx, g_lnw, g_lnb = torch.ops.aten.native_layer_norm_backward(
            gu, x2, (ch,), s.mean, s.rstd, c.ln_w, c.ln_b, [need_x, True, True]
        )
        if need_x:
            gx = gx.addcmul_(gu, gammax).add_(gy2)
        vector = params.gamma.numel() > 1
        g_gammax = _colsum(gu.mul_(x2)) if vector else _colsum(gu.mul_(x2).view(-1, 1))
        del gu
        gamma = _as(params.gamma, nd)
        g_gamma = torch.addcmul(g_lnw * params.ln_w, g_lnb, params.ln_b)
        if not vector:
            g_gamma = g_gamma.sum().view(1)
        g_lnw, g_lnb = g_lnw * gamma, g_lnb * gamma
        # the composed tensors' gradients back to the parameters (wide: float32 or the weights' dtype)
        wide = params.w1.dtype
        if md != wide:
            pieces = [g_w2, g_pw, g_w1, g_k]
            flat = torch.cat([t.reshape(-1) for t in pieces]).to(wide)
            g_w2, g_pw, g_w1, g_k = (f.view(t.shape) for f, t in zip(flat.split([t.numel() for t in pieces]), pieces))
        share = 1.0 / len(params.conv_w)
        g_conv_w = []
        for weight in params.conv_w:
            size = weight.shape[-1]
            o = (k - size) // 2
            g_conv_w.append(g_k[..., o : o + size, o : o + size] * share)
        g_kb = _as(g_kb, wide)
        g_conv_b = tuple(g_kb * share for _ in params.conv_b)  # one tensor each: autograd need not copy
    grads = MonaParams(
        g_lnw, g_lnb, g_gamma, g_gammax, g_w1, g_b1, g_pw.view(n, n, 1, 1), g_pb, g_w2, g_b2, tuple(g_conv_w), g_conv_b
    )
    grads = tuple(_as(g_, t.dtype) for g_, t in zip(grads.flat(), params.flat()))
    return (gx.view(bsz, h, w, ch) if need_x else None), grads


class LeanMonaFunction(torch.autograd.Function):
    """Training step of the lean form: ``apply(x_map, eps, p, compute_dtype, *MonaParams.flat())``."""

    @staticmethod
    def forward(ctx, x, eps, p, md, *flat):  # noqa: D401 - autograd API
        bsz, h, w, ch = x.shape
        params = MonaParams.from_flat(flat)
        y, saved = lean_forward(x.view(-1, ch), (bsz, h, w), params, eps, p, md, train=True)
        y = y.view(bsz, h, w, ch)
        ctx.eps, ctx.p, ctx.has_mask = eps, p, saved.mask is not None
        extra = [saved.mask] if saved.mask is not None else []
        ctx.save_for_backward(y, saved.mean, saved.rstd, saved.z1, *saved.composed, *extra, *flat)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        y, mean, rstd, z1, *rest = ctx.saved_tensors
        composed = Composed(*rest[:10])
        rest = rest[10:]
        mask = rest.pop(0) if ctx.has_mask else None
        params = MonaParams.from_flat(rest)
        saved = Saved(y, mean, rstd, z1, mask, composed)
        gx, grads = lean_backward(gy, saved, params, ctx.eps, ctx.p, ctx.needs_input_grad[0])
        return gx, None, None, None, *grads


def apply_lean(x: torch.Tensor, eps: float, p: float, md: torch.dtype | None, *flat: torch.Tensor) -> torch.Tensor:
    """One lean Mona on a contiguous (B, H, W, C) map, with autograd when anything needs a gradient."""
    if torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in flat)):
        return LeanMonaFunction.apply(x, eps, p, md, *flat)
    bsz, h, w, ch = x.shape
    return lean_forward(x.view(-1, ch), (bsz, h, w), MonaParams.from_flat(flat), eps, p, md, train=p > 0)[0].view(x.shape)


_compiled = None


def compiled_lean():
    """``apply_lean`` compiled by inductor (one shared compiled function: weights are its inputs)."""
    global _compiled
    if _compiled is None:
        # One graph per input shape, train/eval and dtype (dynamic shapes hit an inductor error in
        # torch 2.14): a Swin alone needs 8 (4 stages x train/eval), dynamo's default limit, so it is
        # raised to 64; past it, further shapes run the eager lean function (same results).
        import torch._dynamo

        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        _compiled = torch.compile(apply_lean, dynamic=False)
    return _compiled
