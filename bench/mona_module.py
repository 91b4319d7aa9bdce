"""The Mona module alone: plain (public code's form) vs fast vs fused, inference and training.

Shapes are the Mona inputs of the benchmarked models (B, H, W, C). Inference times one forward
under ``torch.inference_mode`` (eval mode); training times forward + backward in train mode
(dropout on, same seed for both forms). One call of each in turn for ``--cycles`` cycles (all see
the same machine load); a ratio is the median over cycles of the ratio within a cycle.
``swin_t_all`` weights each Swin-T stage by its number of Mona modules (4, 4, 12, 4): the time of
all Monas of one Swin-T forward.

    OMP_WAIT_POLICY=PASSIVE python bench/mona_module.py --out module.json
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from harness import finish, machine, median, public_form, time_calls  # noqa: E402

# name -> (B, H, W, C, number of such Monas in the model)
SHAPES = {
    "swin_t_s1 (8,56,56,96)": (8, 56, 56, 96, 4),
    "swin_t_s2 (8,28,28,192)": (8, 28, 28, 192, 4),
    "swin_t_s3 (8,14,14,384)": (8, 14, 14, 384, 12),
    "swin_t_s4 (8,7,7,768)": (8, 7, 7, 768, 4),
    "swin_b_s1 (8,56,56,128)": (8, 56, 56, 128, 4),
    "dense512_s1 (2,128,128,96)": (2, 128, 128, 96, 4),
}
SWIN_T = [k for k in SHAPES if k.startswith("swin_t_")]
TINY = {"tiny (2,8,8,16)": (2, 8, 8, 16, 1)}


def forms(dim: int) -> dict[str, torch.nn.Module]:
    from monatune.layers.mona import Mona

    torch.manual_seed(0)
    fast = Mona(dim)
    plain = public_form(copy.deepcopy(fast))
    return {"plain": plain, "fast": fast, "fused": copy.deepcopy(fast).fuse_()}


def run_shape(shape: tuple[int, ...], cycles: int) -> dict:
    b, h, w, c, _ = shape
    mods = forms(c)
    x = torch.randn(b, h, w, c)
    xg = x.clone().requires_grad_()
    grad = torch.randn_like(x)

    def infer(m):
        return lambda: m(x)

    def train(m):
        def step() -> None:
            torch.manual_seed(1)
            m(xg).backward(grad)

        return step

    calls = {}
    for name, m in mods.items():
        calls[f"infer_{name}"] = (m, infer(m), False)
    for name in ("plain", "fast"):
        calls[f"train_{name}"] = (mods[name], train(mods[name]), True)
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(cycles):  # one call of each in turn: all see the same machine load
        for key, (m, fn, training) in calls.items():
            m.train(training)
            with torch.inference_mode(not training):
                times[key] += time_calls(fn, 1, warmup=1 if not times[key] else 0)
    summary = {k: median(v) for k, v in times.items()}
    summary |= {f"{k}_min": min(v) for k, v in times.items()}

    def ratio(a: str, b: str) -> float:
        return median([x / y for x, y in zip(times[a], times[b])])

    summary["infer_plain_over_fused"] = ratio("infer_plain", "infer_fused")
    summary["infer_plain_over_fast"] = ratio("infer_plain", "infer_fast")
    summary["train_plain_over_fast"] = ratio("train_plain", "train_fast")
    return {"times": times, "summary": summary}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="smoke test on one tiny shape")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes = TINY if args.tiny else SHAPES
    results: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "shapes": {}}
    for name, shape in shapes.items():
        results["shapes"][name] = run_shape(shape, args.cycles)
        s = results["shapes"][name]["summary"]
        print(f"[{name}] fused {s['infer_plain_over_fused']:.2f}x, train {s['train_plain_over_fast']:.2f}x", file=sys.stderr)
    if not args.tiny:
        results["swin_t_all"] = {
            key: sum(results["shapes"][k]["summary"][key] * SHAPES[k][4] for k in SWIN_T)
            for key in ("infer_plain", "infer_fast", "infer_fused", "train_plain", "train_fast")
        }
    return finish(results, args.out, format_table(results))


def format_table(results: dict) -> str:
    lines = [
        "| shape | infer plain ms | fast ms | fused ms | plain/fused | train plain ms | train fast ms | plain/fast |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = {k: v["summary"] for k, v in results["shapes"].items()}
    if "swin_t_all" in results:
        a = results["swin_t_all"]
        rows["all Monas of a Swin-T, b8"] = {
            **a,
            "infer_plain_over_fused": a["infer_plain"] / a["infer_fused"],
            "train_plain_over_fast": a["train_plain"] / a["train_fast"],
        }
    for name, s in rows.items():
        lines.append(
            f"| {name} | {s['infer_plain'] * 1e3:.2f} | {s['infer_fast'] * 1e3:.2f} | {s['infer_fused'] * 1e3:.2f} | "
            f"{s['infer_plain_over_fused']:.2f} | {s['train_plain'] * 1e3:.1f} | {s['train_fast'] * 1e3:.1f} | "
            f"{s['train_plain_over_fast']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
