"""SPEC §8.9 (weight decay per task), §8.10 (LoRand settings), §8.6 (sync BatchNorm key): the defaults
as SPEC states them, checked on built models and configs."""

import math

import pytest
import torch

import monatune
from monatune.engine.config import ConfigError, parse_config
from monatune.engine.optim import default_no_decay, parameter_groups
from monatune.layers.lorand import LoRandAdapter, LoRandLinear

from engine_helpers import tiny_swin


def _decayed_names(model, no_decay):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)] for g in parameter_groups(model, 0.05, no_decay) if g["weight_decay"] > 0 for p in g["params"]}


def test_dense_tasks_decay_biases_but_not_norms_or_position_tables():
    # SPEC §8.9: detection/segmentation/oriented exempt only norms (mmdet/mmseg custom_keys: "norm" in the
    # parameter name), relative-position tables, abs. position embeddings; biases are decayed.
    model = monatune.apply(tiny_swin(), "bitfit", train_modules=["head"])
    decayed = _decayed_names(model, default_no_decay("detection"))
    biases = {n for n, p in model.named_parameters() if p.requires_grad and n.endswith(".bias") and "norm" not in n}
    tables = {n for n, p in model.named_parameters() if p.requires_grad and n.endswith("relative_position_bias_table")}
    norms = {n for n, p in model.named_parameters() if p.requires_grad and "norm" in n}
    assert biases and tables and norms
    assert biases <= decayed  # e.g. the qkv and MLP biases are decayed
    assert not (tables | norms) & decayed
    assert "head.fc.weight" in decayed
    for task in ("instance_segmentation", "semantic_segmentation", "oriented"):
        assert set(default_no_decay(task)) == {"norm_name", "rel_pos", "abs_pos"}


def test_dense_heads_batchnorm_is_decayed_as_the_public_code_names_it_bn():
    """mmcv's ConvModule names its BatchNorm ``bn``: the public 'norm' key does not exempt it. Ours (torchvision's
    Conv2dNormActivation, an index name) is decayed too; the classification rule exempts every norm layer."""
    from torchvision.ops import Conv2dNormActivation

    head = torch.nn.Sequential(Conv2dNormActivation(4, 8, 3, norm_layer=torch.nn.BatchNorm2d))
    bn = {f"0.1.{leaf}" for leaf in ("weight", "bias")}
    assert bn <= _decayed_names(head, default_no_decay("semantic_segmentation"))
    assert not bn & _decayed_names(head, default_no_decay("classification"))


def test_h2rbox_v2p_default_decays_everything():
    # SPEC §8.9: H2RBox-v2p decays everything, also without optim.no_decay in the config
    assert default_no_decay("oriented", "h2rbox_v2", {}) == ()
    assert default_no_decay("oriented", "h2rbox_v2", {"variant": "v2"}) == ("norm_name", "rel_pos", "abs_pos")
    assert default_no_decay("oriented", "oriented_rcnn", {}) == ("norm_name", "rel_pos", "abs_pos")


def test_classification_keeps_biases_and_norms_undecayed():
    model = monatune.apply(tiny_swin(), "normtuning", train_modules=["head"])
    decayed = _decayed_names(model, default_no_decay("classification"))
    assert decayed == {"head.fc.weight"}  # norm weights/biases and the head bias are exempt


def test_empty_no_decay_decays_every_trainable_tensor():
    # H2RBox-v2p decays everything (SPEC §8.9)
    model = monatune.apply(tiny_swin(), "normtuning", train_modules=["head"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert _decayed_names(model, []) == trainable


def test_no_decay_config_key_is_checked():
    cfg = parse_config({"optim": {"no_decay": ["norm", "rel_pos"]}})
    assert cfg.optim.no_decay == ["norm", "rel_pos"]
    with pytest.raises(ConfigError, match=r"optim.no_decay\[1\].*'biases'.*norm, norm_name, bias, rel_pos, abs_pos"):
        parse_config({"optim": {"no_decay": ["norm", "biases"]}})


def test_sync_batchnorm_key_reaches_the_trainer():
    from monatune.engine.trainer import build_trainer

    cfg = parse_config({"trainer": {"sync_batchnorm": True, "accelerator": "cpu", "devices": 1}})
    trainer = build_trainer(cfg, checkpoints=False, logging=False)
    assert trainer._accelerator_connector._layer_sync is not None  # Lightning converts BatchNorm under DDP
    plain = build_trainer(parse_config({"trainer": {"accelerator": "cpu", "devices": 1}}), checkpoints=False, logging=False)
    assert plain._accelerator_connector._layer_sync is None
    with pytest.raises(ConfigError, match="sync_batchnorm"):
        parse_config({"trainer": {"sync_batchnorm": "yes"}})


def test_lorand_star_setting_counts_spec_figure():
    # SPEC §8.10: STAR-MMRotate's LoRand (beta 8) has 2,370,816 trainable parameters on Swin-B
    model = monatune.create_backbone("swin_base_patch4_window7_224", dense=True, meta=True)
    monatune.apply(model, "lorand", beta=8, init="kaiming", bias_init="uniform")
    assert monatune.count_parameters(model)[0] == 2_370_816


def test_lorand_kaiming_is_not_an_identity_and_identity_is():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 32)
    assert torch.equal(LoRandAdapter(32, beta=8)(x), x)
    assert not torch.allclose(LoRandAdapter(32, beta=8, init="kaiming")(x), x)


def test_lorand_uniform_bias_has_linear_bounds():
    torch.manual_seed(0)
    layer = LoRandLinear(400, 300, beta=8, bias_init="uniform")
    bound = 1 / math.sqrt(400)
    assert layer.bias.abs().max() <= bound
    assert layer.bias.abs().max() > 0.9 * bound  # spread over the whole interval, not zeros
    assert torch.count_nonzero(LoRandLinear(400, 300, beta=8).bias) == 0
    with pytest.raises(ValueError, match="bias_init 'normal'.*zeros, uniform"):
        LoRandLinear(4, 4, bias_init="normal")
    with pytest.raises(ValueError, match="init 'xavier'.*identity, kaiming"):
        LoRandAdapter(4, init="xavier")


def test_params_cli_counts_method_options(capsys):
    from monatune.cli.main import main

    assert main(["params", "--backbone", "swin_base_patch4_window7_224", "--dense", "--method", "lorand",
                 "--option", "beta=8", "--json"]) == 0  # fmt: skip
    import json

    assert json.loads(capsys.readouterr().out)[0]["trainable"] == 2_370_816
    assert main(["params", "--method", "mona", "--option", "beta=8"]) == 2
    assert "no counted method has it" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["full", "bitfit", "normtuning"])
