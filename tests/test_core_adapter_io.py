"""Adapter files: exact contents, round trips for every method, and refusals that leave models untouched."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from core_cases import (
    COMMON_PAIRS,
    assert_same_state,
    base_and_copy,
    images,
    perturb_trainable,
    snapshot,
    tiny_timm_swin,
    trainable_names,
)
from safetensors import safe_open

import monatune
from monatune.methods import build_method

PAIR_IDS = [f"{b}-{m}" for b, m in COMMON_PAIRS]


def _read(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.mark.parametrize(("backbone", "method"), COMMON_PAIRS, ids=PAIR_IDS)
def test_round_trip(backbone, method, tmp_path):
    tuned, plain = base_and_copy(backbone)
    pretuned = monatune.apply(copy.deepcopy(plain), method)
    monatune.apply(tuned, method)
    perturb_trainable(tuned)  # the file must carry trained values, not the init
    path = monatune.save_adapter(tuned, tmp_path / "sub" / "adapter.safetensors")

    tensors, meta = _read(path)
    expected = dict((n, p) for n, p in tuned.named_parameters() if p.requires_grad)
    assert set(tensors) == set(expected)
    for name, value in expected.items():
        assert torch.equal(tensors[name], value.detach())
    assert meta["format"] == "monatune-adapter"
    assert meta["method"] == method
    assert json.loads(meta["options"]) == json.loads(
        json.dumps(dataclasses.asdict(build_method(method).options))
    )
    assert json.loads(meta["train_modules"]) == []
    assert not [p.name for p in path.parent.iterdir() if p.name != path.name], "temporary files left behind"

    x = images(h=40, w=24)
    with torch.no_grad():
        want = tuned.eval()(x)
        for target in (plain, pretuned):  # a plain model gets the method applied; a tuned one is filled
            monatune.load_adapter(target, path)
            assert torch.equal(target.eval()(x), want)
            assert trainable_names(target) == set(expected)
            assert monatune.tuning_state(target) == monatune.tuning_state(tuned)


def test_file_holds_head_when_it_trains(tmp_path):
    model = monatune.apply(tiny_timm_swin(num_classes=3), "lora", train_modules=["head"], rank=4)
    perturb_trainable(model)
    path = monatune.save_adapter(model, tmp_path / "a.safetensors")
    tensors, meta = _read(path)
    assert {"head.fc.weight", "head.fc.bias"} <= set(tensors)
    assert all(".lora_" in k or k.startswith("head.") for k in tensors)
    assert json.loads(meta["options"]) == {"rank": 4, "alpha": 1.0}
    assert json.loads(meta["train_modules"]) == ["head"]

    fresh = tiny_timm_swin(num_classes=3)
    monatune.load_adapter(fresh, path)
    state = monatune.tuning_state(fresh)
    assert state == {"method": "lora", "options": {"rank": 4, "alpha": 1.0}, "train_modules": ["head"]}
    torch.testing.assert_close(fresh.head.fc.weight, model.head.fc.weight)


def test_save_needs_a_tuned_model(tmp_path):
    with pytest.raises(ValueError, match="apply"):
        monatune.save_adapter(tiny_timm_swin(), tmp_path / "a.safetensors")
    assert not list(tmp_path.iterdir())


def _saved(tmp_path, method="mona", **kw):
    model = monatune.apply(tiny_timm_swin(**kw), method)
    perturb_trainable(model)
    return monatune.save_adapter(model, tmp_path / f"{method}.safetensors")


def test_other_backbone_width_raises_naming_keys_and_shapes(tmp_path):
    path = _saved(tmp_path)
    other = monatune.apply(tiny_timm_swin(embed_dim=24), "mona")
    before = snapshot(other)
    with pytest.raises(monatune.AdapterMismatchError) as err:
        monatune.load_adapter(other, path)
    msg = str(err.value)
    assert "layers.0.blocks.0.mona1.norm.weight" in msg
    assert "(16,)" in msg and "(24,)" in msg
    assert_same_state(other, before)


def test_other_backbone_depth_raises_naming_missing_keys(tmp_path):
    path = _saved(tmp_path)
    deeper = monatune.apply(tiny_timm_swin(depths=(2, 2, 3, 2)), "mona")
    before = snapshot(deeper)
    with pytest.raises(monatune.AdapterMismatchError, match=r"layers\.2\.blocks\.2\.mona1"):
        monatune.load_adapter(deeper, path)
    assert_same_state(deeper, before)


def test_mismatch_on_a_plain_model_leaves_it_plain(tmp_path):
    path = _saved(tmp_path)
    other = tiny_timm_swin(embed_dim=24)
    before = snapshot(other)
    grads = {n: p.requires_grad for n, p in other.named_parameters()}
    with pytest.raises(monatune.AdapterMismatchError, match="shape"):
        monatune.load_adapter(other, path)
    assert monatune.tuning_state(other) is None
    assert_same_state(other, before)
    assert {n: p.requires_grad for n, p in other.named_parameters()} == grads
    monatune.apply(other, "lora")  # still a plain model that can be tuned


@pytest.mark.parametrize(
    ("method", "options"), [("lora", {}), ("mona", {"mid_dim": 32}), ("mona", {"scale": "scalar"})]
)
def test_other_method_or_options_raises_and_changes_nothing(tmp_path, method, options):
    path = _saved(tmp_path)
    model = monatune.apply(tiny_timm_swin(), method, **options)
    before = snapshot(model)
    with pytest.raises(monatune.AdapterMismatchError) as err:
        monatune.load_adapter(model, path)
    assert "mona" in str(err.value) and method in str(err.value)
    assert_same_state(model, before)


def test_not_an_adapter_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    model = tiny_timm_swin()
    with pytest.raises(monatune.AdapterMismatchError, match="not a monatune adapter"):
        monatune.load_adapter(model, path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not safetensors at all")
    with pytest.raises(monatune.AdapterMismatchError):
        monatune.load_adapter(model, garbage)
    with pytest.raises(FileNotFoundError):
        monatune.load_adapter(model, tmp_path / "missing.safetensors")
    assert monatune.tuning_state(model) is None


class _SwinWithBatchNormHead(torch.nn.Module):
    """A tiny Swin whose head keeps BatchNorm running statistics, like a UperNet or Cascade head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = tiny_timm_swin()
        width = self.backbone.num_features
        self.head = torch.nn.Sequential(torch.nn.BatchNorm1d(width), torch.nn.Linear(width, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x).mean((1, 2)))


