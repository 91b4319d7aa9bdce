"""``monatune fit|validate|test|export --config FILE.yaml [--section.key value ...]``."""

from __future__ import annotations

import argparse
import json


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    for command, text in (("fit", "train"), ("validate", "evaluate on the validation split"), ("test", "evaluate on the test split")):
        p = subparsers.add_parser(
            command,
            help=f"{text} from a YAML config",
            description=f"{text.capitalize()} from a YAML config. Override any key with --section.key value "
            "(e.g. --model.method lora --trainer.devices 2).",
        )
        p.add_argument("--config", "-c", help="experiment YAML (see configs/)")
        if command == "fit":
            p.add_argument("--ckpt", help="checkpoint to resume from (default: the run's last.ckpt if it exists)")
            p.add_argument(
                "--fresh",
                action="store_true",
                help="start from scratch: move the run's previous checkpoints, logs and results to out_dir/previous/<n>/",
            )
        else:
            p.add_argument("--ckpt", help="checkpoint to evaluate; 'last' = the run's last.ckpt")
            p.add_argument("--adapter", help="adapter file (.safetensors) to load into the built model before evaluating")
        p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        shortcuts = p.add_argument_group("shortcuts for common overrides")
        shortcuts.add_argument("--method", help="= --model.method")
        shortcuts.add_argument("--pretrained", help="timm name with tag, e.g. swin_large_patch4_window7_224.ms_in22k (= --model.pretrained)")
        shortcuts.add_argument("--weights", help="local weights file: safetensors, timm .pth or Microsoft Swin .pth (= --model.weights)")
        shortcuts.add_argument("--devices", help="devices per node, e.g. 2 or auto (= --trainer.devices)")
        shortcuts.add_argument("--num-nodes", type=int, help="nodes for multi-node DDP (= --trainer.num_nodes)")
        shortcuts.add_argument("--out-dir", help="= --trainer.out_dir")
        shortcuts.add_argument("--strict", action="store_true", help="unreadable images are an error (= --data.strict true)")
        p.set_defaults(func=run_command, command=command)
    p = subparsers.add_parser(
        "export",
        help="write the adapter file of a training checkpoint",
        description="Write the adapter file (trained tensors only, safetensors) of a run's checkpoint. "
        "Nothing is downloaded: the backbone is built with random weights, the checkpoint holds every trained tensor.",
    )
    p.add_argument("--config", "-c", required=True, help="the run's experiment YAML (its out_dir/config.yaml will do)")
    p.add_argument("--ckpt", default=None, help="checkpoint (default: the run's checkpoints/last.ckpt)")
    p.add_argument("--out", default=None, help="adapter file to write (default: the run's out_dir/adapter.safetensors)")
    p.set_defaults(func=export_command, command="export")


def split_overrides(extra: list[str]) -> list[str]:
    """``['--model.method', 'lora', '--trainer.max_epochs=2']`` -> ``['model.method=lora', 'trainer.max_epochs=2']``."""
    out, i = [], 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or "." not in token.split("=", 1)[0]:
            raise ValueError(f"unrecognised argument {token!r}: overrides look like --section.key value")
        key = token[2:]
        if "=" in key:
            out.append(key)
            i += 1
        else:
            if i + 1 >= len(extra):
                raise ValueError(f"override {token} needs a value")
            out.append(f"{key}={extra[i + 1]}")
            i += 2
    return out


def shortcut_overrides(args: argparse.Namespace) -> list[str]:
    """The shortcut flags as ``section.key=value`` overrides."""
    mapping = {
        "method": "model.method",
        "pretrained": "model.pretrained",
        "weights": "model.weights",
        "devices": "trainer.devices",
        "num_nodes": "trainer.num_nodes",
        "out_dir": "trainer.out_dir",
    }
    out = [f"{key}={getattr(args, name)}" for name, key in mapping.items() if getattr(args, name) is not None]
    if args.strict:
        out.append("data.strict=true")
    return out


def run_command(args: argparse.Namespace, extra: list[str]) -> int:
    import yaml

    from monatune.engine.config import load_config
    from monatune.engine.run import run

    cfg = load_config(args.config, shortcut_overrides(args) + split_overrides(extra))
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    from monatune.engine.preflight import check_before_run

    check_before_run(cfg, args.command)  # accelerator present, data folders and annotation files there
    fresh = getattr(args, "fresh", False)
    ckpt = "last" if args.command == "fit" and args.ckpt is None and not fresh else args.ckpt
    result = run(args.command, cfg, ckpt, adapter=getattr(args, "adapter", None), fresh=fresh)
    print(json.dumps({"metrics": result["metrics"], "global_step": result["global_step"]}, indent=2))
    return 0


def export_command(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    from monatune.engine.config import load_config
    from monatune.engine.run import ADAPTER_FILE, export_adapter, resolve_ckpt

    cfg = load_config(args.config, split_overrides(extra))
    out_dir = Path(cfg.trainer.out_dir)
    ckpt = args.ckpt or resolve_ckpt(out_dir, "last")
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint to export: {out_dir / 'checkpoints' / 'last.ckpt'} does not exist (pass --ckpt)")
    path = export_adapter(cfg, ckpt, args.out or out_dir / ADAPTER_FILE)
    print(f"wrote {path} from {ckpt}")
    return 0
