"""Mona: the Multi-cognitive Visual Adapter (Yin et al., CVPR 2025).

Parameter names follow the public code (``norm``, ``gamma``, ``gammax``, ``project1``,
``adapter_conv.conv1/conv2/conv3/projector``, ``project2``) so state dicts are interchangeable.

Two exact forms compute the same function (SPEC §1), chosen by the module attribute ``form``:

- ``"fast"`` (default): the three averaged depthwise convs plus identity run as one 7x7 depthwise
  conv whose kernel is composed on the fly (mean of the zero-padded kernels + 1 at the centre tap),
  the 1x1 projector plus identity as one matmul with W + I, all channels-last (no permute copies).
  In training a hand-written autograd function keeps only the output y (which the next LayerNorm
  keeps anyway), the LN statistics, z1 (the n-wide project1 output) and a byte dropout mask;
  backward recomputes the conv, the projector, gelu and project2 bit-identically, recovers
  x = y - project2(...) up to one rounding, and LN(x) from it. Inside a Swin stage it adds no
  stream-wide saved tensor; the public code's form keeps about 5 stream-sized maps per module.
- ``"plain"``: SPEC §1 literally (three convs, NCHW views); the reference for tests and benchmarks.

``monatune.fuse`` caches the composed tensors once for inference (``fused`` below).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monatune.layers.dropout import Dropout, keep_mask
from monatune.layers.mona_lean import MonaParams, apply_lean, compiled_lean, folds_identity

ScaleKind = Literal["vector", "scalar"]
MonaForm = Literal["auto", "fast", "lean", "compiled", "plain"]
FORMS = ("auto", "fast", "lean", "compiled", "plain")


class MultiCognitiveConv(nn.Module):
    """Depthwise convolutions of several sizes, averaged, plus a 1x1 projector; both residual.

    Input and output: (B, n, H, W).  z -> z + mean_k(dwconv_k(z)) -> z + projector(z).
    ``forward`` is the literal (plain) form; ``composed`` gives the equivalent single conv + matmul.
    """

    def __init__(self, channels: int, kernel_sizes: Sequence[int] = (3, 5, 7)) -> None:
        super().__init__()
        if not kernel_sizes or any(k % 2 == 0 or k < 1 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd positive integers, got {tuple(kernel_sizes)}")
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        for i, k in enumerate(self.kernel_sizes, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels))
        self.projector = nn.Conv2d(channels, channels, 1)

    def depthwise_convs(self) -> list[nn.Conv2d]:
        return [getattr(self, f"conv{i}") for i in range(1, len(self.kernel_sizes) + 1)]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        convs = self.depthwise_convs()
        z = z + sum(conv(z) for conv in convs) / len(convs)
        return z + self.projector(z)

    def composed(self, fold_identity: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The exact one-conv form, differentiable w.r.t. the parameters.

        Returns ``(kernel (n, 1, k, k), bias (n,), proj (n, n), proj_bias (n,))`` with k the largest
        kernel size: ``z + mean_k(dwconv_k(z)) = dwconv(z; kernel, bias)`` and
        ``z + projector(z) = proj @ z + proj_bias`` per pixel. ``fold_identity=False``: without the
        two identities (kernel + 1 at the centre, proj + I), for fp16/bf16, where a 1 + w weight
        would round w to the precision of the 1: the caller adds z itself.
        """
        convs = self.depthwise_convs()
        k_max = max(self.kernel_sizes)
        kernel = sum(F.pad(c.weight, [(k_max - k) // 2] * 4) for c, k in zip(convs, self.kernel_sizes))
        kernel = kernel / len(convs)
        bias = sum(c.bias for c in convs) / len(convs)
        w = self.projector.weight.flatten(1)
        if not fold_identity:
            return kernel, bias, w, self.projector.bias
        centre = torch.zeros(k_max, k_max, dtype=kernel.dtype, device=kernel.device)
        centre[k_max // 2, k_max // 2] = 1.0
        proj = w + torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
        return kernel + centre, bias, proj, self.projector.bias


class Mona(nn.Module):
    """Mona adapter on a residual stream of width ``dim``.

    Input: (B, H, W, C) channels-last map, or (B, N, C) tokens with ``hw=(H, W)``, N = H*W row-major.
    Output: same shape. ``y = x + project2(dropout(gelu(conv(project1(gamma*LN(x) + gammax*x)))))``.

    Args:
        dim: channels C of the stream.
        mid_dim: bottleneck width n (64 in the paper).
        kernel_sizes: depthwise kernel sizes of the multi-cognitive filters.
        scale: "vector" (per-channel gamma/gammax, the public code) or "scalar" (the paper's s1, s2).
        dropout: dropout after GELU.

    Attribute ``form`` picks the computation, all exact: "auto" (default: "fast" on the CPU, "lean"
    elsewhere), "fast", "lean", "compiled" (lean through inductor) or "plain".
    """

    form: MonaForm = "auto"

    def __init__(
        self,
        dim: int,
        mid_dim: int = 64,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        scale: ScaleKind = "vector",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if scale not in ("vector", "scalar"):
            raise ValueError(f"scale must be 'vector' or 'scalar', got {scale!r}")
        self.dim, self.mid_dim, self.scale = dim, mid_dim, scale
        scale_shape = (dim,) if scale == "vector" else (1,)
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.gamma = nn.Parameter(torch.full(scale_shape, 1e-6))
        self.gammax = nn.Parameter(torch.ones(scale_shape))
        self.project1 = nn.Linear(dim, mid_dim)
        self.adapter_conv = MultiCognitiveConv(mid_dim, kernel_sizes)
        self.dropout = Dropout(dropout)
        self.project2 = nn.Linear(mid_dim, dim)
        for linear in (self.project1, self.project2):
            nn.init.trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        self._fused: dict[bool, tuple[torch.Tensor, ...]] | None = None  # by fold_identity; ``fuse_`` sets it
        self.register_load_state_dict_post_hook(_refuse_after_load)  # new weights -> fresh cache

    def _as_map(self, x: torch.Tensor, hw: tuple[int, int] | None) -> tuple[torch.Tensor, bool]:
        if x.dim() == 4:
            return x, False
        if x.dim() == 3:
            if hw is None:
                raise ValueError("Mona got tokens (B, N, C) without hw=(H, W); pass the token grid")
            h, w = hw
            if h * w != x.shape[1]:
                raise ValueError(f"Mona: hw={hw} does not match N={x.shape[1]} tokens")
            return x.reshape(x.shape[0], h, w, x.shape[2]), True
        raise ValueError(f"Mona expects (B, H, W, C) or (B, N, C), got shape {tuple(x.shape)}")

    def adapter_input(self, x: torch.Tensor) -> torch.Tensor:
        """Input optimisation: gamma * LN(x) + gammax * x."""
        return self.gamma * self.norm(x) + self.gammax * x

    def composed_weights(self, fold_identity: bool = True) -> tuple[torch.Tensor, ...]:
        """All weights of the fast form, differentiable: LN weight/bias with gamma folded in, gammax,
        project1, composed conv, composed projector, project2 (see ``_mona_fast``); the identities
        folded in or not (``MultiCognitiveConv.composed``)."""
        kernel, kbias, proj, pbias = self.adapter_conv.composed(fold_identity)
        ln_w, ln_b = self.gamma * self.norm.weight, self.gamma * self.norm.bias
        gammax = self.gammax.expand(self.dim)
        p1, p2 = self.project1, self.project2
        return ln_w, ln_b, gammax, p1.weight, p1.bias, kernel, kbias, proj, pbias, p2.weight, p2.bias

    def lean_params(self) -> MonaParams:
        """The parameters in the order the lean form's function takes them."""
        convs = self.adapter_conv.depthwise_convs()
        p1, p2, proj = self.project1, self.project2, self.adapter_conv.projector
        return MonaParams(
            self.norm.weight, self.norm.bias, self.gamma, self.gammax, p1.weight, p1.bias, proj.weight, proj.bias,
            p2.weight, p2.bias, tuple(c.weight for c in convs), tuple(c.bias for c in convs),
        )  # fmt: skip

    def resolved_form(self, device: torch.device) -> MonaForm:
        """The form this module computes in on ``device`` ("auto" resolved)."""
        if self.form != "auto":
            return self.form
        return "fast" if device.type == "cpu" else "lean"

    def fuse_(self) -> "Mona":
        """Cache the composed weights for inference (``monatune.fuse`` calls this); returns self."""
        with torch.no_grad():
            self._fused = {fold: tuple(t.detach().clone() for t in self.composed_weights(fold)) for fold in (True, False)}
        return self

    def unfuse_(self) -> "Mona":
        """Drop the inference cache: forward composes from the parameters again."""
        self._fused = None
        return self

    @property
    def fused(self) -> bool:
        return self._fused is not None

    def _apply(self, fn, recurse=True):  # .to()/.half() etc.: move the inference cache along
        out = super()._apply(fn, recurse)
        if self._fused is not None:
            self._fused = {fold: tuple(fn(t) for t in weights) for fold, weights in self._fused.items()}
        return out

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        x_map, was_tokens = self._as_map(x, hw)
        form = self.resolved_form(x.device)
        if self._fused is not None or form == "fast":
            y = self._forward_fast(x_map)
        elif form in ("lean", "compiled"):
            y = self._forward_lean(x_map, compiled=form == "compiled")
        else:
            y = self._forward_plain(x_map)
        return y.reshape(x.shape) if was_tokens else y

    def _forward_plain(self, x_map: torch.Tensor) -> torch.Tensor:
        z = self.project1(self.adapter_input(x_map))  # (B, H, W, n)
        z = self.adapter_conv(z.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x_map + self.project2(self.dropout(F.gelu(z)))

    def _forward_lean(self, x_map: torch.Tensor, compiled: bool = False) -> torch.Tensor:
        p = self.dropout.p if self.training else 0.0
        run = compiled_lean() if compiled else apply_lean
        return run(x_map.contiguous(), self.norm.eps, p, _autocast_dtype(x_map), *self.lean_params().flat())

    def _forward_fast(self, x_map: torch.Tensor) -> torch.Tensor:
        p = self.dropout.p if self.training else 0.0
        if self._fused is not None:
            if self.training and torch.is_grad_enabled():
                raise RuntimeError("this Mona is fused for inference; call monatune.unfuse(model) before training")
        dtype = _autocast_dtype(x_map)
        fold = folds_identity(dtype or x_map.dtype)
        weights = self._fused[fold] if self._fused is not None else self.composed_weights(fold)
        x_map = x_map.contiguous()
        needs_grad = torch.is_grad_enabled() and (x_map.requires_grad or any(w.requires_grad for w in weights))
        if needs_grad:
            return _MonaFunction.apply(x_map, self.norm.eps, p, dtype, fold, *weights)
        return _mona_fast(x_map, weights, self.norm.eps, p, dtype, fold, for_inference=True)[0]


def _refuse_after_load(module: Mona, incompatible_keys: object) -> None:
    if module.fused:
        module.fuse_()


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The autocast compute dtype for ``x``'s device, or None when autocast is off there."""
    device = x.device.type
    if device in ("cpu", "cuda", "xpu", "mps") and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return None


def _mona_fast(
    x: torch.Tensor, weights: Sequence[torch.Tensor], eps: float, p: float, dtype: torch.dtype | None,
    fold: bool = True, for_inference: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:  # fmt: skip
    """Fast-form forward on a contiguous (B, H, W, C) map; returns y and what backward keeps.

    Matmuls and the conv run in ``dtype`` (the autocast dtype) or x's dtype; LN and the input mix in
    x's dtype, as autocast does for the plain form. Kept for backward: LN mean/rstd, z1 = project1
    output and the dropout mask (bytes), plus y itself (``_MonaFunction``). Backward recomputes z2,
    z3, the activation and project2's output with the same ops on the same inputs (bit-identical),
    then x = y - project2(...) (equal to x up to one rounding) and LN(x) from it.
    ``fold``: the identities are in the composed kernel and projector (``folds_identity``).
    ``for_inference``: z1 is not kept, so z3 may overwrite it.
    """
    ln_w, ln_b, gammax, w1, b1, kernel, kbias, proj, pbias, w2, b2 = weights
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


def _depthwise_weight_grad(x: torch.Tensor, g: torch.Tensor, k: int, tile: int = 32) -> torch.Tensor:
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


class _MonaFunction(torch.autograd.Function):
    """Fast-form training step: keeps y, LN stats, z1 and a byte mask; recomputes the rest in backward."""

    @staticmethod
    def forward(ctx, x, eps, p, dtype, fold, *weights):  # noqa: D401 - autograd API
        y, (mean, rstd, z1, mask) = _mona_fast(x, weights, eps, p, dtype, fold)
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
        ln_w, ln_b, gammax, w1, b1, kernel, kbias, proj, pbias, w2, b2 = weights
        need = ctx.needs_input_grad[5:]
        bsz, h, w, c = y.shape
        n = z1.shape[1]
        md, nd = z1.dtype, y.dtype
        w2s = w2.to(md) * _dropout_scale(ctx.p) if mask is not None else w2.to(md)  # as in forward
        grads: list[torch.Tensor | None] = [None] * len(weights)
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
            if need[9]:
                grads[9] = gym.t() @ act
                if mask is not None:
                    grads[9].mul_(_dropout_scale(ctx.p))
            if need[10]:
                grads[10] = _colsum(gym)
            g = torch.mm(gym, w2s, out=act)  # act is dead: its buffer takes g
            del act
            if mask is not None:
                g = g.mul_(mask)
            g = torch.ops.aten.gelu_backward.grad_input(g, z3, grad_input=g)
            # projector (W + I)
            if need[7]:
                grads[7] = g.t() @ z2
            if need[8]:
                grads[8] = _colsum(g)
            del z2
            # z3 is dead: its buffer takes the new g
            g = torch.mm(g, proj.to(md), out=z3) if ctx.fold else torch.addmm(g, g, proj.to(md), out=z3)
            del z3
            g_z2 = g
            # composed depthwise conv
            k = kernel.shape[-1]
            tiled = need[5] and z1.device.type == "cpu"  # see _depthwise_weight_grad
            if tiled:
                grads[5] = _depthwise_weight_grad(z1.view(bsz, h, w, n), g.view(bsz, h, w, n), k)
            if need[6]:
                grads[6] = _colsum(g)
            g, gk, _ = torch.ops.aten.convolution_backward(
                _nchw(g, bsz, h, w), _nchw(z1, bsz, h, w), kernel.to(md), None, [1, 1],
                [k // 2] * 2, [1, 1], False, [0, 0], n, [True, need[5] and not tiled, False],
            )  # fmt: skip
            if need[5] and not tiled:
                grads[5] = gk
            g = g.permute(0, 2, 3, 1).reshape(-1, n)
            if not ctx.fold:
                g = g.add_(g_z2)
            del g_z2
            # project1, on u = LN'(x) + gammax * x recomputed
            u = _adapter_input(x2, ln_w, ln_b, gammax, ctx.eps)[0] if need[3] or need[2] else None
            if need[3]:
                grads[3] = g.t() @ u.to(md)
            if need[4]:
                grads[4] = _colsum(g)
            gu = (g @ w1.to(md)).to(nd)
            del g
            if need[2]:
                grads[2] = _colsum(torch.mul(gu, x2, out=u))
            del u
            need_x = ctx.needs_input_grad[0]
            gx, grads[0], grads[1] = torch.ops.aten.native_layer_norm_backward(
                gu, x2, (c,), mean, rstd, ln_w.to(nd), ln_b.to(nd), [need_x, need[0], need[1]]
            )
            if need_x:
                gx = gx.addcmul_(gu, gammax.to(nd)).add_(gy2).view(bsz, h, w, c)
            del x2
        grads = [None if gr is None else gr.to(wt.dtype) for gr, wt in zip(grads, weights)]
        return gx, None, None, None, None, *grads
