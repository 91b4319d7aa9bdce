"""Backbone weights: local safetensors/timm files, original Microsoft Swin .pth keys, safe loading,
clear errors offline or on mismatch."""

import re

import pytest
import torch
from safetensors.torch import save_file
from timm.models.swin_transformer import SwinTransformer

from monatune.backbones.weights import WeightsError, load_timm_swin_weights, read_state_dict


def tiny(**kw):
    return SwinTransformer(img_size=32, patch_size=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2),
                           window_size=2, num_classes=kw.pop("num_classes", 5), strict_img_size=False, **kw)


def to_microsoft_keys(state):
    """timm keys -> the original Swin release's (downsample at the end of the previous stage, head.*)."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k)
        out[k.replace("head.fc.", "head.")] = v
    return out


def test_microsoft_pth_is_converted_and_loaded(tmp_path):
    source = tiny()
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": to_microsoft_keys(source.state_dict())}, path)
    target = tiny(num_classes=7)  # other head: skipped, everything else loaded
    left = load_timm_swin_weights(target, path)
    assert left == ["head.fc.bias", "head.fc.weight"]
    for k, v in source.state_dict().items():
        if not k.startswith("head"):
            torch.testing.assert_close(target.state_dict()[k], v, msg=k)


def test_safetensors_file_roundtrip(tmp_path):
    source = tiny()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = tiny()
    assert load_timm_swin_weights(target, path) == []
    x = torch.randn(1, 3, 32, 32)
    source.eval(), target.eval()
    torch.testing.assert_close(source(x), target(x))


def test_pickled_code_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": Evil()}}, path)
    with pytest.raises(WeightsError, match="weights_only=True"):
        read_state_dict(path)


def test_mismatched_backbone_names_keys(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny().state_dict().items()}, str(path))
    wider = SwinTransformer(img_size=32, patch_size=4, embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2),
                            window_size=2, num_classes=5, strict_img_size=False)
    with pytest.raises(WeightsError, match=r"63 tensor\(s\) with mismatched shapes, e.g. patch_embed.proj.weight: file \(16, 3, 4, 4\) vs model \(24, 3, 4, 4\)") as error:
        load_timm_swin_weights(wider, path)
    assert "\n" not in str(error.value)
    with pytest.raises(WeightsError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")


def test_offline_hub_gives_a_clear_error(monkeypatch, no_network):
    import monatune

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="not in the local cache and HF_HUB_OFFLINE is set; .*--weights"):
        monatune.create_backbone("swin_tiny_patch4_window7_224.ms_in22k", pretrained=True)


# --- every tensor of the built backbone comes from the file, or the build fails ----------------------

TINY = {"embed_dim": 16, "num_heads": (1, 1, 2, 2), "window_size": 2, "img_size": 32}


def _save(state: dict[str, torch.Tensor], path) -> str:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return str(path)


def test_weights_of_a_shallower_swin_are_refused_unless_allowed(tmp_path):
    import monatune

    path = _save(tiny(num_classes=0).state_dict(), tmp_path / "shallow.safetensors")  # depths 1-1-1-1
    build = lambda **kw: monatune.create_backbone(  # noqa: E731
        "swin_tiny_patch4_window7_224", weights=path, depths=(1, 1, 2, 1), **TINY, **kw
    )
    with pytest.raises(WeightsError, match=r"leaves 13 of 80 tensors of swin_tiny_patch4_window7_224 at their initial values.*layers\.2\.blocks\.1\.norm1\.weight.*allow_missing=\['layers\.2\.blocks\.1\.\*'\]") as error:
        build()
    assert "\n" not in str(error.value)
    model = build(allow_missing=["layers.2.blocks.1.*"])
    for key, value in load_state(path).items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)


def load_state(path) -> dict[str, torch.Tensor]:
    return read_state_dict(path)


@pytest.mark.parametrize("name", ["swin_tiny_patch4_window7_224", "swin_nano_synthetic", "swin_t"])
def test_an_empty_weights_file_is_refused(tmp_path, name):
    import monatune

    path = _save({}, tmp_path / "empty.safetensors")
    with pytest.raises(WeightsError, match="empty.safetensors holds no tensors"):
        monatune.create_backbone(name, weights=path)


def test_a_partial_torchvision_file_is_refused(tmp_path):
    import monatune

    path = _save({"features.0.0.weight": torch.zeros(96, 3, 4, 4)}, tmp_path / "partial.safetensors")
    with pytest.raises(WeightsError, match=r"leaves \d+ of \d+ tensors of swin_t at their initial values"):
        monatune.create_backbone("swin_t", weights=path, dense=True)


def test_a_dense_backbone_needs_everything_but_its_stage_norms(tmp_path):
    import monatune
    from monatune.backbones.weights import DENSE_STAGE_NORMS

    source = tiny(num_classes=0)
    path = _save(source.state_dict(), tmp_path / "full.safetensors")
    model = monatune.create_backbone("swin_tiny_patch4_window7_224", weights=path, dense=True, depths=(1, 1, 1, 1), **TINY)
    new = sorted(set(model.state_dict()) - set(source.state_dict()))
    assert new == [f"norm{i}.{p}" for i in range(4) for p in ("bias", "weight")]
    assert DENSE_STAGE_NORMS == ("norm0.*", "norm1.*", "norm2.*", "norm3.*")
    # the same file without one stage's blocks is refused for the dense model too
    partial = _save({k: v for k, v in source.state_dict().items() if not k.startswith("layers.3.blocks")},
                    tmp_path / "partial.safetensors")
    with pytest.raises(WeightsError, match=r"layers\.3\.blocks\.0\."):
        monatune.create_backbone("swin_tiny_patch4_window7_224", weights=partial, dense=True, depths=(1, 1, 1, 1), **TINY)


def test_swin_t_weights_on_the_nano_backbone_give_one_error_line(tmp_path):
    import monatune

    swin_t_like = {  # shapes of timm's Swin-T: 3 heads in stage 0, six blocks in stage 2 (nano has four)
        "patch_embed.proj.weight": torch.zeros(96, 3, 4, 4),
        "layers.0.blocks.0.attn.relative_position_bias_table": torch.zeros(169, 3),
        "layers.2.blocks.5.attn.relative_position_bias_table": torch.zeros(169, 12),
    }
    path = _save(swin_t_like, tmp_path / "swin_tiny.safetensors")
    with pytest.raises(WeightsError, match=r"swin_tiny.safetensors does not fit this backbone.*patch_embed.proj.weight: file \(96, 3, 4, 4\) vs model \(32, 3, 4, 4\)") as error:
        monatune.create_backbone("swin_nano_synthetic", weights=path, num_classes=4)
    assert "\n" not in str(error.value)
    deeper = _save({"layers.2.blocks.5.attn.relative_position_bias_table": torch.zeros(49, 4)}, tmp_path / "deeper.safetensors")
    with pytest.raises(WeightsError, match=r"1 key\(s\) the backbone lacks, e.g. layers.2.blocks.5.attn.relative_position_bias_table"):
        monatune.create_backbone("swin_nano_synthetic", weights=deeper)


def test_torchvision_file_with_its_head_loads_the_head_when_classes_match(tmp_path):
    from monatune.backbones.weights import load_torchvision_swin_weights
    from torchvision.models import swin_transformer as tv

    def build(num_classes):
        return tv.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                                  window_size=[2, 2], num_classes=num_classes)

    source = build(5)
    path = _save(source.state_dict(), tmp_path / "tv.safetensors")
    assert load_torchvision_swin_weights(build(5), path) == []
    assert load_torchvision_swin_weights(build(7), path) == ["head.bias", "head.weight"]


# --- pretrained hub weights: the local cache first, a fast error offline ------------------------------


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty Hugging Face cache, no proxy, no route to the hub, and any download attempt fails the test."""
    import socket

    import huggingface_hub.constants
    import timm.models._hub

    def refuse(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    def no_download(*args, **kwargs):
        raise AssertionError("the hub client was asked to download")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", no_download)
    return tmp_path / "hub"


def test_unreachable_hub_fails_at_once_with_the_weights_hint(no_network):
    import monatune

    with pytest.raises(WeightsError, match=r"not in the local cache and the hub cannot be reached \(huggingface.co:443: .*Name or service not known\); .*--weights PATH"):
        monatune.create_backbone("swin_tiny_patch4_window7_224.ms_in22k", pretrained=True)


def test_cached_hub_weights_load_without_the_network(no_network):
    import monatune

    tiny_kw = {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 2, 2), "window_size": 2, "img_size": 32}
    source = SwinTransformer(num_classes=1000, strict_img_size=False, **tiny_kw)
    snapshot = no_network / "models--timm--swin_tiny_patch4_window7_224.ms_in1k" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abc")
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(snapshot / "model.safetensors"))
    model = monatune.create_backbone("swin_tiny_patch4_window7_224", pretrained=True, num_classes=1000, **tiny_kw)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)
