"""Issue 13's GPU table in one short run: step time and peak memory per method, and inference.

For a lent GPU with little time (<= 8 minutes): one process, one call. Per setting, each method alone
(a fresh model, ``--warmup`` steps, then ``--steps`` timed with CUDA events; the median), its peak
``max_memory_allocated`` over those steps:

- ``cls_b224``: Swin-B classification at 224, batch 64 (cross-entropy);
- ``dense_l512``: dense Swin-L at 512, batch 8 (the four stage maps into 1x1 heads, loss = their squares);
- ``dense_b1024``: dense Swin-B at 1024, batch 2;
- ``tiny``: the scripts' smoke test (seconds, any device).

Methods: full, mona (the default form: "lean" on a GPU), mona_fast, mona_compiled (the lean form through
inductor; its first step compiles), mona_public (the public code's form: plain, torch's nn.Dropout),
lora, adapter, adaptformer, normtuning; the dense settings take fewer
(``DENSE_METHODS``). ``--compile-setting`` adds ``torch.compile(model)`` rows for full and mona in one
setting (compile time reported apart). Inference (Swin-B 224, batch 64 and 1): plain Swin, public form,
Mona unfused, Mona fused. Forward and loss run under ``torch.autocast`` (``--amp bf16`` default; fp16
adds a GradScaler). Every figure is stored with the device's name. Weights are random.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=src python bench/gpu.py --out $OUT/gpu.json      # on the GPU
    python bench/gpu.py --device cpu --settings tiny --amp none --steps 1 --infer tiny  # smoke test
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
from torch import nn  # noqa: E402

from harness import DenseProbe, Setting, machine, median, public_form  # noqa: E402

SETTINGS = {
    "cls_b224": Setting("cls_b224", "swin_base_patch4_window7_224", 224, 64),
    "dense_l512": Setting("dense_l512", "swin_large_patch4_window7_224", 512, 8, dense=True),
    "dense_b1024": Setting("dense_b1024", "swin_base_patch4_window7_224", 1024, 2, dense=True),
    "tiny": Setting("tiny", "swin_nano_synthetic", 64, 2),
    "tiny_dense": Setting("tiny_dense", "swin_nano_synthetic", 64, 2, dense=True),
}
METHODS = ("full", "mona", "mona_fast", "mona_compiled", "mona_public", "lora", "adapter", "adaptformer", "normtuning")
DENSE_METHODS = {"dense_l512": ("full", "mona", "mona_public", "lora", "normtuning"), "dense_b1024": ("full", "mona", "lora")}
AMP = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


def build(setting: Setting, method: str) -> tuple[nn.Module, list[str]]:
    """A fresh model of ``setting`` (random weights) tuned by ``method``."""
    import monatune
    from monatune.fuse import set_mona_form

    torch.manual_seed(0)
    if setting.dense:
        model, heads = DenseProbe(monatune.create_backbone(setting.arch, dense=True)), ["heads"]
    else:
        model, heads = monatune.create_backbone(setting.arch, num_classes=100), ["head"]
    monatune.apply(model, method.split("_")[0], train_modules=heads)
    if method in ("mona_fast", "mona_compiled"):
        set_mona_form(model, method.removeprefix("mona_"))
    if method == "mona_public":
        public_form(model)
    return model, heads


def _batch(setting: Setting, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(setting.batch, 3, setting.size, setting.size, generator=g)
    return images.to(device), torch.randint(0, 100, (setting.batch,), generator=g).to(device)


def _loss(output, labels: torch.Tensor) -> torch.Tensor:
    if isinstance(output, list):
        return sum(o.float().square().mean() for o in output)
    return nn.functional.cross_entropy(output.float(), labels)


class Clock:
    """Milliseconds of a call: CUDA events on a GPU, wall time elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        begin = time.perf_counter()
        fn()
        return (time.perf_counter() - begin) * 1e3


