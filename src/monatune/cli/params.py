"""``monatune params``: trainable backbone parameters per method, built on the meta device (no weights)."""

from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

import yaml

from monatune.backbones import create_backbone
from monatune.methods import methods
from monatune.tuning import apply, count_parameters


def parameter_table(
    backbone: str,
    dense: bool,
    method_names: list[str],
    options: dict[str, dict[str, Any]] | None = None,
    out_indices: Sequence[int] = (0, 1, 2, 3),
    freeze_patch_embed: bool = False,
) -> list[dict]:
    """One row per method: trainable backbone parameters, total and percent.
    ``options``: method options per method name (e.g. ``{"lorand": {"beta": 8}}``); ``out_indices``:
    the stages a dense backbone returns (each has its own LayerNorm)."""
    rows = []
    for name in method_names:
        model = create_backbone(backbone, dense=dense, meta=True, out_indices=out_indices)
        frozen = [getattr(model, "patch_embedding", "patch_embed")] if freeze_patch_embed else []
        apply(model, name, frozen_modules=frozen, **(options or {}).get(name, {}))
        trainable, total = count_parameters(model)
        rows.append({"method": name, "trainable": trainable, "total": total, "percent": 100.0 * trainable / total})
    return rows


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("params", help="count trainable backbone parameters per method (no download)")
    p.add_argument("--backbone", default="swin_base_patch4_window7_224", help="timm/torchvision Swin name")
    p.add_argument("--dense", action="store_true", help="Swin with a LayerNorm on each of its 4 stage outputs")
    p.add_argument("--method", action="append", choices=methods(), help="method(s) to count (default: all)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method option for every counted method that has it, e.g. --option beta=8 --option init=kaiming",
    )
    p.add_argument(
        "--config",
        help="count an experiment YAML's backbone, method, method_options, stages and freeze_patch_embed "
        "(replaces --backbone, --dense, --method, --option)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    p.set_defaults(func=run)


def _parse_options(items: list[str], method_names: list[str]) -> dict[str, dict[str, Any]]:
    from monatune.methods import option_names

    given: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE (e.g. beta=8)")
        key, text = item.split("=", 1)
        given[key] = yaml.safe_load(text)
    per_method = {m: {k: v for k, v in given.items() if k in option_names(m)} for m in method_names}
    unused = sorted(set(given) - {k for opts in per_method.values() for k in opts})
    if unused:
        raise ValueError(f"--option {unused}: no counted method has it ({', '.join(method_names)})")
    return per_method


def run(args: argparse.Namespace) -> int:
    if args.config:
        from monatune.engine.config import load_config

        cfg = load_config(args.config)
        args.backbone = cfg.model.backbone
        args.dense = cfg.task != "classification"
        args.method = [cfg.model.method]
        options = {cfg.model.method: dict(cfg.model.method_options)}
        out_indices = tuple(cfg.model.head_options.get("out_indices", (0, 1, 2, 3)))
        freeze = cfg.model.freeze_patch_embed
    else:
        options = _parse_options(args.option, args.method or methods())
        out_indices, freeze = (0, 1, 2, 3), False
    rows = parameter_table(args.backbone, args.dense, args.method or methods(), options, out_indices, freeze)
    if args.json:
        print(json.dumps(rows))
        return 0
    from rich.console import Console
    from rich.table import Table

    kind = "dense (4 stage norms)" if args.dense else "classification"
    table = Table(title=f"{args.backbone} [{kind}]: trainable backbone parameters")
    for col in ("method", "trainable", "total", "%"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(r["method"], f"{r['trainable']:,}", f"{r['total']:,}", f"{r['percent']:.2f}")
    Console().print(table)
    return 0
