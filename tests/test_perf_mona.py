"""Mona's fast and fused forms compute SPEC §1 exactly: outputs and gradients vs the plain form, state
dicts unchanged, fuse/unfuse, smaller saved activations, checkpointing, autocast and torch.compile.
No timings here (see bench/)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from core_cases import images, tiny_timm_swin, tiny_torchvision_swin
from torch import nn

import monatune
from monatune.checkpointing import checkpoint_blocks, checkpointed_blocks
from monatune.fuse import fuse, is_fused, set_mona_form, unfuse
from monatune.layers.lora import LoRAQKV
from monatune.layers.mona import Mona, MultiCognitiveConv
from monatune.layers.mona_fast import depthwise_weight_grad


def _randomized(module: nn.Module, scale: float = 0.2) -> nn.Module:
    """Move every parameter off its init (gamma 1e-6, zero biases would hide mistakes)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)
    return module


FAST_FORMS = ("fast", "lean")  # the composed forms: the CPU's and the GPU path (forced on the CPU here)


def _pair(dim: int, form: str = "fast", **kwargs) -> tuple[Mona, Mona]:
    fast = _randomized(Mona(dim, **kwargs))
    fast.form = form
    plain = copy.deepcopy(fast)
    plain.form = "plain"
    return fast, plain


def _run(module: nn.Module, x: torch.Tensor, grad: torch.Tensor, seed: int = 1, **kwargs):
    """Output, input grad and parameter grads of one forward/backward with a fixed dropout seed."""
    x = x.detach().clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    y = module(x, **kwargs)
    y.backward(grad)
    return y.detach(), x.grad, {n.removeprefix("_orig_mod."): p.grad for n, p in module.named_parameters()}


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5, name: str = "") -> None:
    """Equal up to float rounding: max error within ``tol`` of the tensor's largest magnitude.

    Gradients are sums over every pixel, so their rounding error scales with the largest entry."""
    assert a.shape == b.shape and a.dtype == b.dtype, name
    err = (a.double() - b.double()).abs().max().item()
    assert err <= tol * (1.0 + b.double().abs().max().item()), f"{name}: max error {err}"


def _assert_same(a, b, tol=1e-5):
    ya, gxa, gpa = a
    yb, gxb, gpb = b
    _close(ya, yb, tol, "output")
    _close(gxa, gxb, tol, "input grad")
    assert gpa.keys() == gpb.keys()
    for name in gpa:
        _close(gpa[name], gpb[name], tol, name)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"scale": "scalar"}, {"kernel_sizes": (3, 5)}, {"kernel_sizes": (1, 3, 7)}, {"mid_dim": 8}],
    ids=["default", "scalar", "k35", "k137", "mid8"],
)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("form", FAST_FORMS)
def test_fast_form_matches_plain_form(form, kwargs, train):
    fast, plain = _pair(24, form, **kwargs)
    fast.train(train), plain.train(train)
    x, grad = torch.randn(2, 9, 11, 24), torch.randn(2, 9, 11, 24)
    # train mode: dropout on, same seed -> the same mask (the fast form draws as F.dropout does)
    _assert_same(_run(fast, x, grad), _run(plain, x, grad))


@pytest.mark.parametrize("form", FAST_FORMS)
def test_fast_form_on_tokens_and_on_input_without_grad(form):
    fast, plain = _pair(16, form)
    x = torch.randn(2, 6 * 5, 16)
    with torch.no_grad():
        _close(fast.eval()(x, hw=(6, 5)), plain.eval()(x, hw=(6, 5)))
    fast.train(), plain.train()
    # the first Mona of a frozen backbone gets an input that needs no grad: only parameters get grads
    fast.zero_grad(), plain.zero_grad()
    torch.manual_seed(0)
    fast(x, hw=(6, 5)).square().sum().backward()
    torch.manual_seed(0)
    plain(x, hw=(6, 5)).square().sum().backward()
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        _close(a.grad, b.grad, name=name)


def test_composed_conv_equals_the_conv_stack():
    conv = _randomized(MultiCognitiveConv(8, (3, 5, 7)))
    z = torch.randn(2, 8, 10, 7)
    kernel, bias, proj, pbias = conv.composed()
    z2 = F.conv2d(z, kernel, bias, padding=3, groups=8)
    composed = torch.einsum("oi,bihw->bohw", proj, z2) + pbias[:, None, None]
    torch.testing.assert_close(composed, conv(z), rtol=1e-5, atol=1e-5)


