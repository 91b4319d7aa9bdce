"""Plain ViTs through the same injection mechanism as Swin (issue 15): timm VisionTransformer (class
and register tokens, dynamic image size) and torchvision's ViT take every method with exact counts,
and Mona treats prefix tokens as 1 x 1 maps of their own."""

from __future__ import annotations

import copy
import importlib.util
import math
import re

import pytest
import torch
from core_cases import METHOD_CASES, BackboneCase, expected_added, expected_trainable, named_numel, perturb_trainable
from torch import nn

import monatune
from monatune.layers.mona import Mona
from monatune.layers.tokens import TokenLayout

DIM, DEPTH = 32, 3


def tiny_timm_vit() -> nn.Module:
    """Class token + 2 register tokens, patch 8, any input size."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=32, patch_size=8, embed_dim=DIM, depth=DEPTH, num_heads=2, mlp_ratio=2, num_classes=0,
                             reg_tokens=2, dynamic_img_size=True, init_values=1e-2)  # fmt: skip


def tiny_torchvision_vit() -> nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(image_size=32, patch_size=8, num_layers=DEPTH, num_heads=2, hidden_dim=DIM, mlp_dim=2 * DIM)
    model.heads = nn.Identity()
    return model


VITS = {
    "timm_vit": (BackboneCase("timm_vit", tiny_timm_vit, tuple(f"blocks.{i}." for i in range(DEPTH)),
                              lambda n: re.search(r"(^|\.)norm[12]?\.(weight|bias)$", n) is not None), (40, 24)),
    "torchvision_vit": (BackboneCase("torchvision_vit", tiny_torchvision_vit,
                                     tuple(f"encoder.layers.encoder_layer_{i}." for i in range(DEPTH)),
                                     lambda n: re.search(r"(^|\.)ln(_[12])?\.(weight|bias)$", n) is not None), (32, 32)),
}  # fmt: skip
def tiny_timm_eva() -> nn.Module:
    """EVA-02 style: rotary position embeddings, LayerScale, class token, any input size."""
    from timm.models.eva import Eva

    return Eva(img_size=32, patch_size=8, embed_dim=DIM, depth=DEPTH, num_heads=2, num_classes=0, use_rot_pos_emb=True,
               ref_feat_shape=(4, 4), init_values=0.1, dynamic_img_size=True)  # fmt: skip


VITS["timm_eva"] = (BackboneCase("timm_eva", tiny_timm_eva, tuple(f"blocks.{i}." for i in range(DEPTH)),
                                 lambda n: re.search(r"(^|\.)(fc_)?norm[12]?\.(weight|bias)$", n) is not None), (40, 24))  # fmt: skip
PAIRS = [(b, m) for b in VITS for m in METHOD_CASES]


def _expected_added(backbone: str, case) -> set[str]:
    bb = VITS[backbone][0]
    if backbone == "torchvision_vit" and case.name == "lora":  # the packed in-projection of nn.MultiheadAttention
        return {f"{p}self_attention.lora_{w}.lora_{m}" for p in bb.block_prefixes for w in "qv" for m in "AB"}
    return expected_added(bb, case)


@pytest.mark.parametrize(("backbone", "method"), PAIRS, ids=[f"{b}-{m}" for b, m in PAIRS])
def test_every_method_trains_exactly_its_set_with_closed_form_counts(backbone, method):
    case, (bb, (h, w)) = METHOD_CASES[method], VITS[backbone]
    torch.manual_seed(0)
    base = bb.build()
    model = copy.deepcopy(base)
    monatune.apply(model, method)
    base_numel, numel = named_numel(base), named_numel(model)
    added = set(numel) - set(base_numel)
    assert set(base_numel) <= set(numel) and added == _expected_added(backbone, case)
    rule = {n for n in base_numel if case.backbone_rule(n, bb)}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == rule | added
    assert sum(numel[n] for n in added) == DEPTH * case.added_per_block(DIM)
    if backbone == "timm_vit":
        assert expected_trainable(list(base_numel), bb, case) == rule | added
    # gradients reach exactly the trainable set; identity methods leave the function unchanged at init
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        same = torch.allclose(model.eval()(x), base.eval()(x), atol=1e-6)
    assert same == case.identity_at_init
    perturb_trainable(model)
    out = model.train()(x)
    if not (rule | added):
        assert not out.requires_grad
        return
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(3))).sum().backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == rule | added


def test_mona_on_vit_base_counts_as_the_issue_states():
    model = monatune.create_backbone("vit_base_patch16_224", meta=True)
    monatune.apply(model, "mona")
    assert monatune.count_parameters(model)[0] == 24 * (133 * 768 + 9728) == 2_684_928


def _mona(dim: int = 12) -> Mona:
    torch.manual_seed(0)
    mona = Mona(dim, 6).double().eval()
    with torch.no_grad():
        for p in mona.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return mona


@pytest.mark.parametrize("form", ["plain", "fast", "lean"])
def test_prefix_tokens_are_one_by_one_maps_and_never_mix_into_the_grid(form):
    mona, (b, p, h, w, c) = _mona(), (2, 3, 4, 5, 12)
    mona.form = form
    x = torch.randn(b, p + h * w, c, dtype=torch.float64)
    y = mona(x, hw=(h, w), num_prefix=p)
    # patches: Mona of the H x W map; prefix tokens: each Mona of a 1 x 1 map
    torch.testing.assert_close(y[:, p:], mona(x[:, p:].reshape(b, h, w, c)).reshape(b, h * w, c))
    # the 1 x 1 rule in closed form: only the centre taps of the depthwise kernels act
    z = mona.project1(mona.adapter_input(x[:, :p]))
    convs = mona.adapter_conv.depthwise_convs()
    centre = sum(cv.weight[:, 0, cv.kernel_size[0] // 2, cv.kernel_size[1] // 2] * z + cv.bias for cv in convs) / len(convs)
    z = z + centre
    z = z + mona.adapter_conv.projector(z.reshape(-1, z.shape[-1], 1, 1)).reshape(z.shape)
    torch.testing.assert_close(y[:, :p], x[:, :p] + mona.project2(torch.nn.functional.gelu(z)))
    # a change of one patch token moves no prefix output; of one prefix token, only its own output
    x2 = x.clone()
    x2[:, p + 7] += 1.0
    torch.testing.assert_close(mona(x2, hw=(h, w), num_prefix=p)[:, :p], y[:, :p])
    x3 = x.clone()
    x3[:, 1] += 1.0
    changed = (mona(x3, hw=(h, w), num_prefix=p) - y).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [i == 1 for i in range(p + h * w)]


def test_a_tuned_timm_vit_follows_each_forwards_grid():
    model = monatune.apply(tiny_timm_vit(), "mona")
    layout = next(m for m in model.modules() if isinstance(m, Mona)).token_layout
    assert isinstance(layout, TokenLayout) and layout.num_prefix == 3
    for h, w in ((40, 24), (64, 64), (16, 48)):
        out = model(torch.randn(1, 3, h, w))
        assert layout.hw == (h // 8, w // 8) and torch.isfinite(out).all()
    copied = copy.deepcopy(model)  # a copy records its own grid
    copied(torch.randn(1, 3, 32, 16))
    assert next(m for m in copied.modules() if isinstance(m, Mona)).token_layout.hw == (4, 2) and layout.hw == (2, 6)


def test_a_vit_classifier_trains_from_a_config(tmp_path):
    from monatune.configs import small_config
    from monatune.engine.config import load_config
    from monatune.engine.run import run

    overrides = ["model.backbone=test_vit", "trainer.max_epochs=3", "data.options.num_train_images=128",
                 f"trainer.out_dir={tmp_path}", "trainer.progress_bar=false"]  # fmt: skip
    result = run("fit", load_config(small_config("classification_digits"), overrides))
    losses = result["history"]["train_loss"]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    assert (tmp_path / "adapter.safetensors").is_file()


# --- Hugging Face transformers (an optional extra; in the test extras) -------------------------------------------
needs_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="pip install monatune[transformers]")


def _hf_builders() -> dict:
    from transformers import (
        CLIPVisionConfig, CLIPVisionModel, Dinov2WithRegistersConfig, Dinov2WithRegistersModel, ViTConfig,
        ViTForImageClassification,
    )  # fmt: skip

    common = dict(hidden_size=DIM, num_hidden_layers=DEPTH, num_attention_heads=2, image_size=32, patch_size=8)
    return {
        "hf_vit": (lambda: ViTForImageClassification(ViTConfig(**common, intermediate_size=2 * DIM, num_labels=3)), "attention"),
        "hf_dinov2_registers": (lambda: Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**common, num_register_tokens=4)), "attention"),
        "hf_clip_vision": (lambda: CLIPVisionModel(CLIPVisionConfig(**common, intermediate_size=2 * DIM)), "self_attn"),
    }


HF_PAIRS = [(b, m) for b in ("hf_vit", "hf_dinov2_registers", "hf_clip_vision") for m in METHOD_CASES]


def _layer_prefixes(model: nn.Module) -> list[str]:
    kinds = ("ViTLayer", "Dinov2WithRegistersLayer", "CLIPEncoderLayer")
    return [f"{n}." for n, m in model.named_modules() if type(m).__name__ in kinds]


@needs_transformers
@pytest.mark.parametrize(("backbone", "method"), HF_PAIRS, ids=[f"{b}-{m}" for b, m in HF_PAIRS])
def test_every_method_on_transformers_vits_with_closed_form_counts(backbone, method):
    build, attn = _hf_builders()[backbone]
    case = METHOD_CASES[method]
    torch.manual_seed(0)
    base = build()
    prefixes = _layer_prefixes(base)
    norms = {f"{n}.{p}" for n, m in base.named_modules() if isinstance(m, nn.LayerNorm) for p, _ in m.named_parameters()}
    bb = BackboneCase(backbone, build, tuple(prefixes), lambda n: n in norms)
    model = copy.deepcopy(base)
    monatune.apply(model, method)
    base_numel, numel = named_numel(base), named_numel(model)
    added = set(numel) - set(base_numel)
    if method == "lora":  # split q/v projections, each with its own low-rank update
        assert added == {f"{p}{attn}.{w}_proj.lora.lora_{m}" for p in prefixes for w in "qv" for m in "AB"}
    else:
        assert added == expected_added(bb, case)
    rule = {n for n in base_numel if case.backbone_rule(n, bb)}
    assert len(prefixes) == DEPTH and {n for n, p in model.named_parameters() if p.requires_grad} == rule | added
    assert sum(numel[n] for n in added) == DEPTH * case.added_per_block(DIM)
    out = model.train()(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    out = out.logits if hasattr(out, "logits") else out.last_hidden_state
    if rule | added:
        perturb_trainable(model)
        model.zero_grad(set_to_none=True)
        result = model(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
        outs = [result.logits] if hasattr(result, "logits") else [result.last_hidden_state, result.pooler_output]
        sum((o * torch.randn(o.shape, generator=torch.Generator().manual_seed(3))).sum() for o in outs).backward()
        unused = {n for n in rule | added if n.endswith("mask_token")}  # only for masked-image inputs
        assert {n for n, p in model.named_parameters() if p.grad is not None} == (rule | added) - unused


@needs_transformers
def test_mona_reads_the_register_tokens_of_a_transformers_dinov2():
    build, _ = _hf_builders()["hf_dinov2_registers"]
    model = monatune.apply(build(), "mona")
    mona = next(m for m in model.modules() if isinstance(m, Mona))
    model(torch.randn(1, 3, 32, 32))
    x = torch.randn(1, 1 + 4 + 16, DIM)  # class + 4 registers + a 4x4 grid
    assert mona.token_layout.hw == (4, 4) and mona.token_layout.prefix_of(x) == 5


@needs_transformers
def test_a_transformers_vit_from_a_local_folder_trains_from_a_config(tmp_path):
    from transformers import ViTConfig, ViTModel

    from monatune.configs import small_config
    from monatune.engine.config import load_config
    from monatune.engine.run import run

    torch.manual_seed(0)
    folder = tmp_path / "tiny-vit"
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=64, patch_size=16)
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)  # a backbone checkpoint; the head is new
    overrides = [f"model.backbone=hf:{folder}", "trainer.max_epochs=3", "data.options.num_train_images=128",
                 f"trainer.out_dir={tmp_path / 'run'}", "trainer.progress_bar=false", "optim.lr=3e-3"]  # fmt: skip
    result = run("fit", load_config(small_config("classification_digits"), overrides))
    losses = result["history"]["train_loss"]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    assert all(m.training for m in monatune.create_backbone(f"hf:{folder}", num_classes=3).modules())  # as timm's, not eval
    trainable = {n for n, p in result["module"].model.named_parameters() if p.requires_grad}
    assert any(".mona1." in n for n in trainable) and any(n.startswith("hf.classifier.") for n in trainable)


def test_without_transformers_the_error_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install monatune\[transformers\]"):
        monatune.create_backbone("hf:vit")


@pytest.mark.parametrize(("config", "extra"), [
    ("detection_retinanet", ["model.head_options.out_indices=[1, 2, 3]"]),
    ("semantic_segmentation_upernet", []),
], ids=["retinanet", "upernet"])  # fmt: skip
def test_a_plain_vit_feeds_the_dense_heads_through_a_simple_feature_pyramid(tmp_path, config, extra):
    """ViTDet-style pyramid (strides 4-32 from the last block's map) under RetinaNet and UperNet, from
    the shipped small configs: finite, decreasing loss; the pyramid and heads train, the ViT only its Mona."""
    from monatune.configs import small_config
    from monatune.engine.config import load_config
    from monatune.engine.run import run

    overrides = ["model.backbone=test_vit", "trainer.max_epochs=3", "data.options.num_train_images=16",
                 "data.options.num_val_images=4", f"data.root={tmp_path / 'data'}", f"trainer.out_dir={tmp_path / 'run'}",
                 "trainer.progress_bar=false", *extra]  # fmt: skip
    result = run("fit", load_config(small_config(config), overrides))
    losses = result["history"]["train_loss"]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    model = result["module"].model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("backbone.pyramid.") for n in trainable)
    vit = {n for n in trainable if n.startswith("backbone.vit.")}
    assert vit and all(".mona1." in n or ".mona2." in n for n in vit)
    assert [tuple(o.shape[-2:]) for o in model.backbone(torch.randn(1, 3, 96, 64))] == [(24, 16), (12, 8), (6, 4), (3, 2)][
        4 - len(model.backbone.strides) :]



@pytest.mark.parametrize("method", list(METHOD_CASES))
def test_every_method_on_timm_swin_v2_post_norm_blocks(method):
    """timm's swinv2 blocks are post-norm (x + norm(attn(x))): Mona still after each residual add."""
    from timm.models.swin_transformer_v2 import SwinTransformerV2

    case = METHOD_CASES[method]
    torch.manual_seed(0)
    base = SwinTransformerV2(img_size=64, patch_size=4, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=2,
                             num_classes=0)  # fmt: skip
    prefixes = tuple(f"layers.{s}.blocks.{b}." for s in range(4) for b in range(2))
    bb = BackboneCase("timm_swinv2", lambda: base, prefixes, lambda n: re.search(r"(^|\.)norm\d*\.(weight|bias)$", n) is not None)
    model = monatune.apply(copy.deepcopy(base), method)
    base_numel, numel = named_numel(base), named_numel(model)
    added = set(numel) - set(base_numel)
    assert added == expected_added(bb, case)
    rule = {n for n in base_numel if case.backbone_rule(n, bb)}  # BitFit: every name holding "bias" (q_bias, v_bias, cpb_mlp)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == rule | added
    assert sum(numel[n] for n in added) == sum(2 * case.added_per_block(16 * 2**s) for s in range(4))
    out = model(torch.randn(1, 3, 64, 64))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("suffix", ["safetensors", "pth"])
def test_a_timm_vit_loads_local_weights_and_refuses_partial_ones(tmp_path, suffix):
    from safetensors.torch import save_file

    from monatune.backbones.weights import WeightsError

    torch.manual_seed(0)
    source = monatune.create_backbone("test_vit", num_classes=0)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"vit.{suffix}"
    save_file(state, path) if suffix == "safetensors" else torch.save(state, path)
    loaded = monatune.create_backbone("test_vit", weights=path, num_classes=4)  # a new head: allowed
    for name, tensor in state.items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, msg=name)
    partial = {k: v for k, v in state.items() if not k.startswith("blocks.1.")}
    save_file(partial, tmp_path / "partial.safetensors")
    with pytest.raises(WeightsError, match="blocks.1"):
        monatune.create_backbone("test_vit", weights=tmp_path / "partial.safetensors")


