"""Wrong settings end in one line, ``monatune <cmd>: error: ...`` naming the value and the fix (exit 2);
``--debug`` prints the traceback instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from monatune.cli.main import main
from monatune.engine.config import ConfigError, load_config, parse_config

DIGITS_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "small" / "classification_digits.yaml")


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("trainer.devices=0", ["trainer.devices", "0", "-1 or auto", "'0,1'"]),
        ("trainer.devices='0'", ["trainer.devices", "'0'"]),
        ("trainer.devices=-2", ["trainer.devices", "-2"]),
        ("trainer.devices=gpus", ["trainer.devices", "gpus"]),
        ("trainer.num_nodes=0", ["trainer.num_nodes", "at least 1"]),
        ("trainer.accelerator=gpuu", ["trainer.accelerator", "gpuu", "cpu, gpu"]),
        ("data.image_size=50", ["data.image_size", "50", "patch size 4", "48 or 52"]),
        ("data.image_size=2", ["data.image_size", "2", "use 4 or more"]),
    ],
)
def test_config_refuses_what_lightning_or_the_swin_would_crash_on(override, fragments):
    with pytest.raises(ConfigError) as info:
        load_config(DIGITS_CONFIG, [override])
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("devices", [1, 2, -1, "auto", "0,1", "1,", "3"])
def test_valid_device_settings_pass(devices):
    assert load_config(DIGITS_CONFIG, [f"trainer.devices={devices!r}" if isinstance(devices, str) else f"trainer.devices={devices}"])


def test_eval_crop_larger_than_the_resize_is_refused_naming_both():
    with pytest.raises(ConfigError, match=r"data.image_size 288 > data.resize_size 256.*resize_size to 288 or more"):
        parse_config({"data": {"image_size": 288}})
    assert parse_config({"data": {"image_size": 288, "resize_size": 320}}).data.image_size == 288
    # digits are resized straight to image_size: resize_size plays no part
    assert parse_config({"data": {"dataset": "digits", "image_size": 288}}).data.image_size == 288
    # dense tasks pad inside the model: neither rule applies
    assert parse_config({"task": "detection", "data": {"image_size": 50}}).data.image_size == 50


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--trainer.devices", "0"], ["trainer.devices: 0", "-1 or auto"]),
        (["--data.image_size", "50"], ["data.image_size: 50", "48 or 52"]),
        (["--model.head_options", "{pool: avg}"], ["model.head_options", "pool", "takes no options"]),
    ],
)
def test_cli_prints_one_line_and_exits_2(args, fragments, capsys, tmp_path):
    assert main(["validate", "-c", DIGITS_CONFIG, "--trainer.out_dir", str(tmp_path), *args]) == 2
    output = capsys.readouterr().err
    err = output.strip().splitlines()[-1]  # after any warning line
    assert err.startswith("monatune validate: error: ") and "Traceback" not in output
    for fragment in fragments:
        assert fragment in err


def test_debug_prints_the_traceback_anywhere_on_the_line(capsys, tmp_path):
    for argv in (["--debug", "validate", "-c", DIGITS_CONFIG], ["validate", "-c", DIGITS_CONFIG, "--debug"]):
        assert main([*argv, "--data.image_size", "50", "--trainer.out_dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "ConfigError" in err and "data.image_size: 50" in err


def test_lightning_misconfiguration_and_multi_line_messages_are_one_line():
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from monatune.cli.main import is_user_error, one_line

    exc = MisconfigurationException("No supported gpu backend found!")
    assert is_user_error(exc) and one_line(exc) == "MisconfigurationException: No supported gpu backend found!"
    assert one_line(ValueError("cfg.yaml: not valid YAML: bad\n  in line 2\n")) == "cfg.yaml: not valid YAML: bad in line 2"
    assert not is_user_error(KeyError("a bug, not a wrong input"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_gpu_accelerator_without_a_gpu_names_the_fix():
    from monatune.engine.preflight import check_accelerator

    cfg = load_config(DIGITS_CONFIG, ["trainer.accelerator=gpu"])
    with pytest.raises(ConfigError, match=r"trainer.accelerator: 'gpu' but this machine has no CUDA GPU; use --trainer.accelerator cpu"):
        check_accelerator(cfg.trainer)
    check_accelerator(load_config(DIGITS_CONFIG).trainer)  # cpu: nothing to find


def test_more_devices_than_gpus_names_the_count(monkeypatch):
    from monatune.engine.preflight import check_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"trainer.devices: 4 but this machine has 2 CUDA GPU\(s\); use --trainer.devices 2"):
        check_accelerator(load_config(DIGITS_CONFIG, ["trainer.accelerator=gpu", "trainer.devices=4"]).trainer)
    check_accelerator(load_config(DIGITS_CONFIG, ["trainer.accelerator=gpu", "trainer.devices=2"]).trainer)


def test_abbreviated_flags_are_refused(capsys):
    """argparse accepts unique prefixes by default; a README or script with `--qu` must not pass for `--quick`."""
    from monatune.cli.main import main

    with pytest.raises(SystemExit):
        main(["demo", "--qu"])
    assert "--qu" in capsys.readouterr().err
