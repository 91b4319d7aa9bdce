"""The CLI on the embedded backbone: a killed fit resumes where it stopped; DDP with 2 CPU processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from monatune.engine.checkpoint_io import SafeCheckpointIO


def write_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("val", 8)):
        for c in range(2):
            for i in range(n // 2):
                arr = (rng.random((40, 40, 3)) * 60 + 150 * c).astype(np.uint8)
                path = root / split / f"class{c}" / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(path)


def write_config(tmp_path: Path, **trainer) -> Path:
    write_folder(tmp_path / "data")
    cfg = {
        "task": "classification",
        "model": {"backbone": "swin_nano_synthetic", "method": "mona", "num_classes": 2, "drop_path_rate": 0.0},
        "data": {"dataset": "imagefolder", "root": str(tmp_path / "data"), "image_size": 32, "resize_size": 36,
                 "batch_size": 4, "num_workers": 0},
        "optim": {"lr": 1e-3, "schedule": "cosine", "warmup_steps": 2},
        "trainer": {"max_epochs": 3, "out_dir": str(tmp_path / "run"), "accelerator": "cpu", "devices": 1,
                    "progress_bar": False, **trainer},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def monatune_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "monatune.cli.main", *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def test_killed_fit_resumes_from_last_checkpoint(tmp_path):
    cfg = write_config(tmp_path)
    ckpt_dir = tmp_path / "run" / "checkpoints"
    proc = subprocess.Popen(monatune_cmd("fit", "--config", str(cfg)), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpt_dir / "last.ckpt").exists() and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: the checkpoint must be whole already
    proc.wait()
    first = SafeCheckpointIO().load_checkpoint(ckpt_dir / "last.ckpt")
    assert first["epoch"] >= 0 and first["global_step"] >= 4
    done = subprocess.run(monatune_cmd("fit", "--config", str(cfg)), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    final = SafeCheckpointIO().load_checkpoint(ckpt_dir / "last.ckpt")
    assert final["global_step"] == 3 * 4  # 16 images / batch 4, 3 epochs: same as an unbroken run
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history["train_loss"]) == 3 and all(np.isfinite(history["train_loss"]))


def test_ddp_two_cpu_processes(tmp_path):
    cfg = write_config(tmp_path, devices=2, strategy="ddp", max_epochs=1)
    done = subprocess.run(monatune_cmd("fit", "--config", str(cfg)), env=ENV, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = SafeCheckpointIO().load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    digests = ckpt["monatune"]["trainable_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert ckpt["global_step"] == 2  # 16 images over 2 ranks x batch 4
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["train_loss"] and all(np.isfinite(history["train_loss"]))
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_cli_reports_config_errors(tmp_path):
    cfg = write_config(tmp_path)
    done = subprocess.run(monatune_cmd("fit", "--config", str(cfg), "--model.methd", "lora"), env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "methd" in done.stderr and "method" in done.stderr
    done = subprocess.run(monatune_cmd("fit", "--config", str(cfg), "--data.root", str(tmp_path / "nowhere")), env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "nowhere" in done.stderr


def _metrics(capsys) -> dict:
    out = capsys.readouterr().out
    return json.loads(out[out.index("{") :])["metrics"]


def test_fit_writes_an_adapter_that_evaluates_like_the_checkpoint(tmp_path, capsys):
    from monatune.adapter_io import read_adapter
    from monatune.cli.main import main
    from monatune.engine.config import load_config

    cfg = str(write_config(tmp_path, max_epochs=1))
    run_dir = tmp_path / "run"
    assert main(["fit", "--config", cfg]) == 0
    capsys.readouterr()
    adapter = run_dir / "adapter.safetensors"
    assert (run_dir / "curves.png").is_file()
    tensors, info = read_adapter(adapter)
    assert info["method"] == "mona" and info["train_modules"] == ["head"]
    assert (info["backbone"], info["task"]) == (load_config(cfg).model.backbone, "classification")
    ckpt = SafeCheckpointIO().load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    for key, value in tensors.items():  # the final weights, not the initial ones
        assert torch.equal(value, ckpt["state_dict"][f"model.{key}"]), key

    assert main(["validate", "--config", cfg, "--ckpt", str(run_dir / "checkpoints" / "last.ckpt")]) == 0
    from_ckpt = _metrics(capsys)
    assert main(["validate", "--config", cfg, "--adapter", str(adapter)]) == 0
    from_adapter = _metrics(capsys)
    assert from_adapter.keys() == from_ckpt.keys() and from_ckpt
    for key in from_ckpt:
        assert from_adapter[key] == pytest.approx(from_ckpt[key], rel=1e-5, abs=1e-6), key
    assert main(["validate", "--config", cfg]) == 0  # the untrained model scores otherwise
    assert _metrics(capsys)["val/loss"] != pytest.approx(from_ckpt["val/loss"], rel=1e-5)

    # export rebuilds the same file from the checkpoint alone
    exported = tmp_path / "exported.safetensors"
    assert main(["export", "--config", cfg, "--out", str(exported)]) == 0
    again, again_info = read_adapter(exported)
    assert (again_info["backbone"], again_info["task"]) == (info["backbone"], "classification")
    assert again.keys() == tensors.keys() and all(torch.equal(again[k], tensors[k]) for k in tensors)

    # an adapter of another method is refused, naming both
    assert main(["validate", "--config", cfg, "--method", "lora", "--adapter", str(adapter)]) == 2
    err = capsys.readouterr().err
    assert "mona" in err and "lora" in err
    # a run without a checkpoint has nothing to export: the error names the file it looked for
    assert main(["export", "--config", cfg, "--trainer.out_dir", str(tmp_path / "empty")]) == 2
    assert "last.ckpt" in capsys.readouterr().err


def test_evaluation_keeps_the_runs_config_and_refuses_two_weight_sources(tmp_path, capsys):
    from monatune.cli.main import main

    cfg = str(write_config(tmp_path, max_epochs=1))
    assert main(["fit", "--config", cfg]) == 0
    run_dir = tmp_path / "run"
    saved = (run_dir / "config.yaml").read_text()
    adapter, ckpt = str(run_dir / "adapter.safetensors"), str(run_dir / "checkpoints" / "last.ckpt")
    assert main(["validate", "--config", cfg, "--method", "lora", "--adapter", adapter]) == 2  # a failed evaluation
    assert main(["validate", "--config", cfg, "--adapter", adapter, "--ckpt", ckpt]) == 2
    assert "not both" in capsys.readouterr().err
    assert (run_dir / "config.yaml").read_text() == saved  # export and plot read it later


def test_export_builds_the_architecture_the_run_trained(tmp_path, capsys):
    """``model.pretrained`` names the architecture when it is a string (fit builds that one)."""
    from monatune.adapter_io import read_adapter
    from monatune.cli.main import main

    cfg = str(write_config(tmp_path, max_epochs=1))
    names = ["--model.backbone", "swin_tiny_patch4_window7_224", "--model.pretrained", "swin_nano_synthetic"]
    assert main(["fit", "--config", cfg, *names]) == 0
    out = tmp_path / "exported.safetensors"
    assert main(["export", "--config", str(tmp_path / "run" / "config.yaml"), "--out", str(out)]) == 0
    tensors, _ = read_adapter(out)
    assert tensors.keys() == read_adapter(tmp_path / "run" / "adapter.safetensors")[0].keys()