@needs_transformers
@pytest.mark.parametrize("method", list(METHOD_CASES))
def test_every_method_on_transformers_swin(method):
    """transformers' SwinModel: pre-norm layers on (B, H*W, C) tokens with the grid passed along; each
    layer returns a tuple (the tuned forward keeps that); Mona acts on each stage's grid."""
    from transformers import SwinConfig, SwinModel

    case = METHOD_CASES[method]
    torch.manual_seed(0)
    base = SwinModel(SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=2))
    prefixes = tuple(f"encoder.layers.{s}.blocks.{b}." for s in range(4) for b in range(2))
    norms = {f"{n}.{p}" for n, m in base.named_modules() if isinstance(m, nn.LayerNorm) for p, _ in m.named_parameters()}
    bb = BackboneCase("hf_swin", lambda: base, prefixes, lambda n: n in norms)
    model = monatune.apply(copy.deepcopy(base), method)
    base_numel, numel = named_numel(base), named_numel(model)
    added = set(numel) - set(base_numel)
    if method == "lora":
        assert added == {f"{p}attention.{w}_proj.lora.lora_{m}" for p in prefixes for w in "qv" for m in "AB"}
    else:
        assert added == expected_added(bb, case)
    rule = {n for n in base_numel if case.backbone_rule(n, bb)}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == rule | added
    assert sum(numel[n] for n in added) == sum(2 * case.added_per_block(16 * 2**s) for s in range(4))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        same = torch.allclose(model.eval()(x).last_hidden_state, base.eval()(x).last_hidden_state, atol=1e-5)
    assert same == case.identity_at_init


