"""One table of methods (core_cases.METHOD_CASES) driving the same checks over every method and backbone."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
from core_cases import (
    BACKBONES,
    BLOCK_DIMS,
    COMMON_PAIRS,
    METHOD_CASES,
    base_and_copy,
    expected_added,
    expected_trainable,
    images,
    named_numel,
    perturb_trainable,
    tiny_timm_swin,
    trainable_names,
)
from torch import nn

import monatune
from monatune.cli.main import main as cli_main
from monatune.methods import option_names

PAIR_IDS = [f"{b}-{m}" for b, m in COMMON_PAIRS]


def test_every_registered_method_has_a_table_row():
    assert list(METHOD_CASES) == monatune.methods(), "add a row to tests/core_cases.py for each new method"


@pytest.mark.parametrize(("backbone", "method"), COMMON_PAIRS, ids=PAIR_IDS)
def test_trainable_set_and_counts(backbone, method):
    case, bb = METHOD_CASES[method], BACKBONES[backbone]
    model, base = base_and_copy(backbone)
    base_numel = named_numel(base)
    monatune.apply(model, method)

    numel = named_numel(model)
    added = set(numel) - set(base_numel)
    assert set(base_numel) <= set(numel), "backbone parameter names must not change"
    assert added == expected_added(bb, case)
    assert trainable_names(model) == expected_trainable(list(base_numel), bb, case)

    added_count = sum(case.added_per_block(d) for d in BLOCK_DIMS)
    assert sum(numel[n] for n in added) == added_count
    rule_count = sum(v for n, v in base_numel.items() if case.backbone_rule(n, bb))
    assert monatune.count_parameters(model) == (rule_count + added_count, sum(base_numel.values()) + added_count)
    state = monatune.tuning_state(model)
    assert (state["method"], state["train_modules"]) == (method, [])
    assert sorted(state["options"]) == sorted(option_names(method))


@pytest.mark.parametrize(("backbone", "method"), COMMON_PAIRS, ids=PAIR_IDS)
def test_gradients_reach_exactly_the_trainable_set(backbone, method):
    model, _ = base_and_copy(backbone)
    monatune.apply(model, method)
    perturb_trainable(model)  # zero-initialised factors (LoRA B, LoRand K) would block gradients
    model.train()
    # 64x64: every stage's grid holds a full window, so no shifted window shrinks to one token
    # (where softmax makes q irrelevant and its gradient zero).
    out = model(images(h=64, w=64))
    trainable = trainable_names(model)
    if not trainable:
        assert not out.requires_grad
        return
    # A fixed random read-out: a plain sum is blind through the final LayerNorm.
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    (out * weights).sum().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == trainable
    zero = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.abs().sum() > 0]
    assert not zero, f"trainable parameters with an all-zero gradient: {zero[:5]}"


@pytest.mark.parametrize(("backbone", "method"), COMMON_PAIRS, ids=PAIR_IDS)
def test_output_unchanged_in_shape_and_identity_methods_unchanged_in_value(backbone, method):
    model, base = base_and_copy(backbone)
    x = images(h=40, w=24)
    with torch.no_grad():
        expected = base(x)
        monatune.apply(model, method)
        got = model.eval()(x)
    assert got.shape == expected.shape
    if METHOD_CASES[method].identity_at_init:
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    else:
        assert not torch.allclose(got, expected, rtol=0, atol=1e-6), f"{method} should not be an identity at init"
    if monatune.count_parameters(model)[0]:
        # Training moves the function: perturbed trainable tensors must change the output.
        perturb_trainable(model)
        with torch.no_grad():
            assert not torch.allclose(model(x), expected, rtol=0, atol=1e-4)


def test_train_modules_head_trains_with_the_method():
    model = tiny_timm_swin(num_classes=5)
    base_trainable = monatune.count_parameters(monatune.apply(tiny_timm_swin(num_classes=5), "mona"))[0]
    monatune.apply(model, "mona", train_modules=["head"])
    head = {n for n, _ in model.named_parameters() if n.startswith("head.")}
    assert head == {"head.fc.weight", "head.fc.bias"}
    assert head <= trainable_names(model)
    assert monatune.count_parameters(model)[0] == base_trainable + 5 * 128 + 5
    assert monatune.tuning_state(model)["train_modules"] == ["head"]

    fixed = monatune.apply(tiny_timm_swin(num_classes=5), "fixed", train_modules=["head"])
    assert trainable_names(fixed) == head


def test_unknown_train_module_errors_and_leaves_model_alone():
    model = tiny_timm_swin(num_classes=5)
    with pytest.raises(ValueError, match="classifier") as err:
        monatune.apply(model, "mona", train_modules=["classifier"])
    assert "head" in str(err.value)  # lists what exists
    assert monatune.tuning_state(model) is None
    assert all(p.requires_grad for p in model.parameters())
    assert not any(".mona1." in n for n, _ in model.named_parameters())


def test_unknown_method_lists_the_valid_ones():
    model = tiny_timm_swin()
    with pytest.raises(ValueError, match="monna") as err:
        monatune.apply(model, "monna")
    for name in monatune.methods():
        assert name in str(err.value)
    assert monatune.tuning_state(model) is None


@pytest.mark.parametrize(
    ("method", "bad", "valid"),
    [
        ("mona", "rank", ["mid_dim", "kernel_sizes", "scale", "dropout"]),
        ("lora", "mid_dim", ["rank", "alpha"]),
        ("adapter", "scale", ["mid_dim", "dropout"]),
        ("lorand", "rank", ["alpha", "beta"]),
    ],
)
def test_unknown_option_lists_the_valid_ones(method, bad, valid):
    model = tiny_timm_swin()
    with pytest.raises(ValueError, match=bad) as err:
        monatune.apply(model, method, **{bad: 4})
    for option in valid:
        assert option in str(err.value)
    assert monatune.tuning_state(model) is None


def test_method_without_options_rejects_any_option():
    with pytest.raises(ValueError, match="rank"):
        monatune.apply(tiny_timm_swin(), "bitfit", rank=3)


def test_applying_twice_errors():
    model = monatune.apply(tiny_timm_swin(), "mona")
    names = named_numel(model)
    with pytest.raises(ValueError, match="already tuned"):
        monatune.apply(model, "lora")
    with pytest.raises(ValueError, match="already tuned"):
        monatune.apply(model, "mona")
    assert named_numel(model) == names


def test_model_without_swin_blocks_errors():
    with pytest.raises(ValueError, match="Swin"):
        monatune.apply(nn.Sequential(nn.Linear(4, 4)), "mona")


def _lorand(alpha: int, beta: int, fan_in: int, fan_out: int) -> int:
    """One LoRand projection: alpha branches of A (in x beta), K (beta x beta), B (beta x out), plus a bias."""
    return alpha * (fan_in * beta + beta * beta + beta * fan_out) + fan_out


@pytest.mark.parametrize(
    ("method", "options", "per_block"),
    [
        # norm + gamma/gammax + project1 + depthwise (weights, biases) + projector + project2
        ("mona", {"mid_dim": 32}, lambda d: 2 * (4 * d + 32 * d + 32 + 32 * 83 + 96 + 32 * 32 + 32 + 32 * d + d)),
        ("mona", {"kernel_sizes": [3, 5]}, lambda d: 2 * (133 * d + 9728 - 64 * 49 - 64)),
        ("mona", {"scale": "scalar"}, lambda d: 2 * (131 * d + 9730)),
        ("lora", {"rank": 4}, lambda d: 2 * 2 * 4 * d),
        ("adapter", {"mid_dim": 8}, lambda d: 2 * (d * 8 + 8 + 8 * d + d)),
        ("adaptformer", {"mid_dim": 8}, lambda d: d * 8 + 8 + 8 * d + d),
        ("lorand", {"alpha": 2, "beta": 4}, lambda d: 2 * (_lorand(2, 4, d, d // 2) + _lorand(2, 4, d // 2, d))),
    ],
    ids=lambda v: str(v) if isinstance(v, (str, dict)) else "",
)
def test_options_change_the_added_modules(method, options, per_block):
    model = monatune.apply(tiny_timm_swin(), method, **options)
    assert monatune.count_parameters(model)[0] == sum(per_block(d) for d in BLOCK_DIMS)
    stored = monatune.tuning_state(model)["options"]
    for key, value in options.items():
        assert list(stored[key]) == value if isinstance(value, list) else stored[key] == value


def test_bitfit_without_rel_pos_tables():
    model, base = base_and_copy("timm")
    monatune.apply(model, "bitfit", rel_pos_tables=False)
    expected = {n for n, _ in base.named_parameters() if n.endswith(".bias") or n == "bias"}
    assert trainable_names(model) == expected
    assert not any("relative_position_bias_table" in n for n in trainable_names(model))


@pytest.mark.parametrize("backbone", ["timm", "torchvision"])
def test_lora_touches_only_q_and_v_rows_with_scale_alpha_over_rank(backbone):
    model, base = base_and_copy(backbone)
    monatune.apply(model, "lora")
    perturb_trainable(model)
    qkv = model.get_submodule(BACKBONES[backbone].block_prefixes[0] + "attn.qkv")
    base_qkv = base.get_submodule(BACKBONES[backbone].block_prefixes[0] + "attn.qkv")
    d = base_qkv.weight.shape[1]
    delta = (qkv.weight - base_qkv.weight).detach()
    q_expected = (qkv.lora_q.lora_B @ qkv.lora_q.lora_A).detach() / 64
    v_expected = (qkv.lora_v.lora_B @ qkv.lora_v.lora_A).detach() / 64
    torch.testing.assert_close(delta[:d], q_expected)
    assert torch.count_nonzero(delta[d : 2 * d]) == 0
    torch.testing.assert_close(delta[2 * d :], v_expected)

    # The tuned model equals the base model with merged qkv weights (torchvision reads .weight directly).
    with torch.no_grad():
        for prefix in BACKBONES[backbone].block_prefixes:
            base.get_submodule(prefix + "attn.qkv").weight.copy_(model.get_submodule(prefix + "attn.qkv").weight)
        x = images()
        torch.testing.assert_close(model(x), base(x), rtol=1e-5, atol=1e-5)


# --- SPEC section 4: the published parameter counts, through the CLI ------------------------------

SPEC_COUNTS = {  # method: (dense Swin-B, dense Swin-L)
    "full": (86_745_016, 194_998_164),
    "bitfit": (201_656, 302_484),
    "normtuning": (59_392, 89_088),
    "partial1": (12_601_632, 28_339_632),
    "adapter": (3_107_328, 4_659_456),
    "adaptformer": (1_553_664, 2_329_728),
    "lora": (3_080_192, 4_620_288),
    "mona": (3_667_456, 5_267_712),
}


def _params_json(args: list[str]) -> list[dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli_main(["params", "--json", *args])
    assert rc == 0
    return json.loads(out.getvalue())


@pytest.mark.parametrize(
    ("column", "backbone"), [(0, "swin_base_patch4_window7_224"), (1, "swin_large_patch4_window7_224")]
)
def test_cli_params_reproduces_spec_counts(column, backbone):
    rows = {r["method"]: r for r in _params_json(["--backbone", backbone, "--dense"])}
    assert list(rows) == monatune.methods()
    assert {m: rows[m]["trainable"] for m in SPEC_COUNTS} == {m: c[column] for m, c in SPEC_COUNTS.items()}
    assert rows["fixed"]["trainable"] == 0
    total = SPEC_COUNTS["full"][column]
    assert rows["full"]["total"] == total
    assert rows["mona"]["total"] == total + rows["mona"]["trainable"]
    assert rows["mona"]["percent"] == pytest.approx(100 * rows["mona"]["trainable"] / rows["mona"]["total"])


def test_cli_params_mona_swin_tiny():
    rows = _params_json(["--backbone", "swin_tiny_patch4_window7_224", "--method", "mona"])
    assert [(r["method"], r["trainable"]) for r in rows] == [("mona", 1_408_128)]


def test_spec_relative_position_tables_in_bitfit_count():
    model = monatune.create_backbone("swin_base_patch4_window7_224", dense=True, meta=True)
    tables = sum(p.numel() for n, p in model.named_parameters() if "relative_position_bias_table" in n)
    assert tables == 63_544
    monatune.apply(model, "bitfit", rel_pos_tables=False)
    assert monatune.count_parameters(model)[0] == SPEC_COUNTS["bitfit"][0] - tables


@pytest.mark.parametrize("method", ["mona", "adapter", "adaptformer", "lora", "lorand"])
def test_added_modules_follow_the_models_mode(method):
    model = monatune.apply(tiny_timm_swin().eval(), method)
    assert not any(m.training for m in model.modules())
    x = images()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # no dropout in eval mode
    model = monatune.apply(tiny_timm_swin().train(), method)
    assert all(m.training for m in model.modules())
