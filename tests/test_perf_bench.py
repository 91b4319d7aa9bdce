"""The benchmark scripts run end to end on the tiny setting (smoke test; no timing is checked)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    import harness
    import inference
    import mona_module
    import train_step

    yield harness, inference, mona_module, train_step
    sys.path.remove(str(BENCH))


def test_train_step_time_and_memory_rows(bench):
    _, _, _, train_step = bench
    methods = ["full", "mona", "mona_plain", "mona_ckpt"]
    times = train_step.measure_time("tiny", methods, steps=2, warmup=0, threads=1)
    assert set(times) == set(methods) and all(len(t) == 2 for t in times.values())
    memory = {m: train_step.measure_memory("tiny", m, threads=1) for m in ("full", "mona_ckpt")}
    assert memory["full"]["peak_rss_mb"] >= memory["full"]["rss_before_training_mb"] > 0
    assert memory["mona_ckpt"]["saved_activations_mb"] is None
    memory["mona"] = memory["full"]
    summary = train_step.summarize({"full": memory["full"]}, [times])
    assert summary["full"]["time_vs_full"] == 1.0 and summary["full"]["mem_vs_full"] == 1.0
    assert train_step.groups_of(["full", "a", "mona", "b"], 2) == [["full", "mona"], ["full", "a"], ["full", "b"]]


def test_inference_and_module_benchmarks_run(bench):
    harness, inference, mona_module, _ = bench
    result = inference.run_setting(harness.SETTINGS["tiny"], batch=1, cycles=2)
    assert set(result["summary"]) == set(inference.VARIANTS)
    assert result["summary"]["swin"]["x_swin"] == 1.0
    assert "tiny" in inference.format_table({"settings": {"tiny_b1": result}})
    shape = next(iter(mona_module.TINY.values()))
    summary = mona_module.run_shape(shape, cycles=2)["summary"]
    assert {"infer_plain_over_fused", "train_plain_over_fast", "train_fast_min"} <= set(summary)


def test_gpu_script_runs_on_the_cpu(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        import gpu
    finally:
        sys.path.remove(str(BENCH))
    out = tmp_path / "gpu.json"
    methods = [m for m in gpu.METHODS if m != "mona_compiled"]  # (compiling: a minute here)
    args = ["--device", "cpu", "--settings", "tiny", "tiny_dense", "--methods", *methods, "--amp", "none", "--warmup", "1", "--steps", "1"]
    results = gpu.main([*args, "--infer", "tiny", "--cycles", "1", "--out", str(out)])  # (no --compile-setting: minutes here)
    tiny = results["train"]["tiny"]
    assert set(tiny) == set(methods) and set(results["train"]["tiny_dense"]) == set(methods)
    trainable = {m: r["trainable"] for m, r in tiny.items()}
    assert trainable["full"] > trainable["mona"] == trainable["mona_fast"] == trainable["mona_public"] > trainable["normtuning"]
    assert all(r["step_ms"] > 0 for r in tiny.values())
    assert set(results["infer"]) == {"tiny b2", "tiny b1"} and results["infer"]["tiny b1"]["swin"]["x_swin"] == 1.0
    assert out.is_file() and "mona_fused" in out.with_suffix(".md").read_text()


def test_flop_count_of_a_depthwise_conv_step_is_three_forwards(bench):
    sys.path.insert(0, str(BENCH))
    try:
        import arithmetic
    finally:
        sys.path.remove(str(BENCH))
    import torch

    conv = torch.nn.Conv2d(64, 64, 7, padding=3, groups=64)
    x = torch.randn(2, 64, 12, 12, requires_grad=True)
    forward = 2 * 2 * 12 * 12 * 64 * 49  # multiply-adds of every output position, x2
    assert arithmetic.counted_flops(lambda: conv(x)) == forward
    # grad-input and grad-weight each cost one forward (torch's own formula counts the grouped
    # weight gradient 64x too high)
    assert arithmetic.counted_flops(lambda: conv(x).sum().backward()) == 3 * forward
    x.requires_grad_(False)
    assert arithmetic.counted_flops(lambda: conv(x).sum().backward()) == 2 * forward
    # transposed convs keep torch's own formula
    from torch.utils.flop_counter import FlopCounterMode

    up = torch.nn.ConvTranspose2d(4, 4, 3)
    y = torch.randn(1, 4, 8, 8, requires_grad=True)
    reference = FlopCounterMode(display=False)
    with reference:
        up(y).sum().backward()
    assert arithmetic.counted_flops(lambda: up(y).sum().backward()) == reference.get_total_flops() > 0


def test_arithmetic_floors(bench):
    sys.path.insert(0, str(BENCH))
    try:
        import arithmetic
    finally:
        sys.path.remove(str(BENCH))
    setting = bench[0].SETTINGS["tiny"]
    train = arithmetic.training_flops(setting, ("full", "normtuning", "mona"))
    # a frozen backbone skips the weight gradients: about 2 of full's 3 forward-equivalents
    assert 0.6 < train["normtuning"] / train["full"] < 0.75
    assert train["mona"] > train["normtuning"]
    infer = arithmetic.inference_flops(setting)
    assert infer["mona_fused"] > infer["swin"] > 0
    report = {"settings": {"tiny": {"summary": {"normtuning": {"time_vs_full": 0.7}}}}}
    floors = arithmetic.floors(infer, train, arithmetic.measured_normtuning(report, "tiny"))
    expected = 0.7 + (train["mona"] - train["normtuning"]) / train["full"]
    assert floors["train_mona_x_full_given_measured_normtuning"] == pytest.approx(expected)
    assert floors["inference_fused_x_swin"] == infer["mona_fused"] / infer["swin"]
    assert arithmetic.floors(infer, train, None)["train_mona_x_full_given_measured_normtuning"] is None


def test_mona_rate_counts_the_flops_of_each_stage(bench):
    sys.path.insert(0, str(BENCH))
    try:
        import mona_rate
    finally:
        sys.path.remove(str(BENCH))
    results = mona_rate.main(["--model", "tiny", "--repeats", "1", "--threads", "1"])
    (stage,) = results["stages"].values()
    b, h, w, c = 2, 8, 8, 16
    forward = 2 * b * h * w * (2 * c * 64 + 49 * 64 + 64 * 64)  # project1+2, 7x7 depthwise, projector
    # training: forward, recomputation in backward, and the gradients: several forwards' worth
    assert 3 * forward < stage["gflop"] * 1e9 < 6 * forward
    assert stage["stage_ms"] == stage["step_ms"] * stage["count"]


def test_depthwise_weight_grad_bench_and_mona_profile_run(bench):
    sys.path.insert(0, str(BENCH))
    try:
        import depthwise_weight_grad
        import mona_rate
    finally:
        sys.path.remove(str(BENCH))
    results = depthwise_weight_grad.main(["--shape", "1", "8", "8", "4"])
    assert len(results) == 8 and all(r["ms"] > 0 for r in results.values())
    diffs = [r["max_diff"] for r in results.values() if r["max_diff"] is not None]
    assert len(diffs) == 7 and max(diffs) < 1e-4  # every gradient way agrees with the tiled form
    assert "aten::mm" in mona_rate.profile_table((2, 8, 8, 16))


def test_launch_count_counts_leaf_ops_only_and_each_form_of_mona(bench):
    import launch_count
    import torch

    a, b = torch.randn(3), torch.randn(3)
    leaves, computing = launch_count.leaf_aten_events(lambda: torch.nn.functional.linear(a.view(1, 3), b.view(1, 3)))
    assert "aten::linear" not in leaves  # a parent op is not a leaf
    assert all(op not in computing for op in launch_count.NO_KERNEL) and sum(computing.values()) < sum(leaves.values())
    for name, module in launch_count.forms(8, compiled=False).items():
        x = torch.randn(1, 4, 4, 8, requires_grad=True)
        forward_only = sum(launch_count.leaf_aten_events(lambda: module(x))[0].values())
        both = sum(launch_count.count_form(module, (1, 4, 4, 8))[0].values())
        assert both > forward_only > 10, (name, forward_only, both)  # the backward's ops are counted too


def test_the_gpu_path_needs_at_most_a_third_of_the_fast_forms_launches(bench):
    """Issue 13's target, at a small shape (the op count does not depend on the sizes): the compiled
    lean form (inductor; each generated kernel counted) against the fast form the issue started from;
    the eager lean form has fewer too. Counts, not times: deterministic."""
    import launch_count

    counts = {name: launch_count.count_form(module, (2, 8, 8, 16)) for name, module in launch_count.forms(16).items()}
    total = {name: sum(leaves.values()) for name, (leaves, _) in counts.items()}
    computing = {name: sum(c.values()) for name, (_, c) in counts.items()}
    assert counts["compiled"][0]["inductor kernel"] >= 5  # the generated kernels are counted
    assert 3 * total["compiled"] <= total["fast"] and 3 * computing["compiled"] <= computing["fast"], (total, computing)
    assert total["lean"] < total["fast"] and computing["lean"] < computing["fast"]
