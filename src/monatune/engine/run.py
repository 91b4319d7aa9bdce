"""Run an experiment: fit / validate / test one config with the task's module and data."""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import yaml
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from monatune.adapter_io import load_adapter, save_adapter
from monatune.engine.callbacks import ConfigFile, EpochLines, History, RNGState, RunCost
from monatune.engine.checkpoint_io import SafeCheckpointIO
from monatune.engine.config import ExperimentConfig
from monatune.engine.tasks import get_task
from monatune.engine.trainer import build_trainer, shows_progress_bar

TaskBuilders = tuple[Callable[[ExperimentConfig], L.LightningModule], Callable[[ExperimentConfig], L.LightningDataModule]]


def task_builders(task: str) -> TaskBuilders:
    """The (module builder, data builder) pair of ``task`` (its registry record, ``engine.tasks``)."""
    record = get_task(task)
    return record.build_module, record.build_data


def resolve_ckpt(out_dir: Path, ckpt: str | None) -> str | None:
    """``last`` -> the run's last.ckpt (None when there is none yet, i.e. a fresh start)."""
    if ckpt != "last":
        return ckpt
    last = out_dir / "checkpoints" / "last.ckpt"
    return str(last) if last.is_file() else None


ADAPTER_FILE = "adapter.safetensors"
CURVES_FILE = "curves.png"
CONFIG_FILE = "config.yaml"
# What a fit writes into its out_dir; ``fit --fresh`` moves these to out_dir/previous/<n>/.
RUN_FILES = ("checkpoints", "logs", "tensorboard", "history.json", CONFIG_FILE, ADAPTER_FILE, CURVES_FILE, "task1")


def say(command: str, text: str) -> None:
    """One line on stderr, from global rank zero only (stdout carries the result)."""
    if rank_zero_only.rank == 0:
        print(f"monatune {command}: {text}", file=sys.stderr, flush=True)