def test_parameters_and_state_dict_keys_unchanged_by_forms_and_fuse():
    fast, plain = _pair(32)
    keys = list(Mona(32).state_dict())
    assert list(fast.state_dict()) == list(plain.state_dict()) == keys
    assert sum(p.numel() for p in fast.parameters()) == 133 * 32 + 9728
    fused = copy.deepcopy(fast).fuse_()
    assert list(fused.state_dict()) == keys
    for name, t in fused.state_dict().items():
        torch.testing.assert_close(t, fast.state_dict()[name])


@pytest.mark.parametrize(
    ("shape", "k", "tile"),
    [((2, 9, 11, 3), 7, 32), ((1, 40, 70, 2), 5, 32), ((3, 7, 7, 4), 3, 32), ((1, 13, 17, 2), 7, 5)],
)
def test_depthwise_weight_grad_matches_autograd(shape, k, tile):
    x, g = torch.randn(shape, dtype=torch.float64), torch.randn(shape, dtype=torch.float64)
    weight = torch.randn(shape[-1], 1, k, k, dtype=torch.float64, requires_grad=True)
    out = F.conv2d(x.permute(0, 3, 1, 2), weight, padding=k // 2, groups=shape[-1])
    (expected,) = torch.autograd.grad(out, weight, g.permute(0, 3, 1, 2))
    torch.testing.assert_close(depthwise_weight_grad(x, g, k, tile=tile), expected)


@pytest.mark.parametrize("form", FAST_FORMS)
def test_fast_form_saves_less_than_plain_form(form):
    fast, plain = _pair(96, form)
    x = torch.randn(4, 14, 14, 96, requires_grad=True)

    def saved_bytes(module):
        storages: dict[int, int] = {}
        params = {p.untyped_storage().data_ptr() for p in module.parameters()}

        def pack(t):
            if t.untyped_storage().data_ptr() not in params:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module.train()(x)
        return sum(storages.values())

    per_token_c = x.numel() * 4  # one float map of the stream
    fast_bytes, plain_bytes = saved_bytes(fast), saved_bytes(plain)
    # fast keeps x, z1 (n = 64 of 96 channels), a byte mask, LN stats and the small composed
    # weights: about 2 maps; plain keeps about 5
    assert fast_bytes < 2.1 * per_token_c
    assert fast_bytes < 0.45 * plain_bytes


@pytest.mark.parametrize("backbone", ["timm", "torchvision"])
def test_fuse_model_gives_the_same_outputs(backbone):
    torch.manual_seed(0)
    model = tiny_timm_swin() if backbone == "timm" else tiny_torchvision_swin()
    monatune.apply(model, "mona")
    _randomized(model.eval(), 0.05)
    x = images(2, 64)
    with torch.no_grad():
        set_mona_form(model, "plain")
        expected = model(x)
        set_mona_form(model, "fast")
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
        fused = fuse(copy.deepcopy(model))
        assert is_fused(fused) and not fused.training
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-5)
    assert list(fused.state_dict()) == list(model.state_dict())


def test_loading_weights_into_a_fused_model_refreshes_its_cache():
    model = fuse(monatune.apply(tiny_timm_swin(), "mona"))
    other = _randomized(monatune.apply(tiny_timm_swin(), "mona").eval(), 0.05)
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        _close(model(images(1, 64)), other(images(1, 64)))


def test_fused_model_refuses_training_until_unfused():
    model = fuse(monatune.apply(tiny_timm_swin(), "mona"))
    model.train()
    with pytest.raises(RuntimeError, match="unfuse"):
        model(images(1, 64))
    unfuse(model)
    assert not is_fused(model)
    model(images(1, 64)).sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if ".mona" in n)


def test_fuse_can_merge_lora():
    torch.manual_seed(0)
    model = monatune.apply(tiny_timm_swin(), "lora")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    x = images(2, 64)
    with torch.no_grad():
        expected = model.eval()(x)
        merged = fuse(copy.deepcopy(model), merge_lora=True)
        assert not any(isinstance(m, LoRAQKV) for m in merged.modules())
        torch.testing.assert_close(merged(x), expected, rtol=1e-4, atol=1e-5)
        kept = fuse(copy.deepcopy(model))
        assert any(isinstance(m, LoRAQKV) for m in kept.modules())


