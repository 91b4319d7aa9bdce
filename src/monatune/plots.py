"""Loss and metric curves as PNG files: one run, several runs side by side, or every method of a demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure  # no pyplot: the caller's matplotlib backend stays as it is
from matplotlib.ticker import MaxNLocator

from monatune.files import write_atomically

# The metric each task family is judged by, in the order tried when none is named.


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average (window clipped at the start), so early steps are not dropped."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _line_style(label: str) -> dict[str, Any]:
    """Mona's curves stand out (labels "mona" and "mona (<run>)")."""
    is_mona = label.split(" (")[0] == "mona"
    return dict(linewidth=2.6, color="crimson", zorder=10) if is_mona else dict(linewidth=1.4)


def _save(fig: Figure, path: Path) -> Path:
    """Write the PNG atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    return write_atomically(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_loss_curves(histories: dict[str, list[float]], path: Path, title: str, xlabel: str = "iteration", window: int = 10) -> Path:
    """All methods' training-loss curves in one figure (cf. the paper's Fig. 3), moving-average smoothed."""
    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()
    _loss_panel(ax, histories, window, xlabel)
    ax.set_title(title)
    return _save(fig, path)


def _whole_number_ticks(ax: Axes) -> None:
    """Ticks at whole numbers only on the x axis (steps and epochs are counts: no 0.5 or 1.02 ticks),
    also when the data cover a single step or epoch (``min_n_ticks=1``)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _loss_panel(ax: Axes, losses: dict[str, list[float]], window: int, xlabel: str = "iteration") -> None:
    for label, values in losses.items():
        if values:
            ax.plot(range(1, len(values) + 1), smooth(values, window), label=label, **_line_style(label))
    _whole_number_ticks(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"training loss (mean of {window} steps)" if window > 1 else "training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)


def main_metric(histories: dict[str, dict[str, Any]], preferred: Sequence[str] = ()) -> str | None:
    """The first of ``preferred`` (the runs' tasks' main metrics, ``engine.tasks``) any run recorded,
    else any validation metric but the loss."""
    keys = [k for h in histories.values() for record in h.get("val", []) for k in record]
    for key in preferred:
        if key in keys:
            return key
    return next((k for k in keys if k.startswith("val/") and k != "val/loss"), None)


def plot_runs(
    histories: dict[str, dict[str, Any]], path: Path, metric: str | None = None, window: int | None = None,
    preferred: Sequence[str] = (),
) -> Path:  # fmt: skip
    """Training loss per step (smoothed) and ``metric`` per epoch of each run, side by side.

    ``histories``: label -> a run's ``history.json`` content (``step_loss``, ``val`` records with
    ``epoch``); ``metric`` defaults to ``main_metric(histories, preferred)``; ``window`` to 1/25 of the
    longest run."""
    losses = {label: list(h.get("step_loss", [])) for label, h in histories.items()}
    window = window or max(1, max((len(v) for v in losses.values()), default=0) // 25)
    recorded = sorted({k for h in histories.values() for r in h.get("val", []) for k in r if k != "epoch"})
    if metric is not None and metric not in recorded:
        raise ValueError(f"metric {metric!r} was not recorded by these runs; recorded: {', '.join(recorded) or 'none'}")
    metric = metric or main_metric(histories, preferred)
    fig = Figure(figsize=(11, 4.2), dpi=120)
    left, right = fig.subplots(1, 2)
    _loss_panel(left, losses, window)
    left.set_title("training loss")
    if metric is not None:
        for label, h in histories.items():
            records = [r for r in h.get("val", []) if metric in r]
            points = [(r.get("epoch", i) + 1, r[metric]) for i, r in enumerate(records)]
            if points:
                right.plot(*zip(*points), marker="o", label=label, **_line_style(label))
        _whole_number_ticks(right)
        right.set_xlabel("epoch")
        right.set_ylabel(metric)
        right.grid(alpha=0.3)
        right.legend(fontsize=8)
    right.set_title(metric or "no validation metric recorded")
    return _save(fig, path)


def read_history(run_dir: str | Path) -> dict[str, Any]:
    """The ``history.json`` a run writes into its out_dir."""
    path = Path(run_dir) / "history.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} the out_dir of a monatune fit run?")
    try:
        history = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(history, dict) or not all(isinstance(history.get(k, []), list) for k in ("step_loss", "val")):
        raise ValueError(f"{path}: expected a monatune history (an object with step_loss and val lists)")
    return history
