"""Demo outputs: a results table (rich), one PNG of every method's loss curve, and a results JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from monatune.plots import plot_loss_curves, smooth

__all__ = ["plot_loss_curves", "print_table", "smooth", "write_results"]


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


def write_results(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)
    return path
