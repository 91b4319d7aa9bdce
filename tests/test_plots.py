"""Curves of fit runs: metric choice, smoothing, the PNG, and the `monatune plot` command."""

from __future__ import annotations

import json

import pytest
import yaml
from PIL import Image

from monatune.cli.main import main
from monatune.plots import main_metric, plot_loss_curves, plot_runs, smooth


def history(losses: list[float], metric: str, values: list[float]) -> dict:
    return {"train_loss": [], "step_loss": losses, "val": [{"val/loss": 1.0, metric: v, "epoch": e} for e, v in enumerate(values)]}


def test_smooth_is_a_trailing_mean_that_keeps_every_step():
    assert smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert smooth([], 3) == []


def test_main_metric_prefers_the_task_metric_over_the_loss():
    assert main_metric({"a": history([1.0], "val/top1", [50.0])}) == "val/top1"
    two = {"a": history([1.0], "val/miou", [10.0]), "b": history([1.0], "val/map", [5.0])}
    assert main_metric(two, preferred=["val/map"]) == "val/map"  # the runs' tasks' metrics (task registry)
    assert main_metric(two, preferred=["val/top1", "val/miou"]) == "val/miou"
    assert main_metric({"a": history([1.0], "val/custom", [1.0])}) == "val/custom"
    assert main_metric({"a": {"step_loss": [1.0], "val": []}}) is None


def test_plot_runs_writes_a_two_panel_png(tmp_path):
    runs = {"mona": history([3.0, 2.0, 1.0] * 20, "val/top1", [40.0, 60.0]), "full": history([3.0, 2.5, 2.0] * 20, "val/top1", [30.0, 50.0])}
    path = plot_runs(runs, tmp_path / "sub" / "curves.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1320, 504)  # 11 x 4.2 inches at 120 dpi


def _run_dir(root, name: str, method: str | None, hist: dict | None):
    run = root / name
    run.mkdir()
    if method:
        (run / "config.yaml").write_text(yaml.safe_dump({"model": {"method": method}}))
    if hist is not None:
        (run / "history.json").write_text(json.dumps(hist))
    return str(run)


def test_plot_command(tmp_path, capsys):
    mona = _run_dir(tmp_path, "a", "mona", history([2.0, 1.0], "val/map", [10.0]))
    full = _run_dir(tmp_path, "b", "full", history([2.0, 1.5], "val/map", [5.0]))
    out = tmp_path / "cmp.png"
    assert main(["plot", mona, full, "--out", str(out)]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out

    assert main(["plot", mona, full, "--labels", "only-one"]) == 2
    assert "2 runs" in capsys.readouterr().err
    empty = _run_dir(tmp_path, "c", None, None)
    assert main(["plot", mona, empty, "--out", str(out)]) == 2
    assert "history.json" in capsys.readouterr().err


@pytest.mark.parametrize("labels", [None, ["x", "y"]])
def test_two_runs_of_one_method_get_distinct_labels(tmp_path, labels, monkeypatch):
    seen = {}
    monkeypatch.setattr("monatune.plots.plot_runs", lambda histories, path, metric=None, preferred=(): seen.update(histories) or path)
    one = _run_dir(tmp_path, "seed0", "mona", history([1.0], "val/top1", [1.0]))
    two = _run_dir(tmp_path, "seed1", "mona", history([1.0], "val/top1", [1.0]))
    assert main(["plot", one, two, *(["--labels", *labels] if labels else [])]) == 0
    assert sorted(seen) == (["mona (seed0)", "mona (seed1)"] if labels is None else ["x", "y"])


def test_plot_command_errors_name_what_is_wrong(tmp_path, capsys):
    run = _run_dir(tmp_path, "a", None, history([2.0, 1.0], "val/map", [10.0]))
    assert main(["plot", run, "--metric", "val/top1", "--out", str(tmp_path / "x.png")]) == 2
    assert "val/top1" in (err := capsys.readouterr().err) and "recorded: val/loss, val/map" in err
    (tmp_path / "a" / "history.json").write_text("[1, 2]")
    assert main(["plot", run]) == 2
    assert "expected a monatune history" in capsys.readouterr().err


def test_labels_and_records_tolerate_sparse_files(tmp_path):
    from monatune.cli.plot import run_label

    run = tmp_path / "run7"
    run.mkdir()
    (run / "config.yaml").write_text("model: null\n")
    assert run_label(run) == "run7"
    sparse = {"step_loss": [1.0, 0.5], "val": [{"val/top1": 10.0}, {"val/top1": 20.0}]}  # no "epoch" keys
    assert plot_runs({"mona (run7)": sparse}, tmp_path / "c.png").is_file()


def test_runs_in_same_named_folders_keep_their_own_curves(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("monatune.plots.plot_runs", lambda histories, path, metric=None, preferred=(): seen.update(histories) or path)
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    one = _run_dir(tmp_path / "x", "mona", "mona", history([1.0], "val/top1", [1.0]))
    two = _run_dir(tmp_path / "y", "mona", "mona", history([2.0], "val/top1", [2.0]))
    assert main(["plot", one, two]) == 0
    assert len(seen) == 2 and all(label.startswith("mona (") for label in seen)


@pytest.mark.parametrize(("epochs", "steps"), [(1, 1), (2, 3), (3, 2), (5, 7)])
def test_step_and_epoch_axes_have_whole_number_ticks_only(tmp_path, monkeypatch, epochs, steps):
    figures = []
    monkeypatch.setattr("monatune.plots._save", lambda fig, path: figures.append(fig) or path)
    run = history([2.0] * steps, "val/top1", [10.0 * e for e in range(epochs)])
    plot_runs({"mona": run, "full": run}, tmp_path / "c.png")
    plot_loss_curves({"mona": run["step_loss"]}, tmp_path / "l.png", "loss")
    for ax in (axes for fig in figures for axes in fig.axes):
        low, high = ax.get_xlim()
        shown = [float(t) for t in ax.get_xticks() if low <= t <= high]
        assert shown and all(t.is_integer() for t in shown), (ax.get_xlabel(), shown)
