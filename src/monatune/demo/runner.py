"""Fine-tune one small experiment per method with the real engine and collect comparable results."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
from torch import nn

from monatune.adapter_io import save_adapter
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


def _count(module: nn.Module) -> tuple[int, int]:
    params = {id(p): p for p in module.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _warm_up(task: DemoTask, method: str, quick: bool, out_dir: Path) -> None:
    """One untimed forward/backward, so the first method is not charged with one-off start-up costs."""
    cfg = task.make_config(method, quick, out_dir / "runs" / "warmup")
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


def run_demo(task: DemoTask, method_names: Sequence[str], out_dir: Path, quick: bool) -> dict[str, Any]:
    """Train every method, print the table, write loss_curves.png, results.json and mona.safetensors."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _quiet_lightning()
    rows, curves, epoch_curves = [], {}, {}
    started = time.perf_counter()
    _warm_up(task, method_names[0], quick, out_dir)
    for method in method_names:
        cfg = task.make_config(method, quick, out_dir / "runs" / method)
        L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
        module, data = task.make_module(cfg), task.make_data(cfg)
        history, cost = History(), RunCost()
        trainer = build_trainer(cfg, [history, cost], checkpoints=False, logging=False)
        trainer.fit(module, datamodule=data)
        metric = float(trainer.callback_metrics[task.metric_key])
        trainable, total = _count(task.backbone_of(module.model))
        rows.append(
            {
                "method": method,
                "trainable_params": trainable,
                "backbone_params": total,
                "trainable_percent": 100.0 * trainable / total,
                "metric": metric,
                "train_seconds": cost.train_seconds,
                "peak_memory_mb": cost.peak_memory_mb,
                "epochs": len(history.train_loss),
                "final_train_loss": history.train_loss[-1] if history.train_loss else float("nan"),
            }
        )
        curves[method] = history.step_loss
        epoch_curves[method] = history.train_loss
        if method == "mona":
            save_adapter(module.model, out_dir / "mona.safetensors")
        print(f"[{task.name}] {method}: {task.metric_label} = {metric:.2f} ({cost.train_seconds:.1f} s)", flush=True)
    print_table(f"monatune demo — {task.description}", rows, "metric", task.metric_label)
    longest = max((len(c) for c in curves.values()), default=1)
    plot = plot_loss_curves(curves, out_dir / "loss_curves.png", f"{task.name}: training loss per method", window=max(1, longest // 25))
    payload = {
        "task": task.name,
        "description": task.description,
        "metric": task.metric_label,
        "quick": quick,
        "results": rows,
        "loss_curves": curves,  # per training step
        "epoch_loss_curves": epoch_curves,
        "wall_seconds": time.perf_counter() - started,
    }
    write_results(out_dir / "results.json", payload)
    print(f"results: {out_dir / 'results.json'}  loss curves: {plot}" + ("  Mona adapter: " + str(out_dir / "mona.safetensors") if "mona" in method_names else ""))
    return payload
