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
    with pytest.raises(WeightsError, match=r"(?s)63 tensor\(s\) with mismatched shapes.*layers.0.blocks.0.attn.qkv.weight: file \(48, 16\) vs model \(72, 24\)"):
        load_timm_swin_weights(wider, path)
    with pytest.raises(WeightsError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")


def test_offline_hub_gives_a_clear_error(monkeypatch):
    import monatune

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="--weights"):
        monatune.create_backbone("swin_tiny_patch4_window7_224.ms_in22k", pretrained=True)