def train_row(setting: Setting, method: str, device: torch.device, amp: str, warmup: int, steps: int, compile_: bool) -> dict:
    model, _ = build(setting, method)
    model = model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.05)
    scaler = torch.amp.GradScaler(device.type) if AMP[amp] == torch.float16 else None
    forward = torch.compile(model) if compile_ else model
    images, labels = _batch(setting, device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=AMP[amp], enabled=AMP[amp] is not None):
            loss = _loss(forward(images), labels)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    clock = Clock(device)
    first = clock(step)  # includes compiling when compile_
    for _ in range(warmup - 1):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = [clock(step) for _ in range(steps)]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    del model, opt, forward
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"step_ms": median(times), "steps_ms": times, "peak_gib": peak, "first_step_ms": first, "trainable": trainable}


def infer_rows(setting: Setting, batch: int, device: torch.device, amp: str, cycles: int) -> dict:
    from monatune.fuse import fuse

    base, _ = build(setting, "fixed")
    tuned, _ = build(setting, "mona")
    variants = {
        "swin": base.to(device).eval(),
        "mona_public": public_form(copy.deepcopy(tuned)).to(device).eval(),
        "mona_unfused": copy.deepcopy(tuned).to(device).eval(),
        "mona_fused": fuse(tuned.to(device)),
    }
    images = torch.randn(batch, 3, setting.size, setting.size, device=device)
    clock, times = Clock(device), {}
    with torch.inference_mode(), torch.autocast(device.type, dtype=AMP[amp], enabled=AMP[amp] is not None):
        for i in range(cycles + 1):  # in turn; cycle 0 warms up
            for name, model in variants.items():
                t = clock(lambda: model(images))
                if i:
                    times.setdefault(name, []).append(t)
    return {name: {"ms": median(ts), "x_swin": median(ts) / median(times["swin"])} for name, ts in times.items()}


def format_table(results: dict) -> str:
    lines = [f"device: {results['device']}, amp: {results['amp']}, torch {results['machine']['torch']}", ""]
    for key, rows in results["train"].items():
        full = rows.get("full", {}).get("step_ms")
        lines += [f"**{key}** ({results['settings'][key]})", "", "| method | step ms | x full | peak GiB | trainable |", "|---|---:|---:|---:|---:|"]
        for method, r in rows.items():
            peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
            ratio = f"{r['step_ms'] / full:.2f}" if full else "-"
            lines.append(f"| {method} | {r['step_ms']:.1f} | {ratio} | {peak} | {r['trainable']:,} |")
        lines.append("")
    for key, rows in results["infer"].items():
        lines += [f"**inference {key}**", "", "| model | ms | x swin |", "|---|---:|---:|"]
        lines += [f"| {name} | {r['ms']:.1f} | {r['x_swin']:.2f} |" for name, r in rows.items()]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--settings", nargs="+", default=["cls_b224", "dense_l512", "dense_b1024"], choices=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS, help="default: all (fewer on dense settings)")
    parser.add_argument("--amp", choices=list(AMP), default="bf16")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--compile-setting", default=None, choices=list(SETTINGS), help="add compiled full and mona rows here")
    parser.add_argument("--infer", default="cls_b224", choices=list(SETTINGS), help="inference setting (batch and batch 1)")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --device cpu for a smoke test)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()["cpu"]
    results: dict = {
        "device": name, "amp": args.amp, "machine": machine(), "args": vars(args) | {"out": str(args.out)},
        "settings": {k: f"{s.arch}, {s.size}px, batch {s.batch}{', dense' if s.dense else ''}" for k, s in SETTINGS.items()},
        "train": {}, "infer": {},
    }  # fmt: skip
    for key in args.settings:
        setting = SETTINGS[key]
        methods = args.methods or DENSE_METHODS.get(key, METHODS)
        rows = results["train"].setdefault(key, {})
        for method in methods:
            rows[method] = train_row(setting, method, device, args.amp, args.warmup, args.steps, compile_=False)
            print(f"[{key}] {method}: {rows[method]['step_ms']:.1f} ms, {rows[method]['peak_gib']} GiB", file=sys.stderr, flush=True)
        if args.compile_setting == key:
            for method in ("full", "mona"):
                rows[f"{method}+compile"] = train_row(setting, method, device, args.amp, args.warmup, args.steps, compile_=True)
    setting = SETTINGS[args.infer]
    for batch in (setting.batch, 1):
        results["infer"][f"{args.infer} b{batch}"] = infer_rows(setting, batch, device, args.amp, args.cycles)
    table = format_table(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return results


if __name__ == "__main__":
    main()
