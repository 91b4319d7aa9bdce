"""Run every benchmark once and write one JSON + one markdown report.

    OMP_WAIT_POLICY=PASSIVE python bench/run_all.py --out-dir bench/results

Order: the Mona module alone, inference latency, training step time and memory of every method
(one subprocess per measurement), then the arithmetic floors (``arithmetic.py``: FLOPs counted,
no timing). Each part interleaves its own comparisons. Pass
``--quick`` for a smoke run on the tiny setting (seconds, numbers meaningless).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import arithmetic  # noqa: E402
import inference  # noqa: E402
import mona_module  # noqa: E402
import train_step  # noqa: E402
from harness import machine  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    t = str(args.threads)
    start = time.time()
    if args.quick:
        module = mona_module.main(["--tiny", "--cycles", "2", "--threads", t])
        infer = inference.main(["--settings", "tiny", "--cycles", "2", "--threads", t])
        train = train_step.main(["--settings", "tiny", "--methods", "full", "mona", "--steps", "1",
                                 "--warmup", "0", "--threads", t])  # fmt: skip
        floors = arithmetic.main(["--settings", "tiny", "--threads", t], train_results=train)
    else:
        module = mona_module.main(["--threads", t])
        infer = inference.main(["--threads", t])
        train = train_step.main(["--threads", t])
        floors = arithmetic.main(["--threads", t], train_results=train)
    report = {"machine": machine(), "command": " ".join(sys.argv), "wall_s": time.time() - start,
              "mona_module": module, "inference": infer, "train_step": train, "arithmetic": floors}  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = args.out_dir / f"bench-{stamp}.json"
    json_path.write_text(json.dumps(report, indent=1))
    md = [
        f"machine: {json.dumps(report['machine'])}",
        f"load average before: {module['machine']['load_avg_1_5_15']}, after: {report['machine']['load_avg_1_5_15']}",
        f"wall time: {report['wall_s'] / 60:.1f} min",
        "\n## Mona module alone\n", mona_module.format_table(module),
        "\n## Inference latency\n", inference.format_table(infer),
        "\n## Training step\n", train_step.format_table(train),
        "\n## Arithmetic floors (Mona at the backbone's FLOP efficiency)\n", arithmetic.format_table(floors),
    ]  # fmt: skip
    md_path = json_path.with_suffix(".md")
    md_path.write_text("\n".join(md) + "\n")
    print(f"wrote {json_path} and {md_path}")
    return md_path


if __name__ == "__main__":
    main()
