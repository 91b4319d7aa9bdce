"""The weight gradient of Mona's 7x7 depthwise conv on CPU: each way PyTorch offers, against the
forward conv with the same multiply-adds.

Ways: monatune's tiled forward conv (``depthwise_weight_grad``, tile sizes 4-56) and oneDNN's own
``convolution_backward`` with channels-last and with contiguous NCHW inputs (the copies included).
Median of 7 calls each; the largest difference from the tiled result is printed beside each time.

    OMP_WAIT_POLICY=PASSIVE python bench/depthwise_weight_grad.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from harness import median, time_calls  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, dict[str, float | None]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=4, default=[8, 56, 56, 64], help="B H W n (default: Swin stage 1, n = 64)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from monatune.layers.mona_fast import depthwise_weight_grad as _depthwise_weight_grad

    b, h, w, n = args.shape
    x, g, kernel = torch.randn(b, h, w, n), torch.randn(b, h, w, n), torch.randn(n, 1, 7, 7)
    x_cl, g_cl = x.permute(0, 3, 1, 2), g.permute(0, 3, 1, 2)  # channels-last views

    def onednn(x_in: torch.Tensor, g_in: torch.Tensor) -> torch.Tensor:
        mask = [False, True, False]
        return torch.ops.aten.convolution_backward(g_in, x_in, kernel, None, [1, 1], [3, 3], [1, 1], False, [0, 0], n, mask)[1]

    reference = _depthwise_weight_grad(x, g, 7)
    ways = {
        "forward conv (same multiply-adds)": lambda: F.conv2d(x_cl, kernel, padding=3, groups=n),
        "oneDNN backward, channels-last": lambda: onednn(x_cl, g_cl),
        "oneDNN backward, NCHW (with copies)": lambda: onednn(x_cl.contiguous(), g_cl.contiguous()),
        **{f"tiled forward conv, tile {t}": (lambda t=t: _depthwise_weight_grad(x, g, 7, tile=t)) for t in (4, 8, 14, 28, 56)},
    }
    results: dict[str, dict[str, float | None]] = {}
    for name, fn in ways.items():
        ms = median(time_calls(fn, 7, warmup=1)) * 1e3
        diff = None if name.startswith("forward") else float((fn() - reference).abs().max())
        results[name] = {"ms": ms, "max_diff": diff}
        print(f"{name:38s} {ms:7.2f} ms" + ("" if diff is None else f"  max diff {diff:.1e}"))
    return results


if __name__ == "__main__":
    main()
