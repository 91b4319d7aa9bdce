"""Training step time and peak memory of every tuning method vs full fine-tuning.

A step is ``zero_grad(set_to_none) -> forward -> loss -> backward -> AdamW step``.

- Time: methods run in groups inside one subprocess per group, each group holding ``full``; the
  models (same initial weights) take steps in turn (full, a, b, ..., full, a, b, ...), so every
  method sees the same machine load; a method's ratio is the median over cycles of its step time
  over full's step time in the same cycle.
- Memory: one fresh subprocess per method (1 warm-up + 1 step): whole-process peak RSS (VmHWM),
  RSS before the first step, and the MB autograd keeps for backward (saved activations).

    OMP_WAIT_POLICY=PASSIVE python bench/train_step.py --settings swin_t_224 --out train.json

Extra rows beside ``monatune.methods()``: ``mona_plain`` (Mona in the public code's literal form)
and ``mona_ckpt`` (Mona with ``checkpoint_blocks``).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    SETTINGS, build_model, current_rss_mb, finish, loss_fn, machine, make_batch, median, peak_rss_mb, public_form,
    saved_activation_mb,
)  # fmt: skip

EXTRA_METHODS = ("mona_plain", "mona_ckpt")


def build_trainer(base, heads, method: str, setting, device: str = "cpu", amp_dtype=None):
    """(model, step function) for ``method`` on a copy of ``base``, on ``device``; with ``amp_dtype``
    the forward and loss run under ``torch.autocast`` (float16 adds a GradScaler)."""
    import torch

    import monatune
    from monatune.checkpointing import checkpoint_blocks

    model = copy.deepcopy(base)
    monatune.apply(model, "mona" if method in EXTRA_METHODS else method, train_modules=heads)
    if method == "mona_plain":
        public_form(model)
    if method == "mona_ckpt":
        checkpoint_blocks(model)
    model = model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.05)
    scaler = torch.amp.GradScaler(torch.device(device).type) if amp_dtype == torch.float16 else None
    images, labels = (t.to(device) for t in make_batch(setting))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = loss_fn(model(images), labels)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    return model, step


def measure_time(setting_name: str, methods: list[str], steps: int, warmup: int, threads: int) -> dict:
    """Step times of ``methods`` taking steps in turn in this process."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    setting = SETTINGS[setting_name]
    base, heads = build_model(setting)
    steppers = {m: build_trainer(base, heads, m, setting)[1] for m in methods}
    del base
    times: dict[str, list[float]] = {m: [] for m in methods}
    for i in range(warmup + steps):
        for method, step in steppers.items():
            start = time.perf_counter()
            step()
            if i >= warmup:
                times[method].append(time.perf_counter() - start)
    return times


def measure_memory(setting_name: str, method: str, threads: int) -> dict:
    """Peak RSS of one warm-up step and one step of ``method``, alone in this process."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    setting = SETTINGS[setting_name]
    base, heads = build_model(setting)
    model, step = build_trainer(base, heads, method, setting)
    del base
    rss_start = current_rss_mb()
    for _ in range(2):
        step()
    peak = peak_rss_mb()
    images, labels = make_batch(setting)
    # Checkpointed blocks keep their inputs through checkpoint's own hooks, invisible here: no number.
    saved = None if method == "mona_ckpt" else saved_activation_mb(model, lambda: loss_fn(model(images), labels))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"peak_rss_mb": peak, "rss_before_training_mb": rss_start, "saved_activations_mb": saved, "trainable": trainable}


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def groups_of(methods: list[str], size: int) -> list[list[str]]:
    """``full`` plus at most ``size - 1`` others per group; the Mona rows share a group."""
    others = [m for m in methods if m != "full"]
    monas = [m for m in others if m.startswith("mona")]
    rest = [m for m in others if not m.startswith("mona")]
    ordered, groups = monas + rest, []
    for i in range(0, len(ordered), size - 1):
        groups.append(["full", *ordered[i : i + size - 1]])
    return groups or [["full"]]


def main(argv: list[str] | None = None) -> dict:
    import monatune

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=[s for s in SETTINGS if s != "tiny"], choices=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=None, help="default: all methods + mona_plain + mona_ckpt")
    parser.add_argument("--steps", type=int, default=5, help="timed cycles")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--group-size", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true", help="time only (no memory rows)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, setting, *methods = args.child
        if kind == "time":
            result = measure_time(setting, methods, args.steps, args.warmup, args.threads)
        else:
            result = measure_memory(setting, methods[0], args.threads)
        print(json.dumps(result))
        return {}
    methods = args.methods or [*monatune.methods(), *EXTRA_METHODS]
    methods = ["full"] + [m for m in methods if m != "full"]
    opts = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    results: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "settings": {}}
    for setting in args.settings:
        memory = {}
        for method in [] if args.skip_memory else methods:
            memory[method] = _child(["memory", setting, method, *opts])
            print(f"[{setting}] {method}: peak {memory[method]['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
        times = []
        for group in groups_of(methods, args.group_size):
            times.append(_child(["time", setting, *group, *opts]))
            print(f"[{setting}] " + ", ".join(f"{m} {median(t):.3f} s" for m, t in times[-1].items()),
                  file=sys.stderr, flush=True)  # fmt: skip
        results["settings"][setting] = {"memory": memory, "times": times, "summary": summarize(memory, times)}
    return finish(results, args.out, format_table(results))


def summarize(memory: dict[str, dict], times: list[dict[str, list[float]]]) -> dict[str, dict]:
    """Per method: median step time, ratio to full (median over cycles), memory and ratios to full."""
    methods = list(dict.fromkeys(m for group in times for m in group))
    full_mem = memory.get("full") or _NO_MEMORY
    full_growth = full_mem["peak_rss_mb"] - full_mem["rss_before_training_mb"]
    out = {}
    for method in methods:
        mem = memory.get(method) or _NO_MEMORY
        group = next(g for g in times if method in g)
        ratios = [t / f for t, f in zip(group[method], group["full"])]
        out[method] = {
            "step_s": median(group[method]),
            "time_vs_full": median(ratios),
            "time_vs_full_range": [min(ratios), max(ratios)],
            "peak_rss_mb": mem["peak_rss_mb"],
            "mem_vs_full": mem["peak_rss_mb"] / full_mem["peak_rss_mb"],
            "train_mem_vs_full": (mem["peak_rss_mb"] - mem["rss_before_training_mb"]) / full_growth
            if full_growth > 0
            else float("nan"),
            "saved_mb": mem["saved_activations_mb"],
            "trainable": mem["trainable"],
        }
    return out


_NO_MEMORY = {"peak_rss_mb": float("nan"), "rss_before_training_mb": 0.0, "saved_activations_mb": None, "trainable": 0}


def format_table(results: dict) -> str:
    lines = []
    for setting, data in results["settings"].items():
        lines += [
            f"\n{setting}",
            "| method | trainable | step s | time x full (min-max over cycles) | peak RSS MB | x full "
            "| RSS growth in training x full | saved activations MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for method, s in data["summary"].items():
            lo, hi = s["time_vs_full_range"]
            trainable = f"{s['trainable']:,}" if s["trainable"] else "-"
            lines.append(
                f"| {method} | {trainable} | {s['step_s']:.3f} | {s['time_vs_full']:.2f} ({lo:.2f}-{hi:.2f}) | "
                f"{_mb(s['peak_rss_mb'])} | {_x(s['mem_vs_full'])} | {_x(s['train_mem_vs_full'])} | {_mb(s['saved_mb'])} |"
            )
    return "\n".join(lines)


def _mb(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.0f}"


def _x(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"


if __name__ == "__main__":
    main()
