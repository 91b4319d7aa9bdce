"""The demo's per-method measurements: each method trains in its own process."""

from __future__ import annotations

import pytest

from monatune.demo import classification
from monatune.demo.report import markdown_table
from monatune.demo.runner import demo_task, parse_methods, run_demo, summarize


def test_a_second_run_of_a_method_reads_the_same_peak_memory(tmp_path, monkeypatch):
    # The demo's own recipe, one step per run. Two runs of one method do the same seeded work from
    # the same start, so their peaks differ by allocator noise only (measured <= 8 MiB of ~835, 1 %, alone;
    # 19 MiB, 2.3 %, once beside the other pytest worker); when both ran in one process, the second read
    # 49-64 MiB (4-6 %) higher, and a third higher still.
    monkeypatch.setitem(classification.QUICK, "epochs", 1)
    monkeypatch.setitem(classification.QUICK, "num_train_images", 32)
    first, second = (row["peak_memory_mb"] for row in run_demo(classification.DEMO, ["full", "full"], tmp_path, quick=True)["results"])
    assert first > 0 and abs(second - first) <= 0.03 * first, (first, second)


def test_demo_tasks_are_found_by_name():
    assert demo_task("classification") is classification.DEMO
    with pytest.raises(ValueError, match="valid: classification, detection, oriented, segmentation"):
        demo_task("depth")


def test_summary_gives_mean_and_sample_spread_per_method():
    rows = [
        {"method": "mona", "seed": s, "metric": m, "trainable_params": 7, "backbone_params": 100, "trainable_percent": 7.0,
         "train_seconds": t, "peak_memory_mb": 10.0}
        for s, m, t in ((0, 90.0, 1.0), (1, 92.0, 3.0), (2, 94.0, 2.0))
    ] + [{"method": "full", "seed": 0, "metric": 80.0, "trainable_params": 100, "backbone_params": 100,
          "trainable_percent": 100.0, "train_seconds": 5.0, "peak_memory_mb": 20.0}]  # fmt: skip
    mona, full = summarize(rows)
    assert (mona["method"], mona["metric"], mona["metric_std"], mona["metric_values"]) == ("mona", 92.0, 2.0, [90.0, 92.0, 94.0])
    assert (mona["metric_min"], mona["metric_max"], mona["train_seconds"], mona["seeds"]) == (90.0, 94.0, 2.0, [0, 1, 2])
    assert (full["metric"], full["metric_std"]) == (80.0, 0.0)
    table = markdown_table([mona, full], "metric", "top-1 (%)")
    assert "| mona | 7 | 7.00 | 92.00 ± 2.00 | 90.00, 92.00, 94.00 |" in table and "| full |" in table


def test_seeds_run_through_the_fit_engine_each_in_its_own_run_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(classification.QUICK, "epochs", 1)
    monkeypatch.setitem(classification.QUICK, "num_train_images", 32)
    payload = run_demo(classification.DEMO, ["mona"], tmp_path, quick=True, seeds=2)
    assert [(r["method"], r["seed"]) for r in payload["results"]] == [("mona", 0), ("mona", 1)]
    assert payload["summary"][0]["metric_values"] == [r["metric"] for r in payload["results"]]
    for seed in (0, 1):  # what `monatune fit` writes into a run folder
        run = tmp_path / "runs" / f"mona-seed{seed}"
        assert (run / "config.yaml").is_file() and (run / "adapter.safetensors").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
        assert f"seed: {seed}" in (run / "config.yaml").read_text()
    assert (tmp_path / "mona.safetensors").read_bytes() == (tmp_path / "runs" / "mona-seed0" / "adapter.safetensors").read_bytes()
    assert "± " in (tmp_path / "results.md").read_text()


def test_the_main_demo_tunes_mona_full_and_lora_on_the_mini_backbone(tmp_path):
    full, quick = classification.make_config("mona", False, tmp_path), classification.make_config("mona", True, tmp_path)
    assert (full.model.backbone, quick.model.backbone) == ("swin_mini_synthetic", "swin_nano_synthetic")
    assert parse_methods(classification.DEMO.default_methods) == ["mona", "full", "lora"]
    with pytest.raises(ValueError, match="seeds"):
        run_demo(classification.DEMO, ["mona"], tmp_path, quick=True, seeds=0)


def test_the_demo_takes_another_backbone(tmp_path, monkeypatch):
    """``monatune demo --backbone NAME``: every run of the demo on that backbone (quick runs the nano
    Swin; here the mini one)."""
    monkeypatch.setitem(classification.QUICK, "epochs", 1)
    monkeypatch.setitem(classification.QUICK, "num_train_images", 32)
    result = run_demo(classification.DEMO, ["lora"], tmp_path, quick=True, backbone="swin_mini_synthetic")
    assert [r["backbone"] for r in result["results"]] == ["swin_mini_synthetic"]
    assert "backbone: swin_mini_synthetic" in (tmp_path / "runs" / "lora-seed0" / "config.yaml").read_text()
