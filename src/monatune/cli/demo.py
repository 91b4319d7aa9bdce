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
    p.add_argument(
        "--methods", default=None, help="comma list of methods, or 'all' (default: mona,full,lora for classification, mona,full otherwise)"
    )
    p.add_argument("--seeds", type=int, default=1, help="train every method with seeds 0..N-1; the table gives mean and spread")
    p.add_argument("--quick", action="store_true", help="tiny run (<= 60 s) on the nano backbone, with the same outputs")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: demo_out/<task>)")
    p.add_argument("--backbone", default=None, help="another embedded backbone, e.g. vit_nano_synthetic (the pretrained ViT)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monatune.demo.runner import demo_task, parse_methods, run_demo

    if args.seeds < 1:
        raise ValueError(f"--seeds: expected at least 1, got {args.seeds}")
    task = demo_task(args.task)
    out = args.out or Path("demo_out") / args.task
    run_demo(task, parse_methods(args.methods or task.default_methods), out, args.quick, seeds=args.seeds, backbone=args.backbone)
    return 0
