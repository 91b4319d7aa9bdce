"""The LightningModule shared by every task family: optimizer, schedule, trainable-only checkpoints,
non-finite-loss guard. A task subclass implements ``compute_losses`` and the evaluation steps."""

from __future__ import annotations

import hashlib
from typing import Any

import lightning as L
import torch
from torch import nn

from monatune.checkpointing import checkpoint_blocks
from monatune.engine.config import ExperimentConfig
from monatune.engine.optim import build_optimizer, default_no_decay
from monatune.engine.schedules import build_scheduler
from monatune.tuning import tuning_state


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN/inf; training stops and the last checkpoint stays as it was."""


class TunedModule(L.LightningModule):
    """Wraps a tuned model (``self.model``) with the paper's optimisation recipe from ``cfg.optim``."""

    def __init__(self, model: nn.Module, cfg: ExperimentConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        if cfg.model.checkpoint_blocks:
            stages = None if cfg.model.checkpoint_blocks is True else cfg.model.checkpoint_blocks
            checkpoint_blocks(model, stages=stages)
        # Checkpoints hold trainable tensors only; load_state_dict checks the keys itself.
        self.strict_loading = False

    def trainable_digest(self) -> str:
        """A fingerprint of the trainable set (names and shapes)."""
        items = sorted(f"{n}:{tuple(p.shape)}" for n, p in self.model.named_parameters() if p.requires_grad)
        return hashlib.sha1("\n".join(items).encode()).hexdigest()

    def on_fit_start(self) -> None:
        # Under DDP every rank must train exactly the same tensors, or gradients are averaged wrongly.
        digest = self.trainable_digest()
        digests = [digest]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            digests = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(digests, digest)
            if len(set(digests)) != 1:
                raise RuntimeError(f"ranks disagree on the trainable parameter set: {digests}")
        self.rank_digests = digests

    # --- losses -------------------------------------------------------------------------
    def compute_losses(self, batch: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # --- evaluation: tasks implement eval_step/eval_end; val and test share them ----------
    def eval_step(self, batch: Any, stage: str) -> None:
        """Run the model on one eval batch and update the task metric (``stage``: "val" or "test")."""
        raise NotImplementedError

    def eval_end(self, stage: str) -> None:
        """Compute, log (as ``{stage}/<metric>``) and reset the task metric."""
        raise NotImplementedError

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.eval_end("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.eval_end("test")

    def batch_size_of(self, batch: Any) -> int:
        return len(batch[0])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        losses = self.compute_losses(batch)
        total = sum(losses.values())
        if not torch.isfinite(total):
            values = {k: float(v.detach()) for k, v in losses.items()}
            raise NonFiniteLossError(
                f"non-finite training loss at step {self.global_step} (epoch {self.current_epoch}): {values}. "
                "Stopped; the last checkpoint was not overwritten. Lower optim.lr or check the data."
            )
        bs = self.batch_size_of(batch)
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=bs)
        for name, value in losses.items():
            if len(losses) > 1:
                self.log(f"train/{name}", value.detach(), batch_size=bs)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)
        return total

    # --- optimisation ------------------------------------------------------------------
    def configure_optimizers(self):
        o = self.cfg.optim
        m = self.cfg.model
        no_decay = default_no_decay(self.cfg.task, m.head, m.head_options) if o.no_decay is None else o.no_decay
        optimizer = build_optimizer(self.model, o.optimizer, o.lr, o.weight_decay, o.betas, no_decay)
        total = int(self.trainer.estimated_stepping_batches)
        max_epochs = max(self.trainer.max_epochs or 1, 1)
        iteration_based = self.cfg.trainer.max_steps > 0
        if iteration_based:  # an epoch is one pass over the loader, whatever the run's length
            if self.trainer.num_training_batches == float("inf"):  # max_steps: Lightning has not loaded it yet
                self.trainer.fit_loop.setup_data()
            batches = self.trainer.num_training_batches
            per_epoch = -(-batches // max(self.trainer.accumulate_grad_batches, 1)) if batches != float("inf") else total
            steps_per_epoch = max(int(per_epoch), 1)
        else:
            steps_per_epoch = max(total // max_epochs, 1)
        warmup = int(round(o.warmup_epochs * steps_per_epoch)) if o.warmup_epochs > 0 else o.warmup_steps
        unit = 1 if iteration_based else steps_per_epoch
        milestones = [int(round(m * unit)) for m in o.milestones]
        scheduler = build_scheduler(
            optimizer,
            kind=o.schedule,
            total_steps=total,
            warmup_steps=warmup,
            warmup_ratio=o.warmup_ratio,
            min_lr_ratio=o.min_lr_ratio,
            milestones=milestones,
            gamma=o.gamma,
            poly_power=o.poly_power,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- checkpoints: trainable tensors + buffers only ----------------------------------------
    def _frozen_keys(self) -> set[str]:
        return {f"model.{n}" for n, p in self.model.named_parameters() if not p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        frozen = self._frozen_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in frozen}
        checkpoint["monatune"] = {
            "tuning": tuning_state(self.model),
            "task": self.cfg.task,
            "trainable_digests": list(getattr(self, "rank_digests", [self.trainable_digest()])),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        expected = set(self.state_dict()) - self._frozen_keys()
        got = set(checkpoint.get("state_dict", {}))
        saved = (checkpoint.get("monatune") or {}).get("tuning")
        mine = tuning_state(self.model)
        if saved is not None and mine is not None and (saved["method"], saved["options"]) != (mine["method"], mine["options"]):
            raise ValueError(f"checkpoint was trained with {saved['method']} {saved['options']}, this run uses {mine['method']} {mine['options']}")
        missing, unexpected = sorted(expected - got), sorted(got - expected)
        if missing or unexpected:
            raise ValueError(
                "checkpoint does not match this model: "
                f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
                f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}"
            )

