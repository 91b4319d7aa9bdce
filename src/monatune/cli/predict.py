"""``monatune predict --config FILE.yaml --adapter FILE IMAGES... [--section.key value ...]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="run a trained model on image files",
        description="Build the model of a config (pretrained backbone as configured), load the trained tensors "
        "from an adapter file or a checkpoint, and predict every image given (files or folders). Writes "
        "predictions.json (classification, detection, instance and oriented detection), label PNGs "
        "(semantic segmentation) or DOTA Task1 files (oriented) into --out.",
    )
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--config", "-c", required=True, help="the run's experiment YAML (its out_dir/config.yaml will do)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--adapter", help="adapter file (.safetensors) written by fit or export")
    source.add_argument("--ckpt", help="training checkpoint")
    p.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    p.add_argument("--topk", type=int, default=5, help="classification: classes per image (default 5)")
    p.add_argument("--score-threshold", type=float, default=0.0, help="detection: drop boxes scoring lower")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--class-names", help="classification: a text file with one class name per line, in index order")
    p.set_defaults(func=run_command, command="predict")


def run_command(args: argparse.Namespace, extra: list[str]) -> int:
    from monatune.cli.train import split_overrides
    from monatune.engine.config import load_config
    from monatune.engine.predict import predict

    if args.topk < 1:
        raise ValueError(f"--topk must be at least 1, got {args.topk}")
    cfg = load_config(args.config, split_overrides(extra))
    options = {"topk": args.topk, "score_threshold": args.score_threshold}
    if args.class_names:
        names = [line.strip() for line in Path(args.class_names).read_text().splitlines() if line.strip()]
        if len(names) != cfg.model.num_classes:
            raise ValueError(f"--class-names {args.class_names}: {len(names)} names for model.num_classes = {cfg.model.num_classes}")
        options["class_names"] = names
    written = predict(cfg, args.images, args.out, adapter=args.adapter, ckpt=args.ckpt, options=options, device=args.device)
    print(f"wrote {len(written)} file(s) to {args.out}: " + ", ".join(p.name for p in written[:5]) + (" ..." if len(written) > 5 else ""))
    return 0
