"""``monatune smoke``: a paper config at its real image sizes with the embedded backbone, parameter counts
in closed form, a NaN loss and a crash exit non-zero with the reason, synthetic layouts read by the
config's own data module, random weights when the pretrained ones are not on the machine."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from monatune.backbones.embedded import embedded_model_card
from monatune.cli.main import main
from monatune.cli.params import parameter_table
from monatune.engine.config import ModelConfig, load_config
from monatune.engine.smoke import smoke_config, weights_at_hand

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs" / "paper"
VOC07_CLS = str(PAPER / "classification" / "voc07_cls" / "mona.yaml")
NANO = ["--model.backbone", "swin_nano_synthetic", "--model.pretrained", "false"]
NANO_OVERRIDES = ["model.backbone=swin_nano_synthetic", "model.pretrained=false"]

# swin_nano_synthetic: stage widths and depths; Mona = 133 d + 9,728 per module, two per block (SPEC §1-2)
NANO_DIMS, NANO_DEPTHS = (32, 64, 128, 256), (2, 2, 4, 2)
NANO_MONA = sum(2 * depth * (133 * d + 9728) for d, depth in zip(NANO_DIMS, NANO_DEPTHS))


def _smoke_json(capsys, *args: str) -> dict:
    rc = main(["smoke", "--config", VOC07_CLS, "--json", *args, *NANO])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_smoke_paper_classification_config_at_real_size(capsys) -> None:
    report = _smoke_json(capsys, "--steps", "3", "--device", "cpu")
    assert report["task"] == "classification" and report["method"] == "mona"
    assert report["device"] == "cpu" and report["precision"] == "32-true" and report["batch_size"] == 1
    assert report["image_sizes"] == {"trainval": [256, 256], "test": [256, 256]}  # resize_size of the recipe
    assert len(report["losses"]) == len(report["step_seconds"]) == 3
    assert all(math.isfinite(v) and v > 0 for v in report["losses"])
    assert report["eval_batches"] == 1 and "val/top1" in report["eval_metrics"]
    assert report["peak_memory_mb"] > 0
    head = 256 * 20 + 20  # Linear(256 -> 20 VOC classes)
    params = report["params"]
    assert params["backbone_trainable"] == NANO_MONA == 518_016
    assert params["backbone_trainable"] == parameter_table("swin_nano_synthetic", False, ["mona"])[0]["trainable"]
    assert params["heads_trainable"] == head
    assert params["trainable"] == NANO_MONA + head
    assert params["total"] == embedded_model_card("swin_nano_synthetic")["parameters_without_head"] + NANO_MONA + head


def test_smoke_median_is_over_steps_two_to_n(capsys) -> None:
    report = _smoke_json(capsys, "--steps", "4", "--batch-size", "2", "--model.method", "lora")
    steps = report["step_seconds"]
    assert report["batch_size"] == 2 and len(steps) == 4
    later = sorted(steps[1:])
    assert report["median_step_seconds"] == later[1]


@pytest.mark.slow
def test_smoke_dense_paper_config_at_real_size(capsys) -> None:
    """DOTA rotated RetinaNet: 1024 x 1024 patches, the full FPN and heads, the embedded Swin (~20 s)."""
    config = str(PAPER / "oriented" / "dota" / "rotated_retinanet" / "mona.yaml")
    rc = main(["smoke", "--config", config, "--json", "--steps", "2", *NANO])
    out = capsys.readouterr()
    assert rc == 0, out.err
    report = json.loads(out.out)
    assert report["image_sizes"] == {"train": [1024, 1024], "val": [1024, 1024], "test": [1024, 1024]}
    assert len(report["losses"]) == 2 and all(math.isfinite(v) for v in report["losses"])
    assert report["eval_batches"] == 1 and "val/map" in report["eval_metrics"]
    assert report["params"]["backbone_trainable"] == NANO_MONA
    assert report["params"]["trainable"] == NANO_MONA + report["params"]["heads_trainable"]


def test_smoke_table_output(capsys) -> None:
    rc = main(["smoke", "--config", VOC07_CLS, "--steps", "2", *NANO])
    out = capsys.readouterr().out
    assert rc == 0
    for text in ("518,016", "embedded pretrained weights", "median of steps 2..N", "peak RSS", "every loss finite"):
        assert text in out


def test_smoke_nan_loss_exits_nonzero_naming_the_step(capsys, monkeypatch) -> None:
    from monatune.tasks.classification.module import ClassificationModule

    real = ClassificationModule.compute_losses

    def nan_from_second_step(self, batch):
        losses = real(self, batch)
        return {k: v * float("nan") for k, v in losses.items()} if self.global_step >= 1 else losses

    monkeypatch.setattr(ClassificationModule, "compute_losses", nan_from_second_step)
    rc = main(["smoke", "--config", VOC07_CLS, "--steps", "3", *NANO])
    err = capsys.readouterr().err
    assert rc == 1
    assert "FAILED: NonFiniteLossError: smoke step 2 of 3" in err and "nan" in err


def test_smoke_crash_exits_nonzero_with_the_reason(capsys, monkeypatch) -> None:
    from monatune.tasks.classification.module import ClassificationModule

    def crash(self, batch):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(ClassificationModule, "compute_losses", crash)
    rc = main(["smoke", "--config", VOC07_CLS, "--steps", "1", *NANO])
    err = capsys.readouterr().err
    assert rc == 1 and "monatune smoke: FAILED: RuntimeError: CUDA out of memory (simulated)" in err


def test_smoke_config_changes_only_what_smoke_must(tmp_path) -> None:
    cfg = load_config(PAPER / "semantic_segmentation" / "ade20k_upernet_swin_l_160k" / "mona.yaml", NANO_OVERRIDES)
    plan = smoke_config(cfg, tmp_path, steps=3, device="cpu", batch_size=None)
    t, d = plan.cfg.trainer, plan.cfg.data
    assert (t.max_steps, t.limit_train_batches, t.limit_val_batches, t.devices, t.accelerator) == (3, 3, 1, 1, "cpu")
    assert t.precision == "32-true" and Path(t.out_dir).parent == tmp_path
    assert d.batch_size == 2  # UperNet's BatchNorm over pooled 1x1 maps needs two images
    assert d.num_workers == 0 and Path(d.root).parent == tmp_path
    assert plan.cfg.model == cfg.model and plan.cfg.optim == cfg.optim
    assert d.options == cfg.data.options and d.eval_batch_size == cfg.data.eval_batch_size
    with pytest.raises(ValueError, match="at least 2 images"):
        smoke_config(cfg, tmp_path / "b1", steps=3, device="cpu", batch_size=1)
    with pytest.raises(ValueError, match="--steps"):
        smoke_config(cfg, tmp_path / "s0", steps=0, device="cpu", batch_size=None)


def _first_items(cfg, plan) -> tuple:
    from monatune.engine.run import task_builders

    data = task_builders(cfg.task)[1](plan.cfg)
    data.prepare_data()
    data.setup("fit")
    return data.train_set, data.val_set


@pytest.mark.parametrize(
    "config, train_hw, n_train",
    [
        ("detection/voc_retinanet_swin_l/mona.yaml", (600, 1000), 2),  # one per VOC year (07+12)
        ("instance_segmentation/coco_cascade_mask_rcnn_swin_b_3x/mona.yaml", None, 1),
        ("semantic_segmentation/ade20k_upernet_swin_l_160k/mona.yaml", (512, 512), 2),  # batch 2
        ("oriented/dota/oriented_rcnn/mona.yaml", (1024, 1024), 2),  # train+val folders, one patch each
        ("oriented/star/h2rbox_v2/mona.yaml", (1024, 1024), 1),
    ],
)
def test_dense_layouts_are_read_by_the_configs_own_data_module(tmp_path, config, train_hw, n_train) -> None:
    cfg = load_config(PAPER / config, NANO_OVERRIDES)
    plan = smoke_config(cfg, tmp_path, steps=1, device="cpu", batch_size=2 if cfg.task == "semantic_segmentation" else 1)
    train, val = _first_items(cfg, plan)
    assert len(train) == n_train and len(val) >= 1
    image = train[0][0]
    assert image.shape[0] == 3
    if train_hw is not None:
        assert tuple(image.shape[-2:]) == train_hw
    else:  # COCO multi-scale training: short side from short_sides or a crop branch, long side <= 1333
        assert max(image.shape[-2:]) <= 1333
    val_image = val[0][0]
    assert max(val_image.shape[-2:]) >= 683  # eval reads the full-size image


def test_random_weights_when_pretrained_are_not_cached(tmp_path, monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    m = ModelConfig(backbone="swin_base_patch4_window7_224", pretrained="swin_base_patch4_window7_224.ms_in22k")
    used, note = weights_at_hand(m)
    assert note.startswith("RANDOM weights") and "not in the local cache" in note
    assert used.pretrained is False and used.weights is None and used.backbone == "swin_base_patch4_window7_224.ms_in22k"
    repo = tmp_path / "hf" / "models--timm--swin_base_patch4_window7_224.ms_in22k"  # the hub cache's layout
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    (repo / "snapshots" / "0123abcd" / "model.safetensors").write_bytes(b"")
    assert weights_at_hand(m) == (m, "pretrained swin_base_patch4_window7_224.ms_in22k (local cache)")
    missing, note = weights_at_hand(ModelConfig(weights=str(tmp_path / "nope.safetensors")))
    assert missing.weights is None and "not found" in note