def test_set_mona_form_rejects_unknown_form():
    with pytest.raises(ValueError, match="plain"):
        set_mona_form(nn.Sequential(Mona(8)), "turbo")


def test_frozen_backbone_gets_no_weight_gradients():
    model = monatune.apply(tiny_timm_swin(num_classes=3), "mona", train_modules=["head"])
    model.train()
    F.cross_entropy(model(images(2, 64)), torch.tensor([0, 2])).backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name


@pytest.mark.parametrize("method", ["mona", "full"])
def test_checkpoint_blocks_keeps_results(method):
    torch.manual_seed(0)
    model = monatune.apply(tiny_timm_swin(num_classes=3, drop_path_rate=0.2), method, train_modules=["head"])
    checked = copy.deepcopy(model)
    checkpoint_blocks(checked)
    assert len(checkpointed_blocks(checked)) == 8
    x, target = images(2, 64), torch.tensor([1, 2])
    results = []
    for m in (model, checked):
        m.train()
        torch.manual_seed(3)  # same dropout and drop-path draws; checkpoint replays them on recompute
        F.cross_entropy(m(x), target).backward()
        results.append({n: p.grad for n, p in m.named_parameters() if p.requires_grad})
    for name, grad in results[0].items():
        torch.testing.assert_close(results[1][name], grad, rtol=1e-5, atol=1e-6, msg=name)
    # copies rebind to their own blocks; turning it off restores the blocks' own forwards
    copied = copy.deepcopy(checked)
    assert checkpointed_blocks(copied) == checkpointed_blocks(checked)
    checkpoint_blocks(checked, enabled=False)
    assert checkpointed_blocks(checked) == []
    with torch.no_grad():
        torch.testing.assert_close(checked.eval()(x), model.eval()(x))
    checkpoint_blocks(copied, enabled=False, stages=None)
    checkpoint_blocks(copied, stages=[0])
    assert checkpointed_blocks(copied) == ["layers.0.blocks.0", "layers.0.blocks.1"]


def test_a_method_applied_after_checkpoint_blocks_runs_checkpointed():
    """``checkpoint_blocks`` then ``monatune.apply``: the blocks stay checkpointed, Mona inside them (it
    runs twice a training step: forward and recomputation), and the results match the other order.
    Before: ``apply`` replaced the checkpointed forward, silently undoing the checkpointing."""
    torch.manual_seed(0)
    base = tiny_timm_swin(num_classes=3)
    late = monatune.apply(checkpoint_blocks(copy.deepcopy(base)), "mona", train_modules=["head"])
    early = checkpoint_blocks(monatune.apply(copy.deepcopy(base), "mona", train_modules=["head"]))
    late.load_state_dict(early.state_dict())  # the same Mona initialisation
    assert len(checkpointed_blocks(late)) == 8
    calls = []
    next(m for m in late.modules() if isinstance(m, Mona)).register_forward_hook(lambda *args: calls.append(1))
    x, target = images(2, 64), torch.tensor([1, 2])
    grads = []
    for model in (late, early):
        model.train()
        torch.manual_seed(3)
        F.cross_entropy(model(x), target).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert len(calls) == 2
    for name, grad in grads[1].items():
        torch.testing.assert_close(grads[0][name], grad, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("form", FAST_FORMS)
def test_autocast_on_cpu(form, dtype):
    fast, plain = _pair(32, form)
    x, grad = torch.randn(2, 8, 8, 32), torch.randn(2, 8, 8, 32)
    outs = []
    for m in (fast, plain):
        x_ = x.clone().requires_grad_()
        m.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=dtype):
            y = m.train()(x_)
        y.float().backward(grad)
        outs.append((y, x_.grad, [p.grad for p in m.parameters()]))
    (yf, gxf, gpf), (yp, gxp, gpp) = outs
    assert yf.dtype == yp.dtype
    tol = 3e-2 if dtype == torch.bfloat16 else 5e-3
    _close(yf, yp, tol)
    _close(gxf, gxp, tol)
    for a, b, p in zip(gpf, gpp, fast.parameters()):
        assert a.dtype == p.dtype
        _close(a, b, tol)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        fused = copy.deepcopy(fast).eval().fuse_()
        _close(fused(x), plain.eval()(x), tol)