@needs_transformers
@pytest.mark.parametrize("backbone", ["torchvision_vit", "hf_vit"])
def test_fuse_merges_lora_on_packed_and_split_attention_projections(backbone):
    from monatune.fuse import fuse
    from monatune.layers.lora import LoRALinear, LoRAMultiheadAttention

    torch.manual_seed(0)
    model = VITS[backbone][0].build() if backbone in VITS else _hf_builders()[backbone][0]()
    monatune.apply(model, "lora")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    x = torch.randn(2, 3, 32, 32)

    def run(m):
        out = m(x)
        return out.logits if hasattr(out, "logits") else out

    with torch.no_grad():
        expected = run(model.eval())
        merged = fuse(copy.deepcopy(model), merge_lora=True)
        assert not any(isinstance(m, (LoRALinear, LoRAMultiheadAttention)) for m in merged.modules())
        assert not any("lora" in n for n, _ in merged.named_parameters())
        torch.testing.assert_close(run(merged), expected, rtol=1e-4, atol=1e-5)


def test_a_torchvision_vit_feeds_the_pyramid_at_any_size_and_reads_as_torchvision_does():
    from monatune.backbones.dense_vit import DenseViT

    torch.manual_seed(0)
    vit = tiny_torchvision_vit().eval()
    dense = DenseViT(vit).eval()
    native = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        x = vit._process_input(native)
        own = vit.encoder(torch.cat([vit.class_token.expand(2, -1, -1), x], dim=1))  # torchvision's forward, head excluded
        torch.testing.assert_close(dense.read_tokens(vit, native).tokens, own)
        monatune.apply(dense, "mona")
        outs = dense(torch.randn(1, 3, 48, 64))  # another grid: position embedding resized
    assert [tuple(o.shape[-2:]) for o in outs] == [(12, 16), (6, 8), (3, 4), (2, 2)]
    assert all(torch.isfinite(o).all() for o in outs) and dense.patch_embedding == "vit.conv_proj"


