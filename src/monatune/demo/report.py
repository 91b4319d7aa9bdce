"""Demo outputs: a results table (rich), one PNG of every method's loss curve, and a results JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def print_table(title: str, rows: Sequence[dict[str, Any]], metric_key: str, metric_label: str) -> None:
    """One row per method: trainable backbone params, %, the task metric, train time, peak memory."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("method", "trainable params", "%", metric_label, "train time (s)", "peak memory (MiB)"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(
            r["method"],
            f"{r['trainable_params']:,}",
            f"{r['trainable_percent']:.2f}",
            f"{r[metric_key]:.2f}",
            f"{r['train_seconds']:.1f}",
            f"{r['peak_memory_mb']:.0f}",
        )
    Console().print(table)


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average (window clipped at the start), so early steps are not dropped."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_loss_curves(histories: dict[str, list[float]], path: Path, title: str, xlabel: str = "iteration", window: int = 10) -> Path:
    """All methods' training-loss curves in one figure (cf. the paper's Fig. 3), moving-average smoothed."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for method, losses in histories.items():
        if losses:
            style = dict(linewidth=2.6, color="crimson", zorder=10) if method == "mona" else dict(linewidth=1.4)
            ax.plot(range(1, len(losses) + 1), smooth(losses, window), label=method, **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"training loss (mean of {window} steps)" if window > 1 else "training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_results(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)
    return path