@pytest.mark.parametrize("form", FAST_FORMS)
def test_torch_compile_traces_the_fast_form(form):
    torch._dynamo.reset()  # other tests in this process compiled Mona.forward at other shapes
    fast, plain = _pair(16, form)
    x, grad = torch.randn(2, 6, 7, 16), torch.randn(2, 6, 7, 16)
    compiled = torch.compile(fast, backend="aot_eager", fullgraph=True)
    _assert_same(_run(compiled, x, grad), _run(plain, x, grad))
    with torch.no_grad():
        fused = torch.compile(copy.deepcopy(fast).eval().fuse_(), backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(fused(x), plain.eval()(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", FAST_FORMS)
def test_the_traced_training_graph_views_no_bool_tensor_as_another_dtype(form):
    """Inductor cannot lower ``aten.view.dtype`` of a bool tensor (on CUDA, torch 2.11: "torch.bool is
    not supported by torch.iinfo"); the fast form kept its dropout mask as a uint8 view of the bool
    ``keep_mask``. Every forward and backward graph AOTAutograd hands a compiler must be free of it."""
    torch._dynamo.reset()  # other tests in this process compiled Mona.forward at other shapes
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs = []

    def collect(gm, example_inputs):
        graphs.append(gm)
        return make_boxed_func(gm.forward)

    fast, plain = _pair(16, form)
    x, grad = torch.randn(2, 6, 7, 16), torch.randn(2, 6, 7, 16)
    compiled = torch.compile(fast, backend=aot_autograd(fw_compiler=collect, bw_compiler=collect), fullgraph=True)
    _assert_same(_run(compiled, x, grad), _run(plain, x, grad))
    assert len(graphs) == 2  # forward and backward
    views = [n for g in graphs for n in g.graph.nodes if n.target is torch.ops.aten.view.dtype]
    assert [n for n in views if n.args[0].meta["val"].dtype == torch.bool] == []


@pytest.mark.parametrize("form", FAST_FORMS)
def test_inductor_compiles_the_fast_form_for_training_on_cpu(form):
    """``torch.compile`` with inductor (the default backend) in training: same output and gradients
    as the eager plain form (about 20 s of compiling on 2 cores, once)."""
    torch._dynamo.reset()  # other tests in this process compiled Mona.forward at other shapes
    fast, plain = _pair(16, form)
    x, grad = torch.randn(2, 6, 7, 16), torch.randn(2, 6, 7, 16)
    _assert_same(_run(torch.compile(fast), x, grad), _run(plain, x, grad), tol=1e-4)


def test_compiled_form_matches_the_plain_form_in_training_and_inference_and_nests_in_a_compiled_model():
    """The "compiled" form (the lean function through inductor, compiled once and shared by every
    Mona): training step and eval output as the plain form; an outer ``torch.compile`` of a model
    that holds it traces through (fullgraph)."""
    torch._dynamo.reset()  # other tests in this process compiled Mona.forward at other shapes
    compiled, plain = _pair(16, "compiled")
    x, grad = torch.randn(2, 6, 7, 16), torch.randn(2, 6, 7, 16)
    _assert_same(_run(compiled, x, grad), _run(plain, x, grad), tol=1e-4)
    with torch.no_grad():
        _close(compiled.eval()(x), plain.eval()(x), 1e-4)
    outer = torch.compile(compiled.train(), backend="aot_eager", fullgraph=True)
    _assert_same(_run(outer, x, grad), _run(plain.train(), x, grad), tol=1e-4)


@pytest.mark.parametrize("form", FAST_FORMS)
def test_mona_keeps_no_stream_tensor_of_its_own_in_a_swin(form):
    """Backward keeps Mona's output (which the next LayerNorm keeps anyway), never its input."""
    torch.manual_seed(0)
    model = monatune.apply(tiny_timm_swin(embed_dim=32, num_classes=3), "mona", mid_dim=4).train()
    set_mona_form(model, form)
    inputs, outputs = [], []

    def record(name):
        def hook(module, args, out):
            inputs.append(args[0])  # kept alive: a freed input's address could be reused
            outputs.append((name, out.untyped_storage().data_ptr()))

        return hook

    for name, module in model.named_modules():
        if isinstance(module, Mona):
            module.register_forward_hook(record(name))
    packed: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        packed[ptr] = packed.get(ptr, 0) + 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(images(2, 64)), torch.tensor([0, 2]))
    input_ptrs = {x.untyped_storage().data_ptr() for x in inputs}
    assert len(input_ptrs) == 16 and not input_ptrs & set(packed)
    after_attn = [ptr for name, ptr in outputs if name.endswith("mona1")]
    assert len(after_attn) == 8 and all(packed.get(ptr, 0) >= 2 for ptr in after_attn)  # Mona + norm2
    loss.backward()  # and the recovered input gives the gradients (compared with the plain form above)


def test_keep_mask_probability_and_reproducibility():
    from monatune.layers.dropout import Dropout, keep_mask

    torch.manual_seed(0)
    mask = keep_mask((1001, 999), 0.1)
    assert mask.dtype == torch.bool and mask.shape == (1001, 999)
    flat = mask.view(-1).float()
    for half in (flat[0::2], flat[1::2]):  # the two 32-bit halves of each random word
        sd = (0.09 / half.numel()) ** 0.5
        assert abs(1 - half.mean().item() - 0.1) < 5 * sd
    torch.manual_seed(0)
    assert torch.equal(keep_mask((1001, 999), 0.1), mask)
    assert keep_mask((3, 4), 0.0).all() and not keep_mask((3, 4), 1.0).any()
    drop = Dropout(0.25).train()
    x = torch.ones(64, 64)
    y = drop(x)
    kept = torch.tensor(4 / 3)  # 1 / (1 - p) in float32
    assert set(y.unique().tolist()) <= {0.0, kept.item()} and 0.2 < (y == 0).float().mean() < 0.3
    assert torch.equal(drop.eval()(x), x)


def test_native_keep_mask_the_gpu_path_draws_the_same_distribution_in_one_op():
    """On CUDA keep_mask uses torch's bernoulli_ (issue 13: the word trick adds launches there);
    forced on the CPU here: right rate, seeded, one computing op, and both Mona forms still drop the
    same units with it."""
    from unittest import mock

    from monatune.layers import dropout

    torch.manual_seed(0)
    mask = dropout.keep_mask((1001, 999), 0.1, native=True)
    assert mask.dtype == torch.bool and mask.shape == (1001, 999)
    assert abs(1 - mask.float().mean().item() - 0.1) < 5 * (0.09 / mask.numel()) ** 0.5
    torch.manual_seed(0)
    assert torch.equal(dropout.keep_mask((1001, 999), 0.1, native=True), mask)
    with torch.profiler.profile() as prof:
        dropout.keep_mask((64, 64), 0.1, native=True)
    assert [e.name for e in prof.events() if e.name.startswith("aten::") and e.name != "aten::empty"] == ["aten::bernoulli_"]
    original, calls = dropout.keep_mask, []

    def native_mask(shape, p, device="cpu"):
        calls.append(shape)
        return original(shape, p, device, native=True)

    fast, plain = _pair(16)
    x, grad = torch.randn(2, 6, 7, 16), torch.randn(2, 6, 7, 16)
    with mock.patch("monatune.layers.mona_fast.keep_mask", native_mask), mock.patch.object(dropout, "keep_mask", native_mask):
        _assert_same(_run(fast, x, grad), _run(plain, x, grad))
    assert len(calls) == 2  # one mask per form: the patched, native draw was used


@pytest.mark.parametrize(("dtype", "loss_scale"), [(torch.float16, 2.0**8), (torch.bfloat16, 1.0)])
@pytest.mark.parametrize("form", FAST_FORMS)
def test_fast_form_under_autocast_errs_at_most_twice_the_plain_form_against_fp64(form, dtype, loss_scale):
    """Issue 13 item 2: output, input gradient (through the fast form's input recovery x = y - branch)
    and every parameter gradient, each against an fp64 run of the plain form; fp16 with a loss scale
    as ``16-mixed``'s gradient scaler applies (2^8 here: no overflow at these sizes), bf16 unscaled.
    Gammas at their 1e-6 initial scale, where fp16 gradients of Mona's LayerNorm underflow unscaled."""
    torch.manual_seed(0)
    base = Mona(64).train()
    with torch.no_grad():
        for name, p in base.named_parameters():
            p.copy_(1e-6 * (1 + torch.rand_like(p)) if "gamma" in name else p + 0.05 * torch.randn_like(p))
    x0, g0 = torch.randn(4, 14, 14, 64), torch.randn(4, 14, 14, 64)

    def run(form: str, run_dtype: torch.dtype, scale: float) -> dict[str, torch.Tensor]:
        module = copy.deepcopy(base).to(torch.float64 if run_dtype == torch.float64 else torch.float32)
        module.form = form
        x = x0.clone().to(next(module.parameters()).dtype).requires_grad_()
        torch.manual_seed(1)  # the same dropout units in every run
        with torch.autocast("cpu", dtype=run_dtype, enabled=run_dtype != torch.float64):
            y = module(x)
        ((y.to(x.dtype) * g0.to(x.dtype)).sum() * scale).backward()
        return {"output": y.detach().double(), "input grad": x.grad.double() / scale} | {n: p.grad.double() / scale for n, p in module.named_parameters()}

    reference = run("plain", torch.float64, 1.0)
    plain, fast = run("plain", dtype, loss_scale), run(form, dtype, loss_scale)

    def error(got: torch.Tensor, want: torch.Tensor) -> float:
        return float((got - want).abs().max() / want.abs().max())

    for name, want in reference.items():
        assert torch.isfinite(fast[name]).all(), name
        assert error(fast[name], want) <= 2 * error(plain[name], want) + 1e-9, (name, error(fast[name], want), error(plain[name], want))


def test_every_form_under_fp16_with_torchs_gradient_scaler_errs_at_most_twice_the_plain_form():
    """fp16 autocast with ``torch.amp.GradScaler`` at its defaults (initial scale 2^16, as Lightning's
    ``16-mixed`` creates it on CUDA; on the CPU here): steps are skipped and the scale halved until no
    gradient overflows; the unscaled gradients of every form then err at most 2x the plain form's
    against fp64. Gammas at 1e-6, where unscaled fp16 gradients of Mona's LayerNorm underflow."""
    torch.manual_seed(0)
    base = Mona(32).train()
    with torch.no_grad():
        for name, p in base.named_parameters():
            p.copy_(1e-6 * (1 + torch.rand_like(p)) if "gamma" in name else p + 0.05 * torch.randn_like(p))
    x0, g0 = torch.randn(2, 12, 12, 32), torch.randn(2, 12, 12, 32)

    def grads(form: str, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], int]:
        module = copy.deepcopy(base).to(torch.float64 if dtype == torch.float64 else torch.float32)
        module.form = form
        opt = torch.optim.SGD(module.parameters(), lr=0.0)
        scaler = torch.amp.GradScaler("cpu", enabled=dtype == torch.float16)
        for attempt in range(40):
            opt.zero_grad(set_to_none=True)
            x = x0.to(next(module.parameters()).dtype)
            torch.manual_seed(1)
            with torch.autocast("cpu", dtype=torch.float16, enabled=dtype == torch.float16):
                y = module(x)
            scaler.scale((y.to(x.dtype) * g0.to(x.dtype)).sum()).backward()
            scaler.unscale_(opt)
            found_inf = sum(v.item() for v in scaler._found_inf_per_device(opt).values()) if scaler.is_enabled() else 0
            scaler.step(opt)
            scaler.update()
            if not found_inf:
                return {n: p.grad.double() for n, p in module.named_parameters()}, attempt
        raise AssertionError(f"{form}: every step overflowed")

    reference, _ = grads("plain", torch.float64)
    plain, _ = grads("plain", torch.float16)
    for form in FAST_FORMS:
        got, _ = grads(form, torch.float16)
        for name, want in reference.items():
            scale = want.abs().max()
            err, err_plain = float((got[name] - want).abs().max() / scale), float((plain[name] - want).abs().max() / scale)
            assert err <= 2 * err_plain + 1e-9, (form, name, err, err_plain)