def is_adapter_file(path: str | Path) -> bool:
    """Whether ``path`` is a safetensors file (an 8-byte header length, then the JSON header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < os.path.getsize(path)


def check_is_checkpoint(ckpt: str | Path, command: str) -> None:
    """Refuse an adapter file given where a training checkpoint (.ckpt) is expected, in one line."""
    if not is_adapter_file(ckpt):
        return
    if command in ("validate", "test", "predict"):
        raise ValueError(f"{ckpt} is an adapter file; pass it as --adapter")
    raise ValueError(f"{ckpt} is an adapter file, not a training checkpoint; {command} needs a .ckpt (an adapter file is for validate/test --adapter)")


def move_run_aside(out_dir: Path) -> Path | None:
    """Move a previous run's RUN_FILES from ``out_dir`` to ``out_dir/previous/<n>/`` (n = 1, 2, ...);
    returns that folder, or None when there was nothing to move. Nothing is deleted."""
    present = [out_dir / name for name in RUN_FILES if (out_dir / name).exists()]
    if not present:
        return None
    n = 1
    while (out_dir / "previous" / str(n)).exists():
        n += 1
    target = out_dir / "previous" / str(n)
    target.mkdir(parents=True)
    for path in present:
        os.replace(path, target / path.name)
    return target


def _say_what_is_scored(command: str, cfg: ExperimentConfig, ckpt: str | None, ckpt_path: str | None, adapter: str | None) -> None:
    """validate/test: ``--ckpt last`` needs the run's last.ckpt; one line when neither weights source is
    given (the adapter scored is untrained) and one when test falls back to the val split."""
    out_dir = Path(cfg.trainer.out_dir)
    if ckpt == "last" and ckpt_path is None:
        raise FileNotFoundError(f"--ckpt last: {out_dir / 'checkpoints' / 'last.ckpt'} does not exist")
    if ckpt_path is None and adapter is None:
        trained = [str(p) for p in (out_dir / "checkpoints" / "last.ckpt", out_dir / ADAPTER_FILE) if p.is_file()]
        found = f" ({', '.join(trained)} exist: pass --ckpt last or --adapter)" if trained else ""
        say(command, f"warning: no --ckpt or --adapter: scoring the untrained {cfg.model.method} adapter{found}")
    if command == "test" and cfg.data.test_split is None:
        say(command, f"note: data.test_split is null: scoring the val split {cfg.data.val_split!r}, reported as test/*")


def run(
    command: str,
    cfg: ExperimentConfig,
    ckpt: str | None = None,
    adapter: str | None = None,
    callbacks: Sequence[L.Callback] = (),
    fresh: bool = False,
) -> dict[str, Any]:
    """Run ``fit``, ``validate`` or ``test``; returns the final metrics and run cost.

    ``fit`` ends by writing the adapter file (trained tensors only) to ``out_dir/adapter.safetensors``
    and the training-loss and validation-metric curves to ``out_dir/curves.png``.
    ``adapter``: for validate/test, an adapter file loaded into the freshly built model (instead of
    ``ckpt``; with neither, one line warns that the untrained adapter is scored). ``callbacks``: more
    Lightning callbacks (``monatune smoke``'s step timer). ``fresh``: fit moves a previous run's files
    to ``out_dir/previous/<n>/`` first (``move_run_aside``) and starts from scratch.
    Only ``fit`` writes ``out_dir/config.yaml``, when training has started (a resume refused by the
    checkpoint check leaves the run's config as it was). Evaluations log to ``logs/<command>/``."""
    if command not in ("fit", "validate", "test"):
        raise ValueError(f"unknown command {command!r}; valid: fit, validate, test")
    if adapter is not None and command == "fit":
        raise ValueError("--adapter is for validate/test; fit resumes from --ckpt")
    if adapter is not None and ckpt is not None:
        raise ValueError("give --adapter or --ckpt, not both (the checkpoint would replace the adapter's tensors)")
    if fresh and (command != "fit" or ckpt is not None):
        raise ValueError("--fresh is for fit without --ckpt: it starts from scratch")
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    out_dir = Path(cfg.trainer.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = resolve_ckpt(out_dir, ckpt)
    if ckpt_path is not None:
        check_is_checkpoint(ckpt_path, command)
    if command != "fit":
        _say_what_is_scored(command, cfg, ckpt, ckpt_path, adapter)
    if fresh and rank_zero_only.rank == 0:  # DDP ranks started later find the folder already cleared
        moved = move_run_aside(out_dir)
        if moved is not None:
            say(command, f"--fresh: moved the previous run's files to {moved}")
    build_module, build_data = task_builders(cfg.task)
    module, data = build_module(cfg), build_data(cfg)
    if adapter is not None:
        load_adapter(module.model, adapter)
    history, cost = History(out_dir / "history.json"), RunCost()
    run_callbacks: list[L.Callback] = [history, RNGState(), cost, *callbacks]
    if command == "fit":
        run_callbacks.append(ConfigFile(out_dir / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False)))
        if not shows_progress_bar(cfg):
            run_callbacks.append(EpochLines(f"monatune fit {cfg.task} {cfg.model.backbone} + {cfg.model.method} -> {out_dir}"))
    stage = "" if command == "fit" else command
    trainer = build_trainer(cfg, run_callbacks, checkpoints=command == "fit", stage=stage)
    if command == "fit":
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
        failure = None
        if trainer.is_global_zero:
            try:
                save_adapter(module.model, out_dir / ADAPTER_FILE, backbone=backbone_name(cfg), task=cfg.task)
            except Exception as exc:  # reached the barrier first, so other DDP ranks do not hang
                failure = exc
            _plot_curves(cfg.model.method, history, out_dir / CURVES_FILE, get_task(cfg.task).main_metric)
        trainer.strategy.barrier()  # every rank returns once the adapter file is there
        if failure is not None:
            raise failure
    elif command == "validate":
        metrics = trainer.validate(module, datamodule=data, ckpt_path=ckpt_path, verbose=False)[0]
    else:
        metrics = trainer.test(module, datamodule=data, ckpt_path=ckpt_path, verbose=False)[0]
    return {
        "metrics": {k: float(v) for k, v in metrics.items()},
        "global_step": trainer.global_step,
        "train_seconds": cost.train_seconds,
        "peak_memory_mb": cost.peak_memory_mb,
        "history": history.as_dict(),
        "module": module,
    }


def _plot_curves(label: str, history: History, path: Path, metric: str) -> None:
    """curves.png of a finished fit (``metric``: the task's main one, when recorded); a plotting
    failure warns instead of failing the trained run."""
    try:
        from monatune.plots import plot_runs

        plot_runs({label: history.as_dict()}, path, preferred=[metric])
    except Exception as exc:  # matplotlib/font/disk problems must not lose a finished run
        warnings.warn(f"could not write {path}: {type(exc).__name__}: {exc}", stacklevel=2)


def backbone_name(cfg: ExperimentConfig) -> str:
    """The backbone a run trains on, as adapter files record it (the timm name with tag when given)."""
    m = cfg.model
    return m.pretrained if isinstance(m.pretrained, str) else m.backbone


def export_adapter(cfg: ExperimentConfig, ckpt: str | Path, out: str | Path) -> Path:
    """Write the adapter file of a training checkpoint (``last.ckpt`` or any other) of ``cfg``'s run.

    The backbone's pretrained weights are not downloaded or read (the architecture named by
    ``model.pretrained`` or ``model.backbone`` is built with random weights; the embedded backbone
    loads its shipped file): the checkpoint holds every trained tensor, all an adapter file keeps."""
    check_is_checkpoint(ckpt, "export")
    m = cfg.model
    architecture = m.pretrained if isinstance(m.pretrained, str) else m.backbone
    cfg = replace(cfg, model=replace(m, backbone=architecture, pretrained=False, weights=None))
    module = load_checkpoint_tensors(task_builders(cfg.task)[0](cfg), ckpt)
    return save_adapter(module.model, out, backbone=architecture, task=cfg.task)


def load_checkpoint_tensors(module: L.LightningModule, ckpt: str | Path) -> L.LightningModule:
    """Copy a training checkpoint's tensors (trainable ones and buffers) into ``module``; returns it.
    A checkpoint of another method, or whose keys do not match, is refused with the keys named."""
    check_is_checkpoint(ckpt, "predict")
    checkpoint = SafeCheckpointIO().load_checkpoint(ckpt)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    return module
