"""``monatune params``: trainable backbone parameters per method, built on the meta device (no weights)."""

from __future__ import annotations

import argparse
import json

from monatune.backbones import create_backbone
from monatune.methods import methods
from monatune.tuning import apply, count_parameters


def parameter_table(backbone: str, dense: bool, method_names: list[str]) -> list[dict]:
    """One row per method: trainable backbone parameters, total and percent."""
    rows = []
    for name in method_names:
        model = create_backbone(backbone, dense=dense, meta=True)
        apply(model, name)
        trainable, total = count_parameters(model)
        rows.append({"method": name, "trainable": trainable, "total": total, "percent": 100.0 * trainable / total})
    return rows


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("params", help="count trainable backbone parameters per method (no download)")
    p.add_argument("--backbone", default="swin_base_patch4_window7_224", help="timm/torchvision Swin name")
    p.add_argument("--dense", action="store_true", help="Swin with a LayerNorm on each of its 4 stage outputs")
    p.add_argument("--method", action="append", choices=methods(), help="method(s) to count (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = parameter_table(args.backbone, args.dense, args.method or methods())
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
