"""``monatune smoke --config FILE.yaml [--steps N] [--device D] [--batch-size B] [--section.key value ...]``."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any

STEPS = 5


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "smoke",
        help="a few training steps + one eval batch of a config's full-size model on synthetic data",
        description="Build the config's model at full size (random weights when the pretrained ones are not "
        "on this machine; nothing is downloaded), write a few synthetic images in the config's dataset layout "
        "at its real image sizes to a temporary folder, run N training steps and one evaluation batch through "
        "the same engine as `monatune fit`, and print the parameters, step time, peak memory and losses. "
        "A non-finite loss or a crash exits with status 1 and the reason. Overrides: --section.key value.",
    )
    p.add_argument("--config", "-c", required=True, help="experiment YAML (e.g. configs/paper/...)")
    p.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default {STEPS}); step time = median of steps 2..N")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default: 1 on CPU, the config's per-device batch on CUDA)")
    p.add_argument("--workdir", default=None, help="keep data and run files here instead of a temporary folder")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--traceback", action="store_true", help="on a crash, print the full traceback too")
    p.set_defaults(func=run_command, command="smoke")


def _quiet_lightning() -> None:
    import logging
    import warnings

    from monatune.engine.trainer import filter_known_noise

    filter_known_noise()
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")  # 2-step runs


def _fmt(n: int) -> str:
    return f"{n:,}"


def print_report(report: Any) -> None:
    """Rich tables: the run, the parameter counts, per-step time and loss, the summary."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    sizes = ", ".join(f"{split} {h}x{w}" for split, (h, w) in report.image_sizes.items()) or "(the dataset's own)"
    console.print(f"[bold]monatune smoke[/bold] {report.config}")
    console.print(f"  {report.task}: {report.backbone} + {report.method} on {report.device} ({report.precision}), batch {report.batch_size}")
    console.print(f"  weights: {report.weights}")
    console.print(f"  synthetic images (HxW): {sizes}")
    for note in report.notes:
        console.print(f"  note: {note}")
    p = report.params
    params = Table(title="parameters")
    for col in (f"backbone trainable ({report.method})", "heads trainable", "trainable", "total"):
        params.add_column(col, justify="right")
    params.add_row(_fmt(p["backbone_trainable"]), _fmt(p["heads_trainable"]), _fmt(p["trainable"]), _fmt(p["total"]))
    console.print(params)
    steps = Table(title="training steps")
    for col in ("step", "seconds", "loss"):
        steps.add_column(col, justify="right")
    for i, (seconds, loss) in enumerate(zip(report.step_seconds, report.losses), start=1):
        steps.add_row(str(i), f"{seconds:.3f}", f"{loss:.4f}")
    console.print(steps)
    which = "steps 2..N" if len(report.step_seconds) > 1 else "step 1 only"
    memory = "CUDA max_memory_allocated" if report.device == "cuda" else "peak RSS of the process"
    console.print(f"step time: {report.median_step_seconds:.3f} s (median of {which})")
    console.print(f"peak memory: {report.peak_memory_mb:,.0f} MiB ({memory})")
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(report.eval_metrics.items())) or "(none logged)"
    console.print(f"evaluation: {report.eval_batches} batch; {metrics}")
    console.print("[green]OK[/green]: every loss finite")


def run_command(args: argparse.Namespace, extra: list[str]) -> int:
    from monatune.cli.train import split_overrides
    from monatune.engine.config import load_config
    from monatune.engine.smoke import run_smoke

    cfg = load_config(args.config, split_overrides(extra))  # config errors: main's usual message
    _quiet_lightning()
    try:
        report = run_smoke(cfg, args.steps, args.device, args.batch_size, args.workdir, config_name=args.config)
    except Exception as exc:  # the reason is the product: print it, exit non-zero
        if args.traceback:
            traceback.print_exc()
        print(f"monatune smoke: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print_report(report)
    return 0
