"""Mona: the Multi-cognitive Visual Adapter (Yin et al., CVPR 2025).

Parameter names follow the public code (``norm``, ``gamma``, ``gammax``, ``project1``,
``adapter_conv.conv1/conv2/conv3/projector``, ``project2``) so state dicts are interchangeable.

Four exact forms compute the same function (SPEC §1), chosen by the module attribute ``form``
(``monatune.set_mona_form``): "auto" (default) = "fast" on the CPU, "lean" elsewhere;

- ``"fast"`` (``mona_fast``): composed kernels, a hand-written autograd function that keeps no
  stream-wide tensor but the output, and a tiled depthwise weight gradient: the CPU's fastest;
- ``"lean"`` (``mona_lean``): the GPU path, the fewest eager operator launches, same memory;
- ``"compiled"``: the lean function through inductor (fused elementwise kernels);
- ``"plain"``: SPEC §1 literally (three convs, NCHW views); the reference for tests and benchmarks.
  The public code's form keeps about 5 stream-sized maps per module.

``monatune.fuse`` caches the composed tensors once for inference (``fused`` below).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monatune.layers.dropout import Dropout
from monatune.layers.mona_fast import ComposedWeights, FastMonaFunction, autocast_dtype, fast_forward
from monatune.layers.mona_lean import MonaParams, apply_lean, compiled_lean, folds_identity
from monatune.layers.tokens import TokenLayout

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
    token_layout: TokenLayout | None = None  # prefix tokens + patch grid of a ViT's token sequence

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

    def composed_weights(self, fold_identity: bool = True) -> ComposedWeights:
        """All weights of the fast form, differentiable: LN weight/bias with gamma folded in, gammax,
        project1, composed conv, composed projector, project2 (see ``mona_fast.fast_forward``); the identities
        folded in or not (``MultiCognitiveConv.composed``)."""
        kernel, kbias, proj, pbias = self.adapter_conv.composed(fold_identity)
        ln_w, ln_b = self.gamma * self.norm.weight, self.gamma * self.norm.bias
        gammax = self.gammax.expand(self.dim)
        p1, p2 = self.project1, self.project2
        return ComposedWeights(ln_w, ln_b, gammax, p1.weight, p1.bias, kernel, kbias, proj, pbias, p2.weight, p2.bias)

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

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None, num_prefix: int | None = None) -> torch.Tensor:
        """``x``: a (B, H, W, C) map, or (B, N, C) tokens: ``num_prefix`` prefix tokens (class,
        distillation, register) then an ``hw`` patch grid, row-major. Without ``hw``, the module's
        ``token_layout`` (set when attached to a ViT) gives both. The patch tokens are one H x W map;
        each prefix token is a 1 x 1 map of its own (zero padding: only the centre taps of the depthwise
        kernels act), so prefix tokens never mix into the grid and the math is the same module."""
        if x.dim() == 3 and hw is None and self.token_layout is not None:
            hw, num_prefix = self.token_layout.grid(x), self.token_layout.prefix_of(x)
        if x.dim() == 3 and num_prefix:
            bsz, _, c = x.shape
            prefix = self._forward_map(x[:, :num_prefix].reshape(bsz * num_prefix, 1, 1, c))
            patches = self.forward(x[:, num_prefix:], hw, 0)
            return torch.cat((prefix.reshape(bsz, num_prefix, c), patches), dim=1)
        x_map, was_tokens = self._as_map(x, hw)
        y = self._forward_map(x_map)
        return y.reshape(x.shape) if was_tokens else y

    def _forward_map(self, x_map: torch.Tensor) -> torch.Tensor:
        form = self.resolved_form(x_map.device)
        if self._fused is not None or form == "fast":
            y = self._forward_fast(x_map)
        elif form in ("lean", "compiled"):
            y = self._forward_lean(x_map, compiled=form == "compiled")
        else:
            y = self._forward_plain(x_map)
        return y

    def _forward_plain(self, x_map: torch.Tensor) -> torch.Tensor:
        z = self.project1(self.adapter_input(x_map))  # (B, H, W, n)
        z = self.adapter_conv(z.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x_map + self.project2(self.dropout(F.gelu(z)))

    def _forward_lean(self, x_map: torch.Tensor, compiled: bool = False) -> torch.Tensor:
        p = self.dropout.p if self.training else 0.0
        run = compiled_lean() if compiled else apply_lean
        return run(x_map.contiguous(), self.norm.eps, p, autocast_dtype(x_map), *self.lean_params().flat())

    def _forward_fast(self, x_map: torch.Tensor) -> torch.Tensor:
        p = self.dropout.p if self.training else 0.0
        if self._fused is not None:
            if self.training and torch.is_grad_enabled():
                raise RuntimeError("this Mona is fused for inference; call monatune.unfuse(model) before training")
        dtype = autocast_dtype(x_map)
        fold = folds_identity(dtype or x_map.dtype)
        weights = self._fused[fold] if self._fused is not None else self.composed_weights(fold)
        x_map = x_map.contiguous()
        needs_grad = torch.is_grad_enabled() and (x_map.requires_grad or any(w.requires_grad for w in weights))
        if needs_grad:
            return FastMonaFunction.apply(x_map, self.norm.eps, p, dtype, fold, *weights)
        return fast_forward(x_map, weights, self.norm.eps, p, dtype, fold, for_inference=True)[0]


def _refuse_after_load(module: Mona, incompatible_keys: object) -> None:
    if module.fused:
        module.fuse_()
