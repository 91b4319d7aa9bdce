"""The model section reaches the backbone builder: allow_missing (weights that leave tensors at init)."""

import pytest

from monatune.engine import build
from monatune.engine.config import ConfigError, parse_config


def test_allow_missing_reaches_create_backbone(monkeypatch):
    seen = {}
    monkeypatch.setattr(build, "create_backbone", lambda name, **kw: seen.update(kw, name=name))
    cfg = parse_config({"model": {"backbone": "swin_t", "weights": "w.pth", "allow_missing": ["features.7.*"]}})
    build.backbone_from_config(cfg.model)
    assert seen["allow_missing"] == ["features.7.*"] and seen["weights"] == "w.pth" and seen["name"] == "swin_t"
    with pytest.raises(ConfigError, match="model.allow_missing"):
        parse_config({"model": {"allow_missing": "layers.*"}})


def test_adapter_files_of_a_fit_record_backbone_and_task():
    from monatune.engine.run import backbone_name

    assert backbone_name(parse_config({"model": {"backbone": "swin_t"}})) == "swin_t"
    named = parse_config({"model": {"backbone": "swin_base_patch4_window7_224", "pretrained": "swin_base_patch4_window7_224.ms_in22k"}})
    assert backbone_name(named) == "swin_base_patch4_window7_224.ms_in22k"
    assert backbone_name(parse_config({"model": {"pretrained": True}})) == "swin_tiny_patch4_window7_224"


def test_a_local_weights_file_replaces_the_hub_download(monkeypatch):
    """Paper configs name the hub tag in model.pretrained; --weights FILE must then not touch the hub
    (offline it would be refused, online downloaded and overwritten)."""
    seen = {}
    monkeypatch.setattr(build, "create_backbone", lambda name, **kw: seen.update(kw, name=name))
    tag = "swin_large_patch4_window7_224.ms_in22k"
    build.backbone_from_config(parse_config({"model": {"pretrained": tag, "weights": "swin_l_22k.pth"}}).model)
    assert (seen["name"], seen["pretrained"], seen["weights"]) == (tag, False, "swin_l_22k.pth")
    build.backbone_from_config(parse_config({"model": {"pretrained": tag}}).model)
    assert (seen["pretrained"], seen["weights"]) == (True, None)


def test_an_adapter_whose_head_differs_names_the_tensor(tmp_path):
    import torch

    import monatune
    from monatune.adapter_io import AdapterMismatchError

    ten = monatune.apply(monatune.create_backbone("swin_nano_synthetic", num_classes=10), "mona", train_modules=["head"])
    monatune.save_adapter(ten, tmp_path / "a.safetensors", backbone="swin_nano_synthetic", task="classification")
    with pytest.raises(AdapterMismatchError, match=r"head\.fc\.weight: file \(10, 256\) vs model \(37, 256\)"):
        monatune.load_adapter(monatune.create_backbone("swin_nano_synthetic", num_classes=37), tmp_path / "a.safetensors")
    assert torch.is_tensor(ten.head.fc.weight)