def _mona_tuned_with_a_fresh_copy() -> tuple[_SwinWithBatchNormHead, _SwinWithBatchNormHead]:
    """(Mona-tuned model with perturbed trainable tensors, an untuned copy of its initial weights)."""
    torch.manual_seed(0)
    trained = _SwinWithBatchNormHead()
    fresh = copy.deepcopy(trained)
    monatune.apply(trained, "mona", train_modules=["head"])
    perturb_trainable(trained)
    return trained, fresh


def test_adapter_carries_the_running_statistics_of_trained_heads(tmp_path):
    trained, fresh = _mona_tuned_with_a_fresh_copy()
    trained.train()
    with torch.no_grad():
        for seed in range(3):  # moves the running mean/var away from their init
            trained(images(batch=4, h=32, w=32, seed=seed) * 3 + 1)
    path = monatune.save_adapter(trained, tmp_path / "bn.safetensors")
    tensors, _ = _read(path)
    bn_stats = {"head.0.running_mean", "head.0.running_var", "head.0.num_batches_tracked"}
    assert bn_stats <= set(tensors)
    assert not any(k.startswith("backbone.") and "running" in k for k in tensors)
    assert not any("relative_position_index" in k or "attn_mask" in k for k in tensors)  # constants stay out

    monatune.load_adapter(fresh, path)
    x = images(h=32, w=32)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), trained.eval()(x))


def test_parameter_only_files_of_format_1_still_load(tmp_path):
    from safetensors.torch import save_file

    trained, fresh = _mona_tuned_with_a_fresh_copy()
    tensors, meta = _read(monatune.save_adapter(trained, tmp_path / "v2.safetensors"))
    params = {k: v for k, v in tensors.items() if k in dict(trained.named_parameters())}
    save_file(params, str(tmp_path / "v1.safetensors"), metadata={**meta, "format_version": "1"})
    with pytest.warns(UserWarning, match="format-1 adapter file .* head.0.num_batches_tracked"):
        monatune.load_adapter(fresh, tmp_path / "v1.safetensors")
    for name, p in trained.named_parameters():
        if p.requires_grad:
            assert torch.equal(dict(fresh.named_parameters())[name], p), name
    # a version-2 file missing its buffers is refused
    save_file(params, str(tmp_path / "v2_incomplete.safetensors"), metadata=meta)
    with pytest.raises(monatune.AdapterMismatchError, match="running_mean"):
        monatune.load_adapter(copy.deepcopy(fresh), tmp_path / "v2_incomplete.safetensors")