def test_freeze_patch_embed_keeps_the_stem_frozen_and_round_trips(tmp_path, method):
    # SPEC §8.11: the public VOC configs freeze the patch embedding (frozen_stages=1)
    from monatune.tuning import apply_with_heads

    def detector():
        torch.manual_seed(0)
        model = torch.nn.Module()
        model.backbone = monatune.create_backbone("swin_nano_synthetic", dense=True)
        model.head = torch.nn.Linear(4, 2)
        return model

    plain = apply_with_heads(detector(), method)
    stem = [n for n, p in plain.named_parameters() if n.startswith("backbone.patch_embed.") and p.requires_grad]
    assert stem  # the method would train part of the stem
    frozen = apply_with_heads(detector(), method, frozen_modules=["backbone.patch_embed"])
    trained = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert not any(n.startswith("backbone.patch_embed.") for n in trained)
    assert trained == {n for n, p in plain.named_parameters() if p.requires_grad} - set(stem)
    monatune.save_adapter(frozen, tmp_path / "a.safetensors")
    loaded = monatune.load_adapter(detector(), tmp_path / "a.safetensors")
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == trained


def test_freeze_patch_embed_config_key_reaches_the_detector():
    from monatune.engine.config import load_config
    from monatune.engine.run import task_builders

    root = __import__("pathlib").Path(__file__).parents[1]
    cfg = load_config(root / "configs/small/detection_retinanet.yaml", ["model.method=full", "model.freeze_patch_embed=true"])
    module = task_builders("detection")[0](cfg)
    stem = [p.requires_grad for n, p in module.model.named_parameters() if n.startswith("backbone.patch_embed.")]
    assert stem and not any(stem)
    assert any(p.requires_grad for n, p in module.model.named_parameters() if n.startswith("backbone.layers."))


def test_params_cli_counts_a_configs_method_and_stages(capsys):
    """--config: the config's backbone, method, options and returned stages (VOC reads stages 2-4, so
    normtuning trains SPEC §4's 89,088 Swin-L norm parameters minus stage 1's output norm, 2 x 192)."""
    import json

    from monatune.cli.main import main

    root = __import__("pathlib").Path(__file__).parents[1] / "configs" / "paper"
    assert main(["params", "--config", str(root / "detection/voc_retinanet_swin_l/normtuning.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["trainable"] == 89_088 - 2 * 192
    assert main(["params", "--config", str(root / "oriented/star/oriented_rcnn/lorand.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["trainable"] == 2_370_816  # SPEC §8.10


def test_freeze_patch_embed_in_classification_and_in_params(tmp_path, capsys):
    import json

    from monatune.cli.main import main
    from monatune.engine.config import load_config
    from monatune.engine.run import task_builders

    root = __import__("pathlib").Path(__file__).parents[1] / "configs"
    cfg = load_config(root / "small/classification_digits.yaml", ["model.method=normtuning", "model.freeze_patch_embed=true"])
    model = task_builders("classification")[0](cfg).model
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("patch_embed."))
    assert any(p.requires_grad for n, p in model.named_parameters() if n.startswith("layers."))
    # params --config: SPEC §4's dense Swin-L normtuning count (89,088) minus stage 1's norm (VOC reads 2-4)
    # minus the patch-embedding LayerNorm (2 x 192)
    voc = root / "paper/detection/voc_retinanet_swin_l/normtuning.yaml"
    text = voc.read_text().replace("drop_path_rate: 0.2", "drop_path_rate: 0.2\n  freeze_patch_embed: true")
    (tmp_path / "voc.yaml").write_text(text)
    assert main(["params", "--config", str(tmp_path / "voc.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["trainable"] == 89_088 - 2 * 192 - 2 * 192
