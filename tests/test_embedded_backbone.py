"""The embedded backbones (swin_mini_synthetic, swin_nano_synthetic, vit_nano_synthetic): shipped weights, model cards, sizes,
factory and dense use."""

import hashlib

import pytest
import torch
from safetensors import safe_open

import monatune
from monatune.backbones import DenseSwin, embedded
from monatune.backbones.embedded import EMBEDDED_BACKBONES, create_embedded, embedded_model_card, embedded_weights_path
from monatune.backbones.weights import WeightsError

NAME = "swin_nano_synthetic"
MINI = "swin_mini_synthetic"
VIT = "vit_nano_synthetic"
FILE_BYTES = {NAME: 6e6, MINI: 19e6, VIT: 15e6}  # fp16, without the pretext head


@pytest.fixture(scope="module", params=[MINI, NAME, VIT])
def shipped(request) -> tuple[str, dict[str, torch.Tensor]]:
    with safe_open(str(embedded_weights_path(request.param)), "pt") as f:
        return request.param, {k: f.get_tensor(k) for k in f.keys()}


def test_shipped_file_fits_the_model_exactly_except_the_head(shipped):
    name, tensors = shipped
    own = create_embedded(name, num_classes=10, load_weights=False).state_dict()
    assert set(tensors) == {k for k in own if not k.startswith("head.")}
    assert all(tensors[k].shape == own[k].shape for k in tensors)
    assert embedded_weights_path(name).stat().st_size < FILE_BYTES[name]


def test_loaded_weights_are_the_file_in_fp32(shipped):
    name, tensors = shipped
    model = create_embedded(name, num_classes=10)
    state = model.state_dict()
    for key, value in tensors.items():
        assert state[key].dtype == torch.float32
        assert torch.equal(state[key], value.float()), key


def test_model_card_describes_the_file(shipped):
    name, tensors = shipped
    card = embedded_model_card(name)
    config = EMBEDDED_BACKBONES[name]
    blob = embedded_weights_path(name).read_bytes()
    assert card["weights"]["sha256"] == hashlib.sha256(blob).hexdigest()
    assert card["weights"]["bytes"] == len(blob)
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in card["timm_kwargs"].items()} == config["timm_kwargs"]
    assert card["parameters_without_head"] == sum(v.numel() for v in tensors.values())
    probe = card["results"]["digits_linear_probe_val_accuracy"]
    assert set(probe) == {"pretrained", "random_init", "raw_pixels"}
    assert card["command"].startswith("python scripts/pretrain_embedded.py") and name in card["description"] + card["command"] + card["name"]
    with safe_open(str(embedded_weights_path(name)), "pt") as f:
        meta = f.metadata()
    assert meta["seed"] == str(card["pretraining_data"]["seed"]) and int(meta["steps"]) == card["training"]["steps"]


@pytest.mark.parametrize("size", [(64, 64), (96, 80), (40, 56)])
def test_runs_on_native_and_other_sizes(size):
    model = create_embedded(NAME).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 256) and torch.isfinite(out).all()


def test_missing_weights_say_how_to_regenerate(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "embedded_weights_path", lambda name: tmp_path / "absent.safetensors")
    with pytest.raises(WeightsError, match="scripts/pretrain_embedded.py"):
        create_embedded(NAME)
    create_embedded(NAME, load_weights=False)  # random init needs no file


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=NAME):
        create_embedded("swin_nano_nothing")


def test_create_backbone_gives_a_classifier():
    model = monatune.create_backbone(NAME, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 3, 64, 64)).shape == (3, 10)
    assert NAME in monatune.backbones.available_backbones()


