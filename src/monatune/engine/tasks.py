"""The task registry: what a task is, in one record per task folder.

Each folder ``monatune/tasks/<name>/`` holds a ``task.py`` whose ``TASK`` is a :class:`Task`: how to
build the LightningModule and the LightningDataModule from a config, how to predict on image files,
and the metric it is judged by. ``TASK_NAMES`` lists the folders; the engine (fit/validate/test,
predict), the config check, the plots and the demo ask :func:`get_task`. A folder is imported when its
task is first asked for, so the CLI starts without loading every detector.

Adding a task: a folder under ``monatune/tasks/`` with its ``task.py``, and its name here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import lightning as L

    from monatune.engine.config import ExperimentConfig

# One line per task folder (monatune/tasks/<name>/task.py).
TASK_NAMES: tuple[str, ...] = ("classification", "detection", "instance_segmentation", "semantic_segmentation", "oriented")

# (module in eval mode, config, image paths, output folder, options) -> files written
Predictor = Callable[[Any, "ExperimentConfig", list[Path], Path, dict[str, Any]], list[Path]]


@dataclass(frozen=True)
class Task:
    """One task: builders from a config, the predictor, and its main validation metric."""

    name: str
    build_module: Callable[[ExperimentConfig], L.LightningModule]
    build_data: Callable[[ExperimentConfig], L.LightningDataModule]
    predict: Predictor
    main_metric: str  # the logged key it is judged by, e.g. "val/top1"
    metric_label: str  # how tables name it, e.g. "top-1 (%)"


def get_task(name: str) -> Task:
    """The registered task ``name``."""
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(TASK_NAMES)}")
    task = importlib.import_module(f"monatune.tasks.{name}.task").TASK
    if not isinstance(task, Task) or task.name != name:
        raise TypeError(f"monatune.tasks.{name}.task.TASK must be the Task named {name!r}, got {task!r}")
    return task


__all__ = ["TASK_NAMES", "Predictor", "Task", "get_task"]
