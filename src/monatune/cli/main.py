"""The ``monatune`` command line."""

from __future__ import annotations

import argparse
import sys

from monatune.cli import params


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monatune", description="Mona tuning and its baselines on Swin backbones")
    sub = parser.add_subparsers(dest="command", required=True)
    params.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"monatune {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
