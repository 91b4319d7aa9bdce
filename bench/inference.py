"""Inference latency: the plain Swin vs Mona-tuned Swin in the public code's form, the fast form and fused.

All variants share the backbone weights and run in this one process under
``torch.inference_mode``, one forward of each in turn for ``--cycles`` cycles, so all see the same
machine load; a ratio to the plain Swin is the median over cycles of the ratio within a cycle
(``x_swin``); the ratio of the fastest forwards (``x_swin_min``) is reported beside it.

    OMP_WAIT_POLICY=PASSIVE python bench/inference.py --settings swin_t_224 --out infer.json
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from harness import (  # noqa: E402
    SETTINGS, Setting, build_model, finish, machine, make_batch, median, public_form, time_calls,
)  # fmt: skip

VARIANTS = ("swin", "mona_plain", "mona_fast", "mona_fused")


def build_variants(setting: Setting) -> dict[str, torch.nn.Module]:
    import monatune
    from monatune.fuse import fuse

    torch.manual_seed(0)
    base, heads = build_model(setting)
    tuned = monatune.apply(copy.deepcopy(base), "mona", train_modules=heads)
    return {
        "swin": base.eval(),
        "mona_plain": public_form(copy.deepcopy(tuned)).eval(),
        "mona_fast": copy.deepcopy(tuned).eval(),
        "mona_fused": fuse(copy.deepcopy(tuned)),
    }


def run_setting(setting: Setting, batch: int, cycles: int) -> dict:
    models = build_variants(setting)
    images, _ = make_batch(Setting(setting.name, setting.arch, setting.size, batch, setting.dense))
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(images)  # warm up (oneDNN primitive creation, allocator)
        for _ in range(cycles):  # one forward of each variant in turn: all see the same load
            for name, model in models.items():
                times[name] += time_calls(lambda: model(images), 1, warmup=0)
    summary = {
        name: {
            "latency_s": median(t),
            "min_s": min(t),
            "x_swin": median([a / b for a, b in zip(t, times["swin"])]),
            "x_swin_min": min(t) / min(times["swin"]),
        }
        for name, t in times.items()
    }
    return {"batch": batch, "times": times, "summary": summary}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=[s for s in SETTINGS if s != "tiny"], choices=list(SETTINGS))
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="default: the setting's batch and 1")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "settings": {}}
    for name in args.settings:
        setting = SETTINGS[name]
        batches = args.batches or sorted({setting.batch, 1}, reverse=True)
        for batch in batches:
            key = f"{name}_b{batch}"
            results["settings"][key] = run_setting(setting, batch, args.cycles)
            print(f"[{key}] " + ", ".join(f"{k} {v['latency_s'] * 1e3:.1f} ms ({v['x_swin']:.2f}x)"
                  for k, v in results["settings"][key]["summary"].items()), file=sys.stderr, flush=True)  # fmt: skip
    return finish(results, args.out, format_table(results))


def format_table(results: dict) -> str:
    head = " | ".join(f"{v} ms (x swin; x swin of minima)" for v in VARIANTS)
    lines = [f"| setting, batch | {head} |", "|---|" + "---:|" * len(VARIANTS)]
    for key, data in results["settings"].items():
        s = data["summary"]
        cells = [f"{s[v]['latency_s'] * 1e3:.1f} ({s[v]['x_swin']:.2f}; {s[v]['x_swin_min']:.2f})" for v in VARIANTS]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
