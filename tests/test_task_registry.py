"""One task registry (``engine.tasks``): every task folder has one ``TASK`` record, and the engine,
the config check, predict, plots and the demo all read it."""

from __future__ import annotations

from pathlib import Path

import pytest

import monatune
from monatune.demo import DEMO_TASKS
from monatune.demo.runner import demo_task
from monatune.engine import config, run
from monatune.engine.tasks import TASK_NAMES, Task, get_task

TASKS_DIR = Path(monatune.__file__).parent / "tasks"


def test_the_registered_names_are_exactly_the_task_folders():
    folders = {p.parent.name for p in TASKS_DIR.glob("*/task.py")}
    assert set(TASK_NAMES) == folders and len(TASK_NAMES) == 5
    assert config.TASKS == TASK_NAMES  # the config check reads the registry
    assert not list(TASKS_DIR.glob("*/engine.py"))  # the per-folder wiring shims are gone


@pytest.mark.parametrize("name", TASK_NAMES)
def test_each_task_folder_registers_one_complete_record(name):
    task = get_task(name)
    assert isinstance(task, Task) and task.name == name
    assert callable(task.build_module) and callable(task.build_data) and callable(task.predict)
    assert task.main_metric.startswith("val/") and task.metric_label
    assert run.task_builders(name) == (task.build_module, task.build_data)


def test_an_unknown_task_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid: classification, detection"):
        get_task("depth")


@pytest.mark.parametrize("demo", sorted(DEMO_TASKS))
def test_each_demo_runs_a_registered_task_and_reports_its_main_metric(demo):
    spec = demo_task(demo)
    assert spec.make_config("mona", True, Path("unused")).task == spec.task
    task = get_task(spec.task)
    assert (spec.metric_key, spec.metric_label) == (task.main_metric, task.metric_label)
