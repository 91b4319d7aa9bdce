"""Fine-tune one small experiment per method with the real engine and collect comparable results."""

from __future__ import annotations

import importlib
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml
from torch import nn

from monatune.demo import DEMO_TASKS
from monatune.demo.report import markdown_table, plot_loss_curves, print_table, write_results
from monatune.configs import small_config
from monatune.engine.config import ExperimentConfig, load_config, parse_config
from monatune.engine.run import ADAPTER_FILE, task_builders
from monatune.engine.run import run as run_engine
from monatune.engine.tasks import get_task
from monatune.methods import methods as all_methods
from monatune.tuning import count_parameters


@dataclass
class DemoTask:
    """What a demo variant needs: its config per method. Module, data and the metric it reports come
    from the task registry (``monatune.engine.tasks``) of ``task``, as for ``monatune fit``."""

    name: str
    task: str  # a registered task name
    make_config: Callable[[str, bool, Path], ExperimentConfig]  # (method, quick, out_dir)
    backbone_of: Callable[[nn.Module], nn.Module]  # the tuned backbone inside module.model
    description: str = ""
    default_methods: str = "mona,full"
    quick_description: str = ""  # what --quick runs instead, where it differs

    @property
    def metric_key(self) -> str:
        return get_task(self.task).main_metric

    @property
    def metric_label(self) -> str:
        return get_task(self.task).metric_label


def small_config_run(
    config: str, method: str, out_dir: Path, setting: dict[str, Any], *, step_at: float | None = None
) -> ExperimentConfig:  # fmt: skip
    """The demo run of ``method``: the shipped small config ``config`` (``monatune.configs``) loaded as
    ``monatune fit --config`` loads it, with the demo's overrides: the method, its run folder, a line of
    log every 5 steps, and the ``setting`` (``backbone``, ``epochs``, ``num_train_images``,
    ``num_val_images``; absent keys keep the file's values). A dense task validates after the last
    epoch only (the table's metric) and writes its synthetic data under ``<demo out>/data/``;
    ``step_at``: a step schedule decays at that fraction of the epochs."""
    raw = yaml.safe_load(small_config(config).read_text())
    dense = raw["task"] != "classification"
    overrides = [f"model.method={method}", f"trainer.out_dir={out_dir}", "trainer.log_every_n_steps=5"]
    if "backbone" in setting:
        overrides.append(f"model.backbone={setting['backbone']}")
    for key in ("num_train_images", "num_val_images"):
        if key in setting:
            overrides.append(f"data.options.{key}={'null' if setting[key] is None else setting[key]}")
    if "epochs" in setting:
        epochs = setting["epochs"]
        overrides.append(f"trainer.max_epochs={epochs}")
        if dense:
            overrides.append(f"trainer.val_every_n_epochs={epochs}")
        if step_at is not None:
            overrides.append(f"optim.milestones=[{step_at * epochs}]")
    if dense:
        overrides.append(f"data.root={out_dir.parent.parent / 'data' / raw['data']['dataset']}")
    return load_config(small_config(config), overrides)


def dense_backbone(model: nn.Module) -> nn.Module:
    """The tuned backbone of a dense task's model (detector, segmenter): ``model.backbone``."""
    return model.backbone


def dense_demo_task(name: str, task: str, make_config: Callable[[str, bool, Path], ExperimentConfig], description: str) -> DemoTask:
    """The demo of a dense task: the tuned backbone at ``model.backbone``."""
    return DemoTask(name, task, make_config, backbone_of=dense_backbone, description=description)


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


def _warm_up(cfg: ExperimentConfig) -> None:
    """One untimed forward/backward, so the timed run is not charged with one-off start-up costs."""
    build_module, build_data = task_builders(cfg.task)
    module, data = build_module(cfg), build_data(cfg)
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


def train_method(task_name: str, cfg: ExperimentConfig) -> MethodRun:
    """Warm up, then ``monatune fit`` ``cfg`` (``monatune.engine.run.run``: the run folder gets its
    config.yaml, checkpoints, logs, curves.png and adapter.safetensors) and measure it.

    Runs in a process of its own (``run_in_own_process``): the peak memory (peak RSS on CPU, the CUDA
    allocator's peak on GPU) is then this method's alone, not raised by what an earlier method left."""
    task = demo_task(task_name)
    _quiet_lightning()
    _warm_up(cfg)
    result = run_engine("fit", cfg)
    trainable, total = count_parameters(task.backbone_of(result["module"].model))
    history = result["history"]
    row = {
        "method": cfg.model.method,
        "seed": cfg.trainer.seed,
        "backbone": cfg.model.backbone,
        "trainable_params": trainable,
        "backbone_params": total,
        "trainable_percent": 100.0 * trainable / total,
        "metric": result["metrics"][task.metric_key],
        "train_seconds": result["train_seconds"],
        "peak_memory_mb": result["peak_memory_mb"],
        "epochs": len(history["train_loss"]),
        "final_train_loss": history["train_loss"][-1] if history["train_loss"] else float("nan"),
    }
    return MethodRun(row, history["step_loss"], history["train_loss"])


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