@needs_transformers
@pytest.mark.parametrize("kind", ["vit", "dinov2_registers", "clip_vision"])
def test_a_transformers_vit_feeds_the_pyramid_at_any_size(kind):
    """transformers' base models through the same pyramid: tokens as the library gives them, Mona on
    the grid of each input (here 6 x 8 patches, prefix tokens read off the sequence), Mona and the pyramid train."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, Dinov2WithRegistersConfig, Dinov2WithRegistersModel, ViTConfig, ViTModel

    from monatune.backbones.dense_vit import DenseViT

    common = dict(hidden_size=DIM, num_hidden_layers=DEPTH, num_attention_heads=2, image_size=32, patch_size=8)
    torch.manual_seed(0)
    vit = {
        "vit": lambda: ViTModel(ViTConfig(**common, intermediate_size=2 * DIM), add_pooling_layer=False),
        "dinov2_registers": lambda: Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**common, num_register_tokens=4)),
        "clip_vision": lambda: CLIPVisionModel(CLIPVisionConfig(**common, intermediate_size=2 * DIM)),
    }[kind]()
    dense = DenseViT(vit)
    monatune.apply(dense, "mona", train_modules=["pyramid"])
    images = torch.randn(2, 3, 48, 64)
    read = dense.read_tokens(dense.vit, images)
    assert read.grid == (6, 8) and read.num_prefix == {"vit": 1, "dinov2_registers": 5, "clip_vision": 1}[kind]
    outs = dense(images)
    assert [tuple(o.shape[-2:]) for o in outs] == [(12, 16), (6, 8), (3, 4), (2, 2)]
    sum(o.square().mean() for o in outs).backward()
    trained = {n for n, p in dense.named_parameters() if p.grad is not None}
    assert trained == {n for n, p in dense.named_parameters() if p.requires_grad}
    assert any(".mona1." in n for n in trained) and any(n.startswith("pyramid.") for n in trained)


@needs_transformers
def test_create_backbone_gives_a_dense_transformers_vit_from_a_local_folder_and_refuses_its_swin(tmp_path):
    from transformers import SwinConfig, SwinModel, ViTConfig, ViTModel

    torch.manual_seed(0)
    folder = tmp_path / "tiny-vit"
    ViTModel(ViTConfig(hidden_size=DIM, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8),
             add_pooling_layer=False).save_pretrained(folder)  # fmt: skip
    dense = monatune.create_backbone(f"hf:{folder}", dense=True, out_indices=(1, 2, 3))
    assert dense.out_channels == [DIM // 2, DIM, DIM] and dense.strides == [8, 16, 32]
    assert [tuple(o.shape[-2:]) for o in dense(torch.randn(1, 3, 64, 32))] == [(8, 4), (4, 2), (2, 1)]
    swin = tmp_path / "tiny-swin"
    SwinModel(SwinConfig(embed_dim=16, depths=[1, 1], num_heads=[1, 2], image_size=32, window_size=2)).save_pretrained(swin)
    with pytest.raises(TypeError, match="dinov2"):
        monatune.create_backbone(f"hf:{swin}", dense=True)


def test_a_dense_vit_loads_local_weights_its_pyramid_new(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in monatune.create_backbone("test_vit").state_dict().items()}
    save_file(state, tmp_path / "vit.safetensors")
    dense = monatune.create_backbone("test_vit", dense=True, weights=tmp_path / "vit.safetensors")  # the pyramid: new, no error
    for name, tensor in state.items():
        torch.testing.assert_close(dense.vit.state_dict()[name], tensor, msg=name)
