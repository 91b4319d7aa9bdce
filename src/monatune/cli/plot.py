"""``monatune plot RUN_DIR [RUN_DIR ...]``: loss and metric curves of fit runs in one PNG."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plot",
        help="training-loss and validation-metric curves of one or more fit runs",
        description="Read each run's history.json and draw its training loss (per step, smoothed) and a "
        "validation metric (per epoch) into one PNG, e.g. to compare mona with full fine-tuning.",
    )
    p.add_argument("runs", nargs="+", help="out_dirs of monatune fit runs")
    p.add_argument("--out", default="curves.png", help="PNG to write (default: curves.png)")
    p.add_argument("--metric", default=None, help="validation metric, e.g. val/top1 (default: the task's main one)")
    p.add_argument("--labels", nargs="+", default=None, help="one label per run (default: each run's method)")
    p.set_defaults(func=run_command)


def _run_config(run_dir: Path) -> dict:
    import yaml

    config = run_dir / "config.yaml"
    raw = yaml.safe_load(config.read_text()) if config.is_file() else None
    return raw if isinstance(raw, dict) else {}


def run_label(run_dir: Path) -> str:
    """The run's method from its config.yaml, else the folder name."""
    model = _run_config(run_dir).get("model")
    if isinstance(model, dict) and model.get("method"):
        return str(model["method"])
    return run_dir.name


def task_metrics(runs: list[Path]) -> list[str]:
    """The main metrics (task registry) of the runs' tasks, from their config.yaml files."""
    from monatune.engine.tasks import TASK_NAMES, get_task

    tasks = dict.fromkeys(str(_run_config(run).get("task")) for run in runs)
    return [get_task(task).main_metric for task in tasks if task in TASK_NAMES]


def run_command(args: argparse.Namespace) -> int:
    from monatune.plots import plot_runs, read_history

    runs = [Path(r) for r in args.runs]
    if args.labels is not None and len(args.labels) != len(runs):
        raise ValueError(f"--labels: {len(args.labels)} labels for {len(runs)} runs")
    labels = args.labels or [run_label(r) for r in runs]
    if len(set(labels)) != len(labels):  # two runs of one method: tell them apart by folder
        labels = [f"{label} ({run.name})" for label, run in zip(labels, runs)]
    if len(set(labels)) != len(labels):  # ... and by their whole paths when the folders share a name
        labels = [f"{label.split(' (')[0]} ({run})" for label, run in zip(labels, runs)]
    histories = {label: read_history(run) for label, run in zip(labels, runs)}
    print(f"wrote {plot_runs(histories, Path(args.out), metric=args.metric, preferred=task_metrics(runs))}")
    return 0
