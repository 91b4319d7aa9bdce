"""The Mona module (SPEC section 1): forward checked against hand computation, shapes, init, counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import monatune
from monatune.layers import mona as mona_module

# Every computation form the module offers (the default first); older versions have just one.
FORMS = tuple(getattr(mona_module, "FORMS", (None,)))


def _set_form(mona: monatune.Mona, form: str | None) -> monatune.Mona:
    if form is not None:
        mona.form = form
    return mona


def _fill(mona: monatune.Mona, seed: int) -> dict[str, np.ndarray]:
    """Set every parameter to known values (float64) and return them as numpy arrays."""
    rng = np.random.default_rng(seed)
    values = {}
    with torch.no_grad():
        for name, p in mona.named_parameters():
            v = rng.uniform(-1.0, 1.0, size=tuple(p.shape))
            if name == "norm.weight":
                v = 1.0 + 0.5 * v
            p.copy_(torch.from_numpy(v))
            values[name] = v
    return values


def _hand_mona(x: np.ndarray, P: dict[str, np.ndarray], kernel_sizes) -> np.ndarray:
    """SPEC section 1 with explicit loops: x (B, H, W, C) -> (B, H, W, C)."""
    B, H, W, C = x.shape
    n = P["project1.bias"].shape[0]
    z1 = np.zeros((B, H, W, n))
    for b in range(B):
        for i in range(H):
            for j in range(W):
                t = x[b, i, j]
                mu = sum(t) / C
                var = sum((v - mu) ** 2 for v in t) / C
                ln = [(t[c] - mu) / math.sqrt(var + 1e-5) * P["norm.weight"][c] + P["norm.bias"][c] for c in range(C)]
                g, gx = P["gamma"], P["gammax"]
                u = [g[c % g.size] * ln[c] + gx[c % gx.size] * t[c] for c in range(C)]
                for m in range(n):
                    z1[b, i, j, m] = P["project1.bias"][m] + sum(P["project1.weight"][m, c] * u[c] for c in range(C))
    z2 = z1.copy()
    for idx, k in enumerate(kernel_sizes, start=1):
        w, bias, r = P[f"adapter_conv.conv{idx}.weight"], P[f"adapter_conv.conv{idx}.bias"], k // 2
        for b in range(B):
            for i in range(H):
                for j in range(W):
                    for m in range(n):
                        acc = bias[m]
                        for p in range(k):
                            for q in range(k):
                                ii, jj = i + p - r, j + q - r
                                if 0 <= ii < H and 0 <= jj < W:  # zero padding
                                    acc += w[m, 0, p, q] * z1[b, ii, jj, m]
                        z2[b, i, j, m] += acc / len(kernel_sizes)
    y = x.copy()
    wp, bp = P["adapter_conv.projector.weight"], P["adapter_conv.projector.bias"]
    for b in range(B):
        for i in range(H):
            for j in range(W):
                z = z2[b, i, j]
                z3 = [z[m] + bp[m] + sum(wp[m, l, 0, 0] * z[l] for l in range(n)) for m in range(n)]
                act = [0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in z3]  # exact GELU
                for c in range(C):
                    y[b, i, j, c] += P["project2.bias"][c] + sum(P["project2.weight"][c, m] * act[m] for m in range(n))
    return y


HAND_CASES = [  # dim, mid_dim, kernel_sizes, scale, (B, H, W)
    (3, 2, (1, 3), "vector", (1, 2, 3)),
    (4, 3, (3, 5, 7), "vector", (2, 3, 4)),
    (3, 2, (3, 5, 7), "scalar", (1, 4, 2)),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("dim", "mid", "kernels", "scale", "bhw"), HAND_CASES)
def test_forward_matches_hand_computation(form, dim, mid, kernels, scale, bhw):
    mona = _set_form(monatune.Mona(dim, mid, kernels, scale).double().eval(), form)
    params = _fill(mona, seed=dim * 10 + mid)
    x = np.random.default_rng(7).normal(size=(*bhw, dim)) * 1.5
    expected = _hand_mona(x, params, kernels)
    with torch.no_grad():
        got = mona(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    # The GELU must be the exact erf form: the tanh approximation differs by more than the tolerance.
    tanh_gap = F.gelu(torch.linspace(-3, 3, 61, dtype=torch.float64), approximate="tanh") - F.gelu(
        torch.linspace(-3, 3, 61, dtype=torch.float64)
    )
    assert tanh_gap.abs().max() > 1e-5


def _reference(x: torch.Tensor, m: monatune.Mona) -> torch.Tensor:
    """SPEC section 1 written with torch functional ops, reading the module's parameters only."""
    u = m.gamma * F.layer_norm(x, (m.dim,), m.norm.weight, m.norm.bias, 1e-5) + m.gammax * x
    z = F.linear(u, m.project1.weight, m.project1.bias).permute(0, 3, 1, 2)
    convs = [getattr(m.adapter_conv, f"conv{i + 1}") for i in range(len(m.adapter_conv.kernel_sizes))]
    n = z.shape[1]
    z = z + sum(F.conv2d(z, c.weight, c.bias, padding=c.weight.shape[-1] // 2, groups=n) for c in convs) / len(convs)
    z = z + F.conv2d(z, m.adapter_conv.projector.weight, m.adapter_conv.projector.bias)
    return x + F.linear(F.gelu(z.permute(0, 2, 3, 1)), m.project2.weight, m.project2.bias)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("scale", ["vector", "scalar"])
def test_gradients_match_a_functional_reference(form, scale):
    mona = _set_form(monatune.Mona(6, 5, scale=scale, dropout=0.0).double().train(), form)
    _fill(mona, seed=3)
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64, requires_grad=True)
    y = mona(x)
    y_ref = _reference(x, mona)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    weights = torch.randn(y.shape, dtype=torch.float64)
    params = [x, *mona.parameters()]
    grads = torch.autograd.grad((y * weights).sum(), params)
    grads_ref = torch.autograd.grad((y_ref * weights).sum(), params)
    names = ["x"] + [n for n, _ in mona.named_parameters()]
    for name, g, g_ref in zip(names, grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-9, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("form", FORMS)
def test_tokens_with_hw_equal_the_map(form):
    mona = _set_form(monatune.Mona(8, 4).eval(), form)
    x = torch.randn(2, 3, 5, 8)
    with torch.no_grad():
        y_map = mona(x)
        y_tok = mona(x.reshape(2, 15, 8), hw=(3, 5))
    assert y_tok.shape == (2, 15, 8)
    torch.testing.assert_close(y_tok.reshape(2, 3, 5, 8), y_map, rtol=0, atol=1e-6)
    # The grid matters: a 5x3 reading of the same tokens mixes other neighbours.
    with torch.no_grad():
        y_other = mona(x.reshape(2, 15, 8), hw=(5, 3))
    assert not torch.allclose(y_other, y_tok, atol=1e-6)


def test_bad_shapes_are_refused():
    mona = monatune.Mona(8, 4)
    with pytest.raises(ValueError, match="hw"):
        mona(torch.randn(2, 15, 8))
    with pytest.raises(ValueError, match="hw"):
        mona(torch.randn(2, 15, 8), hw=(4, 4))
    with pytest.raises(ValueError):
        mona(torch.randn(15, 8))
    with pytest.raises(ValueError, match="kernel"):
        monatune.Mona(8, 4, kernel_sizes=(3, 4))
    with pytest.raises(ValueError, match="scale"):
        monatune.Mona(8, 4, scale="matrix")


def test_init_follows_the_spec():
    torch.manual_seed(0)
    d = 128
    mona = monatune.Mona(d)
    assert mona.norm.eps == 1e-5 and mona.norm.normalized_shape == (d,)
    assert torch.equal(mona.norm.weight, torch.ones(d)) and torch.equal(mona.norm.bias, torch.zeros(d))
    assert torch.equal(mona.gamma, torch.full((d,), 1e-6)) and torch.equal(mona.gammax, torch.ones(d))
    for lin, shape in ((mona.project1, (64, d)), (mona.project2, (d, 64))):
        assert tuple(lin.weight.shape) == shape
        assert torch.count_nonzero(lin.bias) == 0
        assert 0.017 < lin.weight.std().item() < 0.023
        assert lin.weight.abs().max().item() < 0.2
    for i, k in enumerate((3, 5, 7), start=1):
        conv = getattr(mona.adapter_conv, f"conv{i}")
        assert tuple(conv.weight.shape) == (64, 1, k, k) and conv.groups == 64 and conv.padding == (k // 2, k // 2)
    proj = mona.adapter_conv.projector
    assert tuple(proj.weight.shape) == (64, 64, 1, 1) and proj.groups == 1
    assert mona.dropout.p == 0.1
    x = torch.randn(1, 4, 4, d)
    with torch.no_grad():
        assert not torch.allclose(mona.eval()(x), x, rtol=0, atol=1e-6), "Mona is not an identity at init"


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("d", [16, 96, 128, 192])
def test_parameter_count(d):
    n = 64
    paper = (2 * n + 3) * d + n * n + 84 * n + 2  # the paper's formula, s1 and s2 scalars
    vector, scalar = monatune.Mona(d), monatune.Mona(d, scale="scalar")
    assert _count(vector) == 133 * d + 9728
    assert _count(scalar) == 131 * d + 9730
    assert scalar.gamma.numel() == 1 and scalar.gammax.numel() == 1
    assert _count(scalar) - paper == 4 * n  # the paper leaves out the four conv biases
    assert _count(vector) - paper == 4 * n + 2 * (d - 1)


def test_scalar_scale_broadcasts_one_value():
    vector = monatune.Mona(8, 4, scale="vector").eval()
    scalar = monatune.Mona(8, 4, scale="scalar").eval()
    scalar.load_state_dict({k: v for k, v in vector.state_dict().items() if k not in ("gamma", "gammax")}, strict=False)
    with torch.no_grad():
        scalar.gamma.fill_(0.3)
        scalar.gammax.fill_(0.7)
        vector.gamma.fill_(0.3)
        vector.gammax.fill_(0.7)
        x = torch.randn(2, 3, 3, 8)
        torch.testing.assert_close(scalar(x), vector(x))