@pytest.mark.parametrize("extra", [{}, {"always_partition": True}])
def test_create_backbone_dense_gives_four_stage_maps(extra):
    model = monatune.create_backbone(NAME, dense=True, **extra).eval()
    assert isinstance(model, DenseSwin)
    with torch.no_grad():
        maps = model(torch.randn(2, 3, 64, 96))
    assert [m.shape[1] for m in maps] == model.out_channels == [32, 64, 128, 256]
    assert [tuple(m.shape[2:]) for m in maps] == [(64 // s, 96 // s) for s in model.strides]


def test_meta_build_counts_parameters_without_weights():
    model = monatune.create_backbone(NAME, meta=True)
    assert sum(p.numel() for p in model.parameters()) == embedded_model_card(NAME)["parameters_without_head"]


def test_mona_tunes_the_embedded_backbone():
    model = monatune.create_backbone(NAME, num_classes=10)
    monatune.apply(model, "mona", train_modules=["head"])
    loss = model(torch.randn(2, 3, 64, 64)).logsumexp(1).sum()
    loss.backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("mona" in n or n.startswith("head.") for n in trained)
    assert sum(".blocks." in n and n.endswith("project1.weight") for n in trained) == 2 * sum((2, 2, 4, 2))


def test_mini_is_shaped_like_a_real_swin_and_mona_is_a_small_share_of_it():
    """What the main demo's backbone must be (issue 12): stage widths >= 64 with head dim 32 like
    Swin-T/B/L, and Mona (bottleneck 64, as published) at most 8 % of the backbone's parameters."""
    model = monatune.create_backbone(MINI, dense=True, pretrained=False)
    assert model.out_channels == [64, 128, 256, 512]
    heads = EMBEDDED_BACKBONES[MINI]["timm_kwargs"]["num_heads"]
    assert [c // h for c, h in zip(model.out_channels, heads)] == [32, 32, 32, 32]
    backbone = sum(p.numel() for p in model.parameters())
    monatune.apply(model, "mona")
    mona = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0.07 < mona / backbone <= 0.08, mona / backbone  # 7.3 %
    nano = monatune.create_backbone(NAME, dense=True, pretrained=False)
    nano_total = sum(p.numel() for p in nano.parameters())
    monatune.apply(nano, "mona")
    assert sum(p.numel() for p in nano.parameters() if p.requires_grad) / nano_total > 0.15  # why the demo moved off it


def test_mini_card_states_that_the_frozen_backbone_transfers():
    """The card's digits probe: pretrained features beat random init at the inner stages, where
    Mona's adapters read them (each stage's pooled output; see the card for every figure)."""
    probe = embedded_model_card(MINI)["results"]["digits_linear_probe_val_accuracy"]
    stages = [f"stage{i}" for i in (1, 2, 3)]
    assert all(probe["pretrained"][s] > probe["random_init"][s] for s in stages), probe


def test_the_embedded_vit_has_prefix_tokens_and_mona_is_a_small_share_of_it():
    """Issue 15's embedded ViT: a class token and register tokens, width >= 64, Mona <= 8 % of its
    parameters; any input size, with its shipped weights."""
    model = create_embedded(VIT)
    assert model.num_prefix_tokens == 5 and model.embed_dim >= 64
    total = sum(p.numel() for p in model.parameters())
    monatune.apply(model, "mona")
    mona = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert mona == 4 * 2 * (133 * 384 + 9728) and mona / total <= 0.08
    assert model(torch.randn(2, 3, 80, 48)).shape == (2, 384)


def test_the_recipe_is_what_made_the_shipped_file(shipped):
    """``scripts/pretrain_embedded.py --name NAME`` with no other flags reruns the recipe the card
    records (so the regeneration command the loader prints gives these weights back)."""
    name, _ = shipped
    recipe, card = EMBEDDED_BACKBONES[name]["pretraining"], embedded_model_card(name)
    assert card["pretraining_data"]["train_images"] == recipe["train_size"]
    assert {k: card["training"][k] for k in ("epochs", "batch_size", "lr", "drop_path_rate")} == {
        k: recipe[k] for k in ("epochs", "batch_size", "lr", "drop_path_rate")
    }
    assert card["training"].get("feature_distillation", {}).get("teacher") == recipe.get("teacher")


def test_vit_card_states_what_its_pretraining_gives():
    """The ViT's digits probe, as the README reports it: the first block's features beat random init,
    the later blocks' do not (the README says so); its teacher is a shipped backbone."""
    card = embedded_model_card(VIT)
    probe = card["results"]["digits_linear_probe_val_accuracy"]
    assert probe["pretrained"]["stage1"] > probe["random_init"]["stage1"], probe
    assert probe["pretrained"]["final"] < probe["random_init"]["final"], probe  # stated in the README: keep them in step
    assert card["training"]["feature_distillation"]["teacher"] in EMBEDDED_BACKBONES
