"""Run an experiment: fit / validate / test one config with the task's module and data."""

from __future__ import annotations

import importlib
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import yaml

from monatune.adapter_io import load_adapter, save_adapter
from monatune.engine.callbacks import History, RNGState, RunCost
from monatune.engine.checkpoint_io import SafeCheckpointIO
from monatune.engine.config import ExperimentConfig
from monatune.engine.trainer import build_trainer

TaskBuilders = tuple[Callable[[ExperimentConfig], L.LightningModule], Callable[[ExperimentConfig], L.LightningDataModule]]


# task -> "module:function" returning (build_module(cfg), build_data(cfg)); imported on first use.
TASKS: dict[str, str] = {
    "classification": "monatune.tasks.classification.engine:builders",
    "detection": "monatune.tasks.detection.engine:builders",
    "instance_segmentation": "monatune.tasks.instance_segmentation.engine:builders",
    "semantic_segmentation": "monatune.tasks.semantic_segmentation.engine:builders",
    "oriented": "monatune.tasks.oriented.engine:builders",
}


def task_builders(task: str) -> TaskBuilders:
    """The (module builder, data builder) pair of ``task``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    module_name, func = TASKS[task].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"task {task!r} is not available in this build ({exc})") from exc
    return getattr(module, func)()


def resolve_ckpt(out_dir: Path, ckpt: str | None) -> str | None:
    """``last`` -> the run's last.ckpt (None when there is none yet, i.e. a fresh start)."""
    if ckpt != "last":
        return ckpt
    last = out_dir / "checkpoints" / "last.ckpt"
    return str(last) if last.is_file() else None


ADAPTER_FILE = "adapter.safetensors"
CURVES_FILE = "curves.png"


def run(
    command: str,
    cfg: ExperimentConfig,
    ckpt: str | None = None,
    adapter: str | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> dict[str, Any]:
    """Run ``fit``, ``validate`` or ``test``; returns the final metrics and run cost.

    ``fit`` ends by writing the adapter file (trained tensors only) to ``out_dir/adapter.safetensors``
    and the training-loss and validation-metric curves to ``out_dir/curves.png``.
    ``adapter``: for validate/test, an adapter file loaded into the freshly built model (instead of
    ``ckpt``). ``callbacks``: more Lightning callbacks (``monatune smoke``'s step timer). Only ``fit``
    writes ``out_dir/config.yaml`` (the run's own config)."""
    if adapter is not None and command == "fit":
        raise ValueError("--adapter is for validate/test; fit resumes from --ckpt")
    if adapter is not None and ckpt is not None:
        raise ValueError("give --adapter or --ckpt, not both (the checkpoint would replace the adapter's tensors)")
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    out_dir = Path(cfg.trainer.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if command == "fit":
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    build_module, build_data = task_builders(cfg.task)
    module, data = build_module(cfg), build_data(cfg)
    if adapter is not None:
        load_adapter(module.model, adapter)
    history, cost = History(out_dir / "history.json"), RunCost()
    trainer = build_trainer(cfg, [history, RNGState(), cost, *callbacks], checkpoints=command == "fit")
    ckpt_path = resolve_ckpt(out_dir, ckpt)
    if command == "fit":
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
        failure = None
        if trainer.is_global_zero:
            try:
                save_adapter(module.model, out_dir / ADAPTER_FILE)
            except Exception as exc:  # reached the barrier first, so other DDP ranks do not hang
                failure = exc
            _plot_curves(cfg.model.method, history, out_dir / CURVES_FILE)
        trainer.strategy.barrier()  # every rank returns once the adapter file is there
        if failure is not None:
            raise failure
    elif command == "validate":
        metrics = trainer.validate(module, datamodule=data, ckpt_path=ckpt_path, verbose=False)[0]
    elif command == "test":
        metrics = trainer.test(module, datamodule=data, ckpt_path=ckpt_path, verbose=False)[0]
    else:
        raise ValueError(f"unknown command {command!r}; valid: fit, validate, test")
    return {
        "metrics": {k: float(v) for k, v in metrics.items()},
        "global_step": trainer.global_step,
        "train_seconds": cost.train_seconds,
        "peak_memory_mb": cost.peak_memory_mb,
        "history": history.as_dict(),
        "module": module,
    }


def _plot_curves(label: str, history: History, path: Path) -> None:
    """curves.png of a finished fit; a plotting failure warns instead of failing the trained run."""
    try:
        from monatune.plots import plot_runs

        plot_runs({label: history.as_dict()}, path)
    except Exception as exc:  # matplotlib/font/disk problems must not lose a finished run
        warnings.warn(f"could not write {path}: {type(exc).__name__}: {exc}", stacklevel=2)


def export_adapter(cfg: ExperimentConfig, ckpt: str | Path, out: str | Path) -> Path:
    """Write the adapter file of a training checkpoint (``last.ckpt`` or any other) of ``cfg``'s run.

    The backbone's pretrained weights are not downloaded or read (the architecture named by
    ``model.pretrained`` or ``model.backbone`` is built with random weights; the embedded backbone
    loads its shipped file): the checkpoint holds every trained tensor, all an adapter file keeps."""
    m = cfg.model
    architecture = m.pretrained if isinstance(m.pretrained, str) else m.backbone
    cfg = replace(cfg, model=replace(m, backbone=architecture, pretrained=False, weights=None))
    module = load_checkpoint_tensors(task_builders(cfg.task)[0](cfg), ckpt)
    return save_adapter(module.model, out)


def load_checkpoint_tensors(module: L.LightningModule, ckpt: str | Path) -> L.LightningModule:
    """Copy a training checkpoint's tensors (trainable ones and buffers) into ``module``; returns it.
    A checkpoint of another method, or whose keys do not match, is refused with the keys named."""
    checkpoint = SafeCheckpointIO().load_checkpoint(ckpt)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    return module
