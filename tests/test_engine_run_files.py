"""A run folder across commands: a refused fit keeps the run's config.yaml, logs are appended and never
deleted, evaluations log apart and say what they score, fit --fresh moves the old run aside, a fit
without a terminal prints a line per epoch, an adapter file given as --ckpt is one clear error."""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import yaml

from monatune.cli.main import main
from monatune.engine.trainer import filter_known_noise

from test_engine_cli import ENV, monatune_cmd, write_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A one-epoch mona run (tmp/run) and its config (tmp/cfg.yaml); tests work on copies."""
    root = tmp_path_factory.mktemp("trained")
    cfg = write_config(root, max_epochs=1)
    assert main(["fit", "--config", str(cfg)]) == 0
    return root


@pytest.fixture
def run_copy(trained, tmp_path) -> tuple[list[str], Path]:
    """(``--config`` and ``--trainer.out_dir`` arguments, run folder) of a private copy of the trained run."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained / "run", run_dir)
    return ["--config", str(trained / "cfg.yaml"), "--trainer.out_dir", str(run_dir)], run_dir


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_refused_fit_keeps_config_and_log_and_resume_appends(run_copy, capsys):
    args, run_dir = run_copy
    config, log = (run_dir / "config.yaml").read_text(), run_dir / "logs" / "metrics.csv"
    first_rows = csv_rows(log)
    assert [r["epoch"] for r in first_rows] == ["0"]

    # the checkpoint's method check refuses the resume: config.yaml and the log stay as they were
    assert main(["fit", *args, "--method", "lora", "--trainer.max_epochs", "2"]) == 2
    assert "trained with mona" in capsys.readouterr().err
    assert (run_dir / "config.yaml").read_text() == config
    assert csv_rows(log) == first_rows

    # a resume that trains appends to the log and records the config it ran with
    assert main(["fit", *args, "--trainer.max_epochs", "2"]) == 0
    rows = csv_rows(log)
    assert rows[:1] == first_rows and [r["epoch"] for r in rows] == ["0", "1"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["max_epochs"] == 2

    # rerunning the finished run keeps the log (Lightning may validate the restored epoch once more:
    # a row appended); evaluating the run leaves fit's log alone, evaluations log apart
    assert main(["fit", *args, "--trainer.max_epochs", "2"]) == 0
    rerun_rows = csv_rows(log)
    assert rerun_rows[:2] == rows
    assert main(["validate", *args, "--ckpt", "last"]) == 0
    assert main(["validate", *args, "--ckpt", "last"]) == 0
    assert csv_rows(log) == rerun_rows
    assert len(csv_rows(run_dir / "logs" / "validate" / "metrics.csv")) == 2  # appended too


def test_evaluations_say_what_they_score(run_copy, capsys):
    args, run_dir = run_copy
    assert main(["validate", *args]) == 0
    err = capsys.readouterr().err
    assert "warning: no --ckpt or --adapter: scoring the untrained mona adapter" in err
    assert str(run_dir / "checkpoints" / "last.ckpt") in err  # and says what could be passed
    assert main(["test", *args, "--adapter", str(run_dir / "adapter.safetensors")]) == 0
    err = capsys.readouterr().err
    assert "untrained" not in err
    assert "data.test_split is null: scoring the val split 'val', reported as test/*" in err
    assert main(["test", *args, "--ckpt", "last", "--data.test_split", "val"]) == 0
    assert "test_split" not in capsys.readouterr().err

    empty = ["--config", args[1], "--trainer.out_dir", str(run_dir.parent / "empty")]
    assert main(["validate", *empty, "--ckpt", "last"]) == 2  # never silently untrained
    assert "last.ckpt does not exist" in capsys.readouterr().err


def test_adapter_file_as_ckpt_is_one_clear_error(run_copy, capsys):
    args, run_dir = run_copy
    adapter = str(run_dir / "adapter.safetensors")
    for command in ("validate", "test"):
        assert main([command, *args, "--ckpt", adapter]) == 2
        err = capsys.readouterr().err
        assert err.strip() == f"monatune {command}: error: {adapter} is an adapter file; pass it as --adapter"
    assert main(["export", *args, "--ckpt", adapter]) == 2
    assert "is an adapter file, not a training checkpoint" in capsys.readouterr().err


def test_fit_fresh_moves_the_previous_run_aside(run_copy, capsys):
    args, run_dir = run_copy
    old_ckpt = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    old_log = (run_dir / "logs" / "metrics.csv").read_text()
    assert main(["fit", *args, "--fresh", "--ckpt", "last"]) == 2
    assert "--fresh is for fit without --ckpt" in capsys.readouterr().err
    assert main(["fit", *args, "--fresh"]) == 0
    previous = run_dir / "previous" / "1"
    assert f"moved the previous run's files to {previous}" in capsys.readouterr().err
    assert (previous / "checkpoints" / "last.ckpt").read_bytes() == old_ckpt
    assert (previous / "logs" / "metrics.csv").read_text() == old_log
    assert {p.name for p in previous.iterdir()} == {"checkpoints", "logs", "history.json", "config.yaml", "adapter.safetensors", "curves.png"}
    # the new run started from scratch: its log has its own single epoch
    assert [r["epoch"] for r in csv_rows(run_dir / "logs" / "metrics.csv")] == ["0"]
    assert main(["fit", *args, "--fresh"]) == 0
    assert (run_dir / "previous" / "2" / "checkpoints" / "last.ckpt").is_file()


def test_fit_without_a_terminal_prints_a_line_per_epoch_and_no_known_noise(tmp_path):
    cfg = write_config(tmp_path, max_epochs=2, progress_bar="auto")
    done = subprocess.run(monatune_cmd("fit", "--config", str(cfg)), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert f"monatune fit classification swin_nano_synthetic + mona -> {tmp_path / 'run'}: 2 epochs of 4 batches" in lines
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split("  ")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    for line in epochs:
        fields = line.split("  ")
        assert fields[1].startswith("train/loss ") and fields[2].startswith("val/loss ") and fields[-1].endswith(" s")
    assert "Tip: For seamless" not in done.stderr and "LeafSpec" not in done.stderr


def test_known_noise_is_filtered_by_message_only():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filter_known_noise()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`")
        warnings.warn("The 'train_dataloader' does not have many workers which may be a bottleneck.")
        warnings.warn("Using a non-tuple sequence for multidimensional indexing is deprecated", UserWarning)
        warnings.warn("The 'train_dataloader' has a different problem")
        warnings.warn("something about LeafSpec that matters")
    assert [str(w.message) for w in caught] == ["The 'train_dataloader' has a different problem", "something about LeafSpec that matters"]

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)  # another test in this process may have raised the lightning loggers' level
    try:
        filter_known_noise()
        log.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        log.info("GPU available: False, used: False")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert records == ["GPU available: False, used: False"]
