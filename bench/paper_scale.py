"""Run ``monatune smoke`` on every paper setting at full size and write the table of docs/paper_scale.md.

Each setting runs in its own process (peak RSS is per process on the CPU). Usage:

    OMP_WAIT_POLICY=PASSIVE python bench/paper_scale.py --device cpu --steps 2 --out bench/results/paper-scale-cpu.json
    python bench/paper_scale.py --device cuda --steps 5 --out $OUT/paper-scale-gpu.json   # config batch sizes

The markdown table is printed (and written with ``--markdown FILE``); a failed setting is a row with
its reason, and the script exits non-zero when any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER = "configs/paper"
# (label, config) in the order of the issue: every paper setting with mona, and full on COCO, ADE20K, VOC
SETTINGS = [
    ("classification Swin-L 224 (Flowers102)", f"{PAPER}/classification/flowers102/mona.yaml"),
    ("VOC RetinaNet Swin-L 1000x600", f"{PAPER}/detection/voc_retinanet_swin_l/mona.yaml"),
    ("VOC RetinaNet Swin-L 1000x600", f"{PAPER}/detection/voc_retinanet_swin_l/full.yaml"),
    ("COCO Cascade Mask R-CNN Swin-B 1333x800", f"{PAPER}/instance_segmentation/coco_cascade_mask_rcnn_swin_b_3x/mona.yaml"),
    ("COCO Cascade Mask R-CNN Swin-B 1333x800", f"{PAPER}/instance_segmentation/coco_cascade_mask_rcnn_swin_b_3x/full.yaml"),
    ("ADE20K UperNet Swin-L 512", f"{PAPER}/semantic_segmentation/ade20k_upernet_swin_l_160k/mona.yaml"),
    ("ADE20K UperNet Swin-L 512", f"{PAPER}/semantic_segmentation/ade20k_upernet_swin_l_160k/full.yaml"),
] + [
    (f"{dataset.upper()} {detector} Swin-B 1024", f"{PAPER}/oriented/{dataset}/{detector}/mona.yaml")
    for dataset in ("dota", "star")
    for detector in ("rotated_retinanet", "oriented_rcnn", "h2rbox_v2")
]


def run_setting(config: str, device: str, steps: int, batch_size: int | None, timeout: int) -> dict:
    cmd = [sys.executable, "-m", "monatune.cli.main", "smoke", "--config", config, "--steps", str(steps), "--device", device, "--json"]
    if batch_size is not None:
        cmd += ["--batch-size", str(batch_size)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"config": config, "ok": False, "reason": f"timed out after {timeout} s", "wall_seconds": timeout}
    wall = time.perf_counter() - start
    shown = " ".join(cmd[3:])
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"config": config, "command": f"monatune {shown}", "ok": False, "reason": " | ".join(tail), "wall_seconds": wall, "exit": proc.returncode}
    report.update(config=config, command=f"monatune {shown}", wall_seconds=wall, exit=proc.returncode)
    report.setdefault("ok", proc.returncode == 0)
    return report


def markdown(rows: list[tuple[str, dict]]) -> str:
    lines = [
        "| setting | method | command | batch | trainable (backbone / heads / total) | step time s | peak MiB | losses | finite |",
        "|---|---|---|---:|---|---:|---:|---|---|",
    ]
    for label, r in rows:
        if not r.get("ok") or "params" not in r:
            lines.append(f"| {label} | | `{r.get('command', r['config'])}` | | | | | FAILED: {r.get('reason', r.get('error', '?'))} | no |")
            continue
        p = r["params"]
        counts = f"{p['backbone_trainable']:,} / {p['heads_trainable']:,} / {p['trainable']:,}"
        losses = ", ".join(f"{x:.3f}" for x in r["losses"])
        lines.append(
            f"| {label} | {r['method']} | `{r['command']}` | {r['batch_size']} | {counts} | {r['median_step_seconds']:.2f} | "
            f"{r['peak_memory_mb']:,.0f} | {losses} | yes |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="default: smoke's (1 on CPU, the config's on CUDA)")
    parser.add_argument("--only", default=None, help="run the settings whose config path contains this text")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per setting")
    parser.add_argument("--out", default="bench/results/paper-scale-cpu.json")
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    parser.add_argument("--from-json", default=None, help="only print the table of an earlier --out file")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        print(markdown([(row["label"], row) for row in saved["rows"]]))
        return 0
    settings = [(label, c) for label, c in SETTINGS if args.only is None or args.only in c]
    rows = []
    for label, config in settings:
        print(f"[paper_scale] {config} ...", file=sys.stderr, flush=True)
        result = run_setting(config, args.device, args.steps, args.batch_size, args.timeout)
        print(f"[paper_scale]   ok={result.get('ok')} wall {result['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
        rows.append((label, result))
    machine = {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(), "python": platform.python_version()}
    if args.device == "cuda":
        import torch

        machine["gpu"] = torch.cuda.get_device_name(0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "device": args.device, "steps": args.steps, "rows": [{"label": l, **r} for l, r in rows]}, indent=2))
    table = markdown(rows)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0 if all(r.get("ok") for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
