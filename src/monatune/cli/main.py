"""The ``monatune`` command line."""

from __future__ import annotations

import argparse
import sys

from monatune.cli import demo, params, plot, predict, smoke, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monatune", description="Mona tuning and its baselines on Swin backbones")
    sub = parser.add_subparsers(dest="command", required=True)
    params.add_parser(sub)
    train.add_parsers(sub)
    demo.add_parser(sub)
    plot.add_parser(sub)
    predict.add_parser(sub)
    smoke.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command in ("fit", "validate", "test", "export", "predict", "smoke"):
            return int(args.func(args, extra) or 0)
        if extra:
            parser.error(f"unrecognised arguments: {' '.join(extra)}")
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        print(f"monatune {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
