"""Demo outputs: a results table (rich), one PNG of every method's loss curve, and a results JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from monatune.files import write_json_atomic
from monatune.plots import plot_loss_curves, smooth

__all__ = ["markdown_table", "plot_loss_curves", "print_table", "smooth", "write_results"]


def _cells(r: dict[str, Any], metric_key: str) -> list[str]:
    seeds = len(r.get("metric_values", [r[metric_key]]))
    metric = f"{r[metric_key]:.2f}"
    if seeds > 1:
        metric += f" ± {r['metric_std']:.2f}"
    values = ", ".join(f"{v:.2f}" for v in r.get("metric_values", [r[metric_key]]))
    return [
        r["method"],
        f"{r['trainable_params']:,}",
        f"{r['trainable_percent']:.2f}",
        metric,
        values,
        f"{r['train_seconds']:.1f}",
        f"{r['peak_memory_mb']:.0f}",
    ]


def _columns(metric_label: str) -> list[str]:
    return ["method", "trainable params", "%", f"{metric_label} mean ± sd", "per seed", "train time (s)", "peak memory (MiB)"]


def print_table(title: str, rows: Sequence[dict[str, Any]], metric_key: str, metric_label: str) -> None:
    """One row per method: trainable backbone params, %, the task metric (mean ± sample standard
    deviation over seeds, and each seed's value), mean train time, mean peak memory."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in _columns(metric_label):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(*_cells(r, metric_key))
    Console().print(table)


def markdown_table(rows: Sequence[dict[str, Any]], metric_key: str, metric_label: str) -> str:
    """The table of ``print_table`` in Markdown (for a README)."""
    lines = ["| " + " | ".join(_columns(metric_label)) + " |", "|" + "---|" * len(_columns(metric_label))]
    lines += ["| " + " | ".join(_cells(r, metric_key)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_results(path: Path, payload: dict[str, Any]) -> Path:
    return write_json_atomic(path, payload)