def run_in_own_process(task_name: str, cfg: ExperimentConfig) -> MethodRun:
    """``train_method`` in a new process that exits afterwards (its errors are raised here)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=_process_context(task_name)) as pool:
        return pool.submit(train_method, task_name, cfg).result()


def with_seed(cfg: ExperimentConfig, seed: int, backbone: str | None = None) -> ExperimentConfig:
    """``cfg`` with ``trainer.seed`` = ``seed`` (initialisation of new layers, data order, augmentation,
    drop path; for digits also the stratified train/val split), and ``model.backbone`` when given."""
    raw = cfg.to_dict()
    raw["trainer"]["seed"] = seed
    if backbone is not None:
        raw["model"]["backbone"] = backbone
    return parse_config(raw)


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method (in first-seen order) over its seeds: the metric's mean, its sample standard
    deviation (0 for one seed), min, max and the values; mean train time and peak memory."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    summary = []
    for method, runs in by_method.items():
        values = [r["metric"] for r in runs]
        mean = sum(values) / len(values)
        spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
        summary.append(
            {
                "method": method,
                "seeds": [r["seed"] for r in runs],
                "trainable_params": runs[0]["trainable_params"],
                "backbone_params": runs[0]["backbone_params"],
                "trainable_percent": runs[0]["trainable_percent"],
                "metric": mean,
                "metric_std": spread,
                "metric_min": min(values),
                "metric_max": max(values),
                "metric_values": values,
                "train_seconds": sum(r["train_seconds"] for r in runs) / len(runs),
                "peak_memory_mb": sum(r["peak_memory_mb"] for r in runs) / len(runs),
            }
        )
    return summary


def run_demo(
    task: DemoTask, method_names: Sequence[str], out_dir: Path, quick: bool, seeds: int = 1, backbone: str | None = None
) -> dict[str, Any]:  # fmt: skip
    """Train every method for seeds 0..seeds-1, each run a ``monatune fit`` in its own process under
    ``out_dir/runs/<method>-seed<k>/``; print the table (mean and spread over the seeds), write
    loss_curves.png (seed 0), results.json and mona.safetensors (seed 0's adapter). ``task`` must be
    registered in ``monatune.demo.DEMO_TASKS``: the processes look it up by name. From a script, call
    it under ``if __name__ == "__main__":`` (the processes import the script, as ``multiprocessing`` does).
    ``backbone``: another backbone than the demo's (e.g. the embedded ViT ``vit_nano_synthetic``)."""
    if seeds < 1:
        raise ValueError(f"seeds: expected at least 1, got {seeds}")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, curves, epoch_curves = [], {}, {}
    started = time.perf_counter()
    for seed in range(seeds):
        for method in method_names:
            run_dir = out_dir / "runs" / f"{method}-seed{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)  # the demo's own folder: every demo starts afresh
            cfg = with_seed(task.make_config(method, quick, run_dir), seed, backbone)
            run = run_in_own_process(task.name, cfg)
            rows.append(run.row)
            if seed == 0:
                curves[method], epoch_curves[method] = run.step_loss, run.epoch_loss
                if method == "mona":
                    shutil.copyfile(run_dir / ADAPTER_FILE, out_dir / "mona.safetensors")
            print(
                f"[{task.name}] {method} seed {seed}: {task.metric_label} = {run.row['metric']:.2f} "
                f"({run.row['train_seconds']:.1f} s, {run.row['peak_memory_mb']:.0f} MiB)",
                flush=True,
            )
    summary = summarize(rows)
    backbone = rows[0]["backbone"] if rows else ""
    print_table(f"monatune demo — {task.description} ({backbone}, {seeds} seed{'s' if seeds > 1 else ''})", summary, "metric", task.metric_label)
    longest = max((len(c) for c in curves.values()), default=1)
    plot = plot_loss_curves(curves, out_dir / "loss_curves.png", f"{task.name}: training loss per method (seed 0)", window=max(1, longest // 25))
    payload = {
        "task": task.name,
        "description": task.description,
        "backbone": backbone,
        "metric": task.metric_label,
        "quick": quick,
        "seeds": seeds,
        "summary": summary,
        "results": rows,  # one per (seed, method)
        "peak_memory": "each method trains in its own process: peak RSS during training (CUDA: max_memory_allocated)",
        "loss_curves": curves,  # seed 0, per training step
        "epoch_loss_curves": epoch_curves,
        "wall_seconds": time.perf_counter() - started,
    }
    write_results(out_dir / "results.json", payload)
    (out_dir / "results.md").write_text(markdown_table(summary, "metric", task.metric_label))
    print(f"results: {out_dir / 'results.json'}  loss curves: {plot}" + ("  Mona adapter: " + str(out_dir / "mona.safetensors") if "mona" in method_names else ""))
    return payload
