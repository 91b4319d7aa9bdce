"""Arithmetic floors of issue 6's targets: what Mona would cost at the backbone's own efficiency.

Counts the matmul/conv FLOPs (``torch.utils.flop_counter.FlopCounterMode``) that each variant
really executes — one inference forward, and one training step (forward + backward, including the
fast form's recomputation in backward) — and turns them into the ratio a variant would reach if it
ran every FLOP as efficiently as the plain backbone does:

- inference floor = FLOPs(Mona fused forward) / FLOPs(plain Swin forward);
- training floor = FLOPs(method step) / FLOPs(full step), and, given a ``train_step.py`` report
  (``--train-results``), the sharper ``measured normtuning ratio + (FLOPs(mona) -
  FLOPs(normtuning)) / FLOPs(full)``: the frozen backbone's measured cost plus Mona's extra FLOPs
  at full fine-tuning's FLOP rate.

A target below its floor cannot be met by any exact implementation that is not more efficient per
FLOP than the backbone's own large matmuls. Elementwise work (LayerNorm, gelu, softmax) is not
counted: the floors are lower bounds.

    OMP_WAIT_POLICY=PASSIVE python bench/arithmetic.py --train-results bench/results/train.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch.utils import flop_counter  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from harness import SETTINGS, Setting, build_model, finish, loss_fn, machine, make_batch  # noqa: E402
from train_step import build_trainer  # noqa: E402

TRAIN_METHODS = ("full", "normtuning", "mona", "mona_plain")


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:  # fmt: skip
    """FLOPs of ``aten.convolution_backward``: each of grad-input and grad-weight costs one forward.

    torch's own formula (2.x) counts a grouped conv's weight gradient as if it were dense, n times
    too many for an n-channel depthwise conv; a weight (c_out, c_in / groups, *k) already holds the
    grouping, so one forward is 2 * batch * output positions * numel(weight)."""
    if transposed:
        return _TORCH_CONV_BACKWARD(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                                    transposed, _output_padding, _groups, output_mask, out_val=out_shape)  # fmt: skip
    forward = 2 * grad_out_shape[0] * math.prod(grad_out_shape[2:]) * math.prod(w_shape)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


_TORCH_CONV_BACKWARD = flop_counter.conv_backward_flop


def counted_flops(run) -> int:
    """Matmul/conv FLOPs (2 per multiply-add) of ``run()``."""
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops})
    with counter:
        run()
    return counter.get_total_flops()


def inference_flops(setting: Setting) -> dict[str, int]:
    """FLOPs of one forward of the plain model and of the Mona-tuned, fused one."""
    import monatune

    torch.manual_seed(0)
    base, heads = build_model(setting)
    fused = monatune.fuse(monatune.apply(copy.deepcopy(base), "mona", train_modules=heads))
    images, _ = make_batch(setting)
    with torch.inference_mode():
        return {"swin": counted_flops(lambda: base.eval()(images)), "mona_fused": counted_flops(lambda: fused(images))}


def training_flops(setting: Setting, methods: tuple[str, ...] = TRAIN_METHODS) -> dict[str, int]:
    """FLOPs of one training step (forward, loss, backward; the optimizer has none) per method."""
    torch.manual_seed(0)
    base, heads = build_model(setting)
    images, labels = make_batch(setting)
    flops = {}
    for method in methods:
        model, _ = build_trainer(base, heads, method, setting)
        flops[method] = counted_flops(lambda: loss_fn(model(images), labels).backward())
    return flops


def floors(infer: dict[str, int], train: dict[str, int], normtuning_measured: float | None) -> dict[str, float | None]:
    """The equal-efficiency floors of the issue-6 ratios (see the module docstring)."""
    out: dict[str, float | None] = {"inference_fused_x_swin": infer["mona_fused"] / infer["swin"]}
    for method in train:
        out[f"train_{method}_x_full"] = train[method] / train["full"]
    out["train_mona_x_full_given_measured_normtuning"] = (
        None if normtuning_measured is None else normtuning_measured + (train["mona"] - train["normtuning"]) / train["full"]
    )
    return out


def measured_normtuning(train_results: dict | None, setting: str) -> float | None:
    """normtuning's measured step time x full from a ``train_step.py`` report, if it has one."""
    if not train_results or setting not in train_results.get("settings", {}):
        return None
    row = train_results["settings"][setting]["summary"].get("normtuning")
    return None if row is None else row["time_vs_full"]


def main(argv: list[str] | None = None, train_results: dict | None = None) -> dict:
    """CLI; ``train_results`` (a ``train_step.main`` result) may be passed in directly."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=[s for s in SETTINGS if s != "tiny"], choices=list(SETTINGS))
    parser.add_argument("--train-results", type=Path, default=None, help="a train_step.py or run_all.py JSON report")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.train_results:
        train_results = json.loads(args.train_results.read_text())
    if train_results and "train_step" in train_results:  # a run_all.py report
        train_results = train_results["train_step"]
    results: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "settings": {}}
    for name in args.settings:
        setting = SETTINGS[name]
        infer, train = inference_flops(setting), training_flops(setting)
        results["settings"][name] = {
            "inference_gflop": {k: v / 1e9 for k, v in infer.items()},
            "train_step_gflop": {k: v / 1e9 for k, v in train.items()},
            "floors": floors(infer, train, measured_normtuning(train_results, name)),
        }
        print(f"[{name}] {results['settings'][name]['floors']}", file=sys.stderr, flush=True)
    return finish(results, args.out, format_table(results))


def format_table(results: dict) -> str:
    lines = [
        "| setting | inference GFLOP swin / mona fused | floor x swin | train GFLOP full / normtuning / mona "
        "/ mona_plain | floor x full: normtuning, mona, mona_plain | mona floor given measured normtuning |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, data in results["settings"].items():
        i, t, f = data["inference_gflop"], data["train_step_gflop"], data["floors"]
        given = f["train_mona_x_full_given_measured_normtuning"]
        lines.append(
            f"| {name} | {i['swin']:.1f} / {i['mona_fused']:.1f} | {f['inference_fused_x_swin']:.3f} | "
            f"{t['full']:.1f} / {t['normtuning']:.1f} / {t['mona']:.1f} / {t['mona_plain']:.1f} | "
            f"{f['train_normtuning_x_full']:.3f}, {f['train_mona_x_full']:.3f}, {f['train_mona_plain_x_full']:.3f} | "
            f"{'-' if given is None else f'{given:.3f}'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
