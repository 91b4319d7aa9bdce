"""Fine-tune one small experiment per method with the real engine and collect comparable results."""

from __future__ import annotations

import importlib
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
from torch import nn

from monatune.adapter_io import save_adapter
from monatune.demo import DEMO_TASKS
from monatune.demo.report import plot_loss_curves, print_table, write_results
from monatune.engine.callbacks import History, RunCost
from monatune.engine.config import ExperimentConfig
from monatune.engine.module import TunedModule
from monatune.engine.trainer import build_trainer
from monatune.methods import methods as all_methods


@dataclass
class DemoTask:
    """What a demo variant needs: configs per method, the module/data builders and the metric to report."""

    name: str
    metric_key: str  # e.g. "val/top1"
    metric_label: str  # column title
    make_config: Callable[[str, bool, Path], ExperimentConfig]  # (method, quick, out_dir)
    make_module: Callable[[ExperimentConfig], TunedModule]
    make_data: Callable[[ExperimentConfig], L.LightningDataModule]
    backbone_of: Callable[[nn.Module], nn.Module]  # the tuned backbone inside module.model
    description: str = ""


def dense_backbone(model: nn.Module) -> nn.Module:
    """The tuned backbone of a dense task's model (detector, segmenter): ``model.backbone``."""
    return model.backbone


def dense_demo_task(
    name: str,
    metric_key: str,
    metric_label: str,
    make_config: Callable[[str, bool, Path], ExperimentConfig],
    task_builders: tuple[Callable[[ExperimentConfig], TunedModule], Callable[[ExperimentConfig], L.LightningDataModule]],
    description: str,
) -> DemoTask:
    """The demo of a dense task: module and data from the task engine's ``builders()``, the tuned
    backbone at ``model.backbone``."""
    make_module, make_data = task_builders
    return DemoTask(
        name, metric_key, metric_label, make_config, make_module, make_data, backbone_of=dense_backbone, description=description
    )


def parse_methods(spec: str | Sequence[str]) -> list[str]:
    """``"all"`` or a comma list -> method names (ValueError naming unknown ones)."""
    names = all_methods() if spec == "all" else ([s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec))
    unknown = [n for n in names if n not in all_methods()]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; valid: all, {', '.join(all_methods())}")
    return names


def demo_task(name: str) -> DemoTask:
    """The registered demo ``name`` (``monatune.demo.DEMO_TASKS``)."""
    if name not in DEMO_TASKS:
        raise ValueError(f"unknown demo task {name!r}; valid: {', '.join(sorted(DEMO_TASKS))}")
    return importlib.import_module(DEMO_TASKS[name]).DEMO


def _count(module: nn.Module) -> tuple[int, int]:
    params = {id(p): p for p in module.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _warm_up(task: DemoTask, cfg: ExperimentConfig) -> None:
    """One untimed forward/backward, so the timed run is not charged with one-off start-up costs."""
    module, data = task.make_module(cfg), task.make_data(cfg)
    data.prepare_data()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    module.train()
    sum(module.compute_losses(batch).values()).backward()


def _quiet_lightning() -> None:
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


@dataclass
class MethodRun:
    """What one method's run returns to the demo: its table row and its loss curves."""

    row: dict[str, Any]
    step_loss: list[float]  # per training step
    epoch_loss: list[float]  # mean per epoch


def train_method(task_name: str, cfg: ExperimentConfig, adapter_path: Path | None = None) -> MethodRun:
    """Warm up, then train ``cfg`` through the engine and measure it; save the adapter if asked.

    Runs in a process of its own (``run_in_own_process``): the peak memory (peak RSS on CPU, the CUDA
    allocator's peak on GPU) is then this method's alone, not raised by what an earlier method left."""
    task = demo_task(task_name)
    _quiet_lightning()
    _warm_up(task, cfg)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    module, data = task.make_module(cfg), task.make_data(cfg)
    history, cost = History(), RunCost()
    trainer = build_trainer(cfg, [history, cost], checkpoints=False, logging=False)
    trainer.fit(module, datamodule=data)
    trainable, total = _count(task.backbone_of(module.model))
    row = {
        "method": cfg.model.method,
        "trainable_params": trainable,
        "backbone_params": total,
        "trainable_percent": 100.0 * trainable / total,
        "metric": float(trainer.callback_metrics[task.metric_key]),
        "train_seconds": cost.train_seconds,
        "peak_memory_mb": cost.peak_memory_mb,
        "epochs": len(history.train_loss),
        "final_train_loss": history.train_loss[-1] if history.train_loss else float("nan"),
    }
    if adapter_path is not None:
        save_adapter(module.model, adapter_path)
    return MethodRun(row, history.step_loss, history.train_loss)


def _process_context(task_name: str) -> BaseContext:
    """A fresh process per method. forkserver (where available) imports torch and the demo once and
    forks each method's process from that untouched server; spawn imports them again in each."""
    if "forkserver" not in multiprocessing.get_all_start_methods() or sys.platform == "darwin":
        return multiprocessing.get_context("spawn")  # macOS: no fork after torch is imported
    context = multiprocessing.get_context("forkserver")
    # Read when the server starts (the first method of this process); a server started earlier
    # without it only makes the children import what they need themselves.
    context.set_forkserver_preload([__name__, DEMO_TASKS.get(task_name, __name__)])
    return context


def run_in_own_process(task_name: str, cfg: ExperimentConfig, adapter_path: Path | None = None) -> MethodRun:
    """``train_method`` in a new process that exits afterwards (its errors are raised here)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=_process_context(task_name)) as pool:
        return pool.submit(train_method, task_name, cfg, adapter_path).result()


def run_demo(task: DemoTask, method_names: Sequence[str], out_dir: Path, quick: bool) -> dict[str, Any]:
    """Train every method, each in its own process, print the table, write loss_curves.png, results.json
    and mona.safetensors. ``task`` must be registered in ``monatune.demo.DEMO_TASKS``: the processes
    look it up by name. From a script, call it under ``if __name__ == "__main__":`` (the processes
    import the script, as ``multiprocessing`` does)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, curves, epoch_curves = [], {}, {}
    started = time.perf_counter()
    for method in method_names:
        cfg = task.make_config(method, quick, out_dir / "runs" / method)
        run = run_in_own_process(task.name, cfg, out_dir / "mona.safetensors" if method == "mona" else None)
        rows.append(run.row)
        curves[method], epoch_curves[method] = run.step_loss, run.epoch_loss
        print(f"[{task.name}] {method}: {task.metric_label} = {run.row['metric']:.2f} ({run.row['train_seconds']:.1f} s)", flush=True)
    print_table(f"monatune demo — {task.description}", rows, "metric", task.metric_label)
    longest = max((len(c) for c in curves.values()), default=1)
    plot = plot_loss_curves(curves, out_dir / "loss_curves.png", f"{task.name}: training loss per method", window=max(1, longest // 25))
    payload = {
        "task": task.name,
        "description": task.description,
        "metric": task.metric_label,
        "quick": quick,
        "results": rows,
        "peak_memory": "each method trains in its own process: peak RSS during training (CUDA: max_memory_allocated)",
        "loss_curves": curves,  # per training step
        "epoch_loss_curves": epoch_curves,
        "wall_seconds": time.perf_counter() - started,
    }
    write_results(out_dir / "results.json", payload)
    print(f"results: {out_dir / 'results.json'}  loss curves: {plot}" + ("  Mona adapter: " + str(out_dir / "mona.safetensors") if "mona" in method_names else ""))
    return payload
