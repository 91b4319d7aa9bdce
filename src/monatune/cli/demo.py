"""``monatune demo``: the offline main job on the embedded pretrained Swin (see monatune.demo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from monatune.demo import DEMO_TASKS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="fine-tune the embedded pretrained Swin with Mona and baselines, offline, and report",
        description="Fine-tunes the project's embedded Swin (pretrained on synthetic images) on offline data "
        "with each method; prints a results table and writes loss_curves.png, results.json and mona.safetensors.",
    )
    p.add_argument("--task", choices=sorted(DEMO_TASKS), default="classification")
    p.add_argument("--methods", default="mona,full", help="comma list of methods, or 'all' (default: mona,full)")
    p.add_argument("--quick", action="store_true", help="tiny run (<= 60 s) with the same outputs")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: demo_out/<task>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monatune.demo.runner import demo_task, parse_methods, run_demo

    out = args.out or Path("demo_out") / args.task
    run_demo(demo_task(args.task), parse_methods(args.methods), out, args.quick)
    return 0
