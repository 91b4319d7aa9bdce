"""The demo's per-method measurements: each method trains in its own process."""

from __future__ import annotations

import pytest

from monatune.demo import classification
from monatune.demo.runner import demo_task, run_demo


def test_a_second_run_of_a_method_reads_the_same_peak_memory(tmp_path, monkeypatch):
    # The demo's own recipe, one step per run. Two runs of one method do the same seeded work from
    # the same start, so their peaks differ by allocator noise only (measured <= 8 MiB of ~835, 1 %);
    # when both ran in one process, the second read 49-64 MiB (4-6 %) higher, and a third higher still.
    monkeypatch.setitem(classification.QUICK, "epochs", 1)
    monkeypatch.setitem(classification.QUICK, "train_images", 32)
    first, second = (row["peak_memory_mb"] for row in run_demo(classification.DEMO, ["full", "full"], tmp_path, quick=True)["results"])
    assert first > 0 and abs(second - first) <= 0.02 * first, (first, second)


def test_demo_tasks_are_found_by_name():
    assert demo_task("classification") is classification.DEMO
    with pytest.raises(ValueError, match="valid: classification, detection, oriented, segmentation"):
        demo_task("depth")
