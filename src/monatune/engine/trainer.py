"""Build a Lightning Trainer from the ``trainer`` section: devices/DDP, precision, loggers, checkpoints."""

from __future__ import annotations

import csv
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from monatune.engine.checkpoint_io import SafeCheckpointIO
from monatune.engine.config import ExperimentConfig


def resolve_precision(precision: str) -> str:
    """``auto``: fp16 mixed precision on CUDA (the paper's setting), fp32 elsewhere."""
    if precision != "auto":
        return precision
    return "16-mixed" if torch.cuda.is_available() else "32-true"


# Third-party messages that say nothing about this run: regular expressions matched at the start of the text.
NOISE_WARNINGS = (
    re.escape("`isinstance(treespec, LeafSpec)` is deprecated"),  # Lightning's pytree helper on newer torch
    r"The '\w+' does not have many workers",  # Lightning, whatever data.num_workers says
    re.escape("Using a non-tuple sequence for multidimensional indexing"),  # torch, from timm's interpolation
    # validate/test --ckpt: evaluation needs no ModelCheckpoint callback
    re.escape("Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be provided"),
)
NOISE_LOG_LINES = ("💡 Tip: For seamless cloud",)  # Lightning's advertisement for its cloud services


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISE_LOG_LINES)


def filter_known_noise() -> None:
    """Silence the known third-party noise (NOISE_WARNINGS, NOISE_LOG_LINES), matched narrowly by message.
    The one place for it: ``build_trainer`` calls it; repeated calls add nothing."""
    for message in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropNoise) for f in log.filters):
        log.addFilter(_DropNoise())


class _AppendingWriter(ExperimentWriter):
    """Continues an existing metrics.csv (Lightning's writer deletes it when it starts)."""

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            header = next(csv.reader(file), [])
        if header != sorted(header):  # rows are appended in sorted-key order
            self._rewrite_with_new_header(sorted(header))
        self.metrics_keys = sorted(header)


class AppendingCSVLogger(CSVLogger):
    """CSVLogger whose ``metrics.csv`` survives a resume, a rerun and a failed run: new rows are appended
    (the header grows when new keys appear). Rows of steps after the last checkpoint appear twice after
    a resume: first the killed attempt's, then the resumed one's."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def build_loggers(out_dir: Path, stage: str = "") -> list:
    """CSV logs (TensorBoard too when installed) of ``out_dir``: ``logs/metrics.csv`` for fit,
    ``logs/<stage>/metrics.csv`` for ``stage`` validate or test, so an evaluation never touches fit's log."""
    loggers = [AppendingCSVLogger(str(out_dir), name="logs", version=stage)]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out_dir), name="tensorboard", version=stage))
    except ImportError:
        pass
    return loggers


def shows_progress_bar(cfg: ExperimentConfig) -> bool:
    """``trainer.progress_bar``; ``auto``: only when stdout is a terminal."""
    return sys.stdout.isatty() if cfg.trainer.progress_bar == "auto" else bool(cfg.trainer.progress_bar)


def build_trainer(
    cfg: ExperimentConfig,
    callbacks: Sequence[L.Callback] = (),
    *,
    checkpoints: bool = True,
    logging: bool = True,
    stage: str = "",
) -> L.Trainer:
    """``stage``: "" for fit, or validate/test (their logs go to ``logs/<stage>/``)."""
    filter_known_noise()
    t = cfg.trainer
    out_dir = Path(t.out_dir)
    all_callbacks = list(callbacks)
    if checkpoints:
        all_callbacks.append(
            ModelCheckpoint(
                dirpath=str(out_dir / "checkpoints"),
                filename="epoch{epoch:03d}-step{step:07d}",
                auto_insert_metric_name=False,
                save_last=True,
                save_top_k=1 if t.checkpoint_every_n_steps is None else -1,
                every_n_train_steps=t.checkpoint_every_n_steps,
            )
        )
    progress = shows_progress_bar(cfg)
    if progress:
        all_callbacks.append(RichProgressBar())
    if logging:
        all_callbacks.append(LearningRateMonitor(logging_interval="step"))
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=resolve_precision(t.precision),
        max_epochs=t.max_epochs if t.max_steps <= 0 else None,
        max_steps=t.max_steps,
        gradient_clip_val=cfg.optim.grad_clip,
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.val_every_n_epochs,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        num_sanity_val_steps=0,
        default_root_dir=str(out_dir),
        logger=build_loggers(out_dir, stage) if logging else False,
        callbacks=all_callbacks,
        enable_checkpointing=checkpoints,
        enable_progress_bar=progress,
        enable_model_summary=False,
        deterministic=t.deterministic,
        accumulate_grad_batches=t.accumulate_grad_batches,
        sync_batchnorm=t.sync_batchnorm,
        plugins=[SafeCheckpointIO()],
    )