def test_unknown_format_versions_are_refused(tmp_path):
    from safetensors.torch import save_file

    trained, _ = _mona_tuned_with_a_fresh_copy()
    tensors, meta = _read(monatune.save_adapter(trained, tmp_path / "v2.safetensors"))
    save_file(tensors, str(tmp_path / "v3.safetensors"), metadata={**meta, "format_version": "3"})
    with pytest.raises(monatune.AdapterMismatchError, match="format version 3 .* upgrade monatune"):
        monatune.load_adapter(trained, tmp_path / "v3.safetensors")


def test_learned_buffers_cover_frozen_batchnorms_and_whole_model_train_modules():
    from monatune.adapter_io import learned_buffers

    model = _SwinWithBatchNormHead()
    model.head[0].requires_grad_(False)  # frozen affine: train mode still moves its statistics
    model.head.register_buffer("temperature", torch.ones(1))  # persistent, not a norm's
    stats = {"head.0.running_mean", "head.0.running_var", "head.0.num_batches_tracked"}
    assert set(learned_buffers(model)) == stats
    assert set(learned_buffers(model, "head")) == stats | {"head.temperature"}  # a string is one module name
    persistent = set(model.state_dict()) - {name for name, _ in model.named_parameters()}
    assert set(learned_buffers(model, [""])) == persistent  # "" names the whole model
    assert "head.temperature" in persistent and not any("relative_position_index" in k for k in persistent)


# --- what the file was trained on -----------------------------------------------------------------


def test_backbone_and_task_are_recorded_and_read_back(tmp_path):
    from monatune.adapter_io import read_adapter

    model = monatune.apply(tiny_timm_swin(), "mona")
    path = monatune.save_adapter(model, tmp_path / "a.safetensors", backbone="swin_base_patch4_window7_224", task="detection")
    _, meta = _read(path)
    assert (meta["backbone"], meta["task"]) == ("swin_base_patch4_window7_224", "detection")
    _, info = read_adapter(path)
    assert (info["backbone"], info["task"]) == ("swin_base_patch4_window7_224", "detection")
    _, info = read_adapter(_saved(tmp_path))  # written without them
    assert (info["backbone"], info["task"]) == (None, None)
    with pytest.raises(TypeError, match="backbone must be a name"):
        monatune.save_adapter(model, tmp_path / "b.safetensors", backbone=True)  # a config's `pretrained: true`


@pytest.mark.parametrize("tuned", [False, True])
def test_adapter_of_another_backbone_says_what_it_was_trained_on(tmp_path, tuned):
    model = monatune.apply(tiny_timm_swin(), "mona")
    path = monatune.save_adapter(model, tmp_path / "a.safetensors", backbone="swin_base_patch4_window7_224", task="detection")
    other = tiny_timm_swin(embed_dim=24, depths=(1, 1, 2, 1))
    if tuned:
        monatune.apply(other, "mona")
    before = snapshot(other)
    with pytest.raises(monatune.AdapterMismatchError) as err:
        monatune.load_adapter(other, path)
    # Mona: 2 x 16 tensors per block, 7 of each 16 sized by the block width (gamma, gammax, norm weight and
    # bias, project1 weight, project2 weight and bias). The 5 blocks both have: 5 x 2 x 7 differ in shape;
    # the file's other 3 blocks (2-2-2-2 vs 1-1-2-1): 3 x 32 not in the model.
    assert str(err.value).startswith(
        f"{path} was trained on swin_base_patch4_window7_224 (task detection); this model is a Swin with "
        "stage widths 24-48-96-192, depths 1-1-2-1: 70 tensor(s) differ in shape, 96 not in this model "
        "(e.g. layers.0.blocks.0.mona1.gamma: file (16,) vs model (24,); "
    )
    assert_same_state(other, before)
