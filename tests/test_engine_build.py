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
