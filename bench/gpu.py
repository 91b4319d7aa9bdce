"""Issue 6 on a GPU, in one short run: inference latency and training step time / peak memory, AMP.

For a lent GPU with little time: one process, one call. Per setting (Swin-T/B/L at 224, batch 8):

- memory: each of full, mona, mona_plain, normtuning alone (2 steps), peak ``max_memory_allocated``;
- training time: the four models take steps in turn (``--steps`` cycles after one warm-up), ratio =
  median over cycles of a method's step time over full's in the same cycle;
- inference: plain Swin vs Mona (public form) vs Mona fused, one forward each in turn.

Forward and loss run under ``torch.autocast(device, dtype)`` (``--amp bf16`` default; ``fp16`` adds a
GradScaler; ``none`` for fp32). Every number is stored with the device name.

    OMP_WAIT_POLICY=PASSIVE python bench/gpu.py --out bench/results/gpu.json     # on the GPU machine
    python bench/gpu.py --device cpu --settings tiny --amp none --steps 1 --cycles 1  # smoke test

Written and smoke-tested on CPU only; no GPU had been lent when it was written.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from harness import SETTINGS, Setting, build_model, machine, make_batch, median, public_form  # noqa: E402
from train_step import build_trainer  # noqa: E402

GPU_SETTINGS = {
    "swin_t_224": SETTINGS["swin_t_224"],
    "swin_b_224": SETTINGS["swin_b_224"],
    "swin_l_224": Setting("swin_l_224", "swin_large_patch4_window7_224", 224, 8),
    "tiny": SETTINGS["tiny"],
}
TRAIN_METHODS = ("full", "mona", "mona_plain", "normtuning")
AMP = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def timed(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def run_setting(setting: Setting, device: torch.device, amp: str, steps: int, cycles: int) -> dict:
    from monatune.fuse import fuse

    torch.manual_seed(0)
    base, heads = build_model(setting)
    result: dict = {"memory_mb": {}, "train_s": {}, "infer_s": {}}
    for method in TRAIN_METHODS:  # memory: one model at a time
        _reset_peak(device)
        model, step = build_trainer(base, heads, method, setting, device, AMP[amp])
        for _ in range(2):
            step()
        _sync(device)
        result["memory_mb"][method] = _peak_mb(device)
        del model, step
    steppers = {m: build_trainer(base, heads, m, setting, device, AMP[amp])[1] for m in TRAIN_METHODS}
    for i in range(steps + 1):  # in turn; cycle 0 warms up
        for method, step in steppers.items():
            t = timed(step, device)
            if i:
                result["train_s"].setdefault(method, []).append(t)
    del steppers
    _reset_peak(device)
    import monatune

    tuned = monatune.apply(copy.deepcopy(base), "mona", train_modules=heads)
    variants = {
        "swin": base.to(device).eval(),
        "mona_plain": public_form(copy.deepcopy(tuned)).to(device).eval(),
        "mona_fused": fuse(tuned.to(device)),
    }
    images = make_batch(setting)[0].to(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=AMP[amp], enabled=AMP[amp] is not None):
        for i in range(cycles + 1):
            for name, model in variants.items():
                t = timed(lambda: model(images), device)
                if i:
                    result["infer_s"].setdefault(name, []).append(t)
    train, infer = result["train_s"], result["infer_s"]
    result["summary"] = {
        "train_x_full": {m: median([a / b for a, b in zip(train[m], train["full"])]) for m in train},
        "memory_x_full": {m: (v / result["memory_mb"]["full"] if v else None) for m, v in result["memory_mb"].items()},
        "infer_x_swin": {m: median([a / b for a, b in zip(infer[m], infer["swin"])]) for m in infer},
        "full_step_s": median(train["full"]),
        "swin_infer_s": median(infer["swin"]),
    }
    return result


def format_table(results: dict) -> str:
    lines = [f"device: {results['device']}, amp: {results['amp']}", "",
             "| setting | step x full: mona / mona_plain / normtuning | peak memory x full: mona / mona_plain / normtuning "
             "| inference x swin: mona_plain / mona_fused | full step s | swin forward ms |",
             "|---|---|---|---|---:|---:|"]  # fmt: skip

    def fmt(d: dict, keys) -> str:
        return " / ".join("-" if d.get(k) is None else f"{d[k]:.2f}" for k in keys)

    for name, r in results["settings"].items():
        s = r["summary"]
        lines.append(
            f"| {name} | {fmt(s['train_x_full'], TRAIN_METHODS[1:])} | {fmt(s['memory_x_full'], TRAIN_METHODS[1:])} "
            f"| {fmt(s['infer_x_swin'], ('mona_plain', 'mona_fused'))} | {s['full_step_s']:.3f} | {s['swin_infer_s'] * 1e3:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--settings", nargs="+", default=["swin_t_224", "swin_b_224", "swin_l_224"], choices=list(GPU_SETTINGS))
    parser.add_argument("--amp", choices=list(AMP), default="bf16")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --device cpu for a smoke test)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()["cpu"]
    results: dict = {"device": name, "amp": args.amp, "machine": machine(), "args": vars(args) | {"out": str(args.out)}, "settings": {}}
    for key in args.settings:
        results["settings"][key] = run_setting(GPU_SETTINGS[key], device, args.amp, args.steps, args.cycles)
        print(f"[{key}] {json.dumps(results['settings'][key]['summary'])}", file=sys.stderr, flush=True)
    table = format_table(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return results


if __name__ == "__main__":
    main()
