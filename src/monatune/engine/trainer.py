"""Build a Lightning Trainer from the ``trainer`` section: devices/DDP, precision, loggers, checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger

from monatune.engine.checkpoint_io import SafeCheckpointIO
from monatune.engine.config import ExperimentConfig


def resolve_precision(precision: str) -> str:
    """``auto``: fp16 mixed precision on CUDA (the paper's setting), fp32 elsewhere."""
    if precision != "auto":
        return precision
    return "16-mixed" if torch.cuda.is_available() else "32-true"


def build_loggers(out_dir: Path) -> list:
    loggers = [CSVLogger(str(out_dir), name="logs", version="")]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out_dir), name="tensorboard", version=""))
    except ImportError:
        pass
    return loggers


def build_trainer(
    cfg: ExperimentConfig,
    callbacks: Sequence[L.Callback] = (),
    *,
    checkpoints: bool = True,
    logging: bool = True,
) -> L.Trainer:
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
    progress = sys.stdout.isatty() if t.progress_bar == "auto" else bool(t.progress_bar)
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
        logger=build_loggers(out_dir) if logging else False,
        callbacks=all_callbacks,
        enable_checkpointing=checkpoints,
        enable_progress_bar=progress,
        enable_model_summary=False,
        deterministic=t.deterministic,
        accumulate_grad_batches=t.accumulate_grad_batches,
        sync_batchnorm=t.sync_batchnorm,
        plugins=[SafeCheckpointIO()],
    )
