"""FLOP rate of Mona's fast form in training, per stage of a Swin: how far it is from the backbone's.

For every stage shape (B, H, W, C) of Swin-T or Swin-B at 224 (batch 8): the median time of one
forward + backward of one Mona (train mode, dropout on), its counted matmul/conv FLOPs
(``arithmetic.counted_flops``), the rate, and the time of all the stage's Monas. Compare the rate
with full fine-tuning's whole-step rate (``arithmetic.py`` FLOPs over ``train_step.py`` time).

    OMP_WAIT_POLICY=PASSIVE python bench/mona_rate.py --model swin_b [--profile]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from arithmetic import counted_flops  # noqa: E402
from harness import finish, machine, median, time_calls  # noqa: E402

# model -> [(B, H, W, C, Monas at that stage)]: two per block, depths (2, 2, 6 | 18, 2)
STAGES = {
    "swin_t": [(8, 56, 56, 96, 4), (8, 28, 28, 192, 4), (8, 14, 14, 384, 12), (8, 7, 7, 768, 4)],
    "swin_b": [(8, 56, 56, 128, 4), (8, 28, 28, 256, 4), (8, 14, 14, 512, 36), (8, 7, 7, 1024, 4)],
    "tiny": [(2, 8, 8, 16, 2)],
}


def training_step(shape: tuple[int, ...]) -> Callable[[], None]:
    """Forward + backward of one Mona (train mode, dropout on) on a (B, H, W, C) input of ``shape``."""
    from monatune.layers.mona import Mona

    b, h, w, c = shape[:4]
    torch.manual_seed(0)
    mona = Mona(c).train()
    x = torch.randn(b, h, w, c, requires_grad=True)
    grad = torch.randn(b, h, w, c)

    def step() -> None:
        mona(x).backward(grad)

    return step


def profile_table(shape: tuple[int, ...], rows: int = 20) -> str:
    """torch.profiler's ops of three training steps of one Mona, by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    step = training_step(shape)
    time_calls(step, 0, warmup=3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        time_calls(step, 3, warmup=0)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def stage_rate(shape: tuple[int, int, int, int, int], repeats: int) -> dict[str, float]:
    count = shape[4]
    step = training_step(shape)
    flops = counted_flops(step)
    seconds = median(time_calls(step, repeats, warmup=2))
    return {"count": count, "step_ms": seconds * 1e3, "gflop": flops / 1e9, "gflop_per_s": flops / seconds / 1e9,
            "stage_ms": seconds * count * 1e3}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=list(STAGES), default="swin_b")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's op table of the first stage's Mona")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.profile:
        print(profile_table(STAGES[args.model][0]))
    results: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "stages": {}}
    for shape in STAGES[args.model]:
        results["stages"][str(shape[:4])] = stage_rate(shape, args.repeats)
    results["all_monas_ms"] = sum(s["stage_ms"] for s in results["stages"].values())
    return finish(results, args.out, format_table(results))


def format_table(results: dict) -> str:
    lines = ["| Mona input (B, H, W, C) | Monas | fwd+bwd ms | GFLOP | GFLOP/s | stage ms |", "|---|---:|---:|---:|---:|---:|"]
    for shape, s in results["stages"].items():
        lines.append(f"| {shape} | {s['count']} | {s['step_ms']:.1f} | {s['gflop']:.3f} | {s['gflop_per_s']:.1f} | {s['stage_ms']:.0f} |")
    lines.append(f"| all | | | | | {results['all_monas_ms']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
