"""The ``monatune`` command line."""

from __future__ import annotations

import argparse
import re
import sys
import traceback

from monatune.cli import demo, params, plot, predict, smoke, train

# what a wrong config, path or machine raises: one line unless --debug
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, RuntimeError, OSError, ImportError, AssertionError)
DEBUG_FLAG = "--debug"


class _ExactParser(argparse.ArgumentParser):
    """Flags must be written in full: ``--qu`` is not ``--quick`` (a README or script typo fails loudly)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _ExactParser(prog="monatune", description="Mona tuning and its baselines on Swin backbones")
    parser.add_argument(DEBUG_FLAG, action="store_true", help="on an error, print the full traceback instead of one line (anywhere on the line)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_ExactParser)
    params.add_parser(sub)
    train.add_parsers(sub)
    demo.add_parser(sub)
    plot.add_parser(sub)
    predict.add_parser(sub)
    smoke.add_parser(sub)
    return parser


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` reports a wrong input (config, file, machine) rather than a bug: the types in
    ``USER_ERRORS`` and Lightning's MisconfigurationException (trainer settings it refuses)."""
    lightning = sys.modules.get("lightning.fabric.utilities.exceptions")
    kinds = USER_ERRORS + ((lightning.MisconfigurationException,) if lightning is not None else ())
    return isinstance(exc, kinds)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line; a message-less or assertion error names its type too."""
    text = re.sub(r"\s*\n\s*", " ", str(exc)).strip()
    if not text or isinstance(exc, AssertionError) or type(exc).__name__ == "MisconfigurationException":
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv  # accepted after the command too, where the overrides would refuse it
    argv = [a for a in argv if a != DEBUG_FLAG]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command in ("fit", "validate", "test", "export", "predict", "smoke"):
            return int(args.func(args, extra) or 0)
        if extra:
            parser.error(f"unrecognised arguments: {' '.join(extra)}")
        return int(args.func(args) or 0)
    except Exception as exc:
        if not (debug or is_user_error(exc)):
            raise
        if debug:
            traceback.print_exc()
        else:
            hint = "" if isinstance(exc, (ValueError, FileNotFoundError)) else f" (monatune {DEBUG_FLAG} ... shows the traceback)"
            print(f"monatune {args.command}: error: {one_line(exc)}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
