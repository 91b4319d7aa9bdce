"""``monatune smoke``: a few training steps and one evaluation batch of a config's full-size model on
synthetic images in its dataset layout, before GPU hours are spent on it.

The run goes through the engine's own pieces (the task's module and data builders,
:func:`~monatune.engine.trainer.build_trainer`, ``Trainer.fit``, the adapter file); :func:`smoke_config`
changes only what a smoke run must (data root, steps, one device, batch size, workers, precision on
CPU, random weights when the pretrained ones are not on this machine). :class:`StepTimer` measures
each training batch (data loading excluded).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from monatune.backbones.weights import cached_hub_weights
from monatune.engine.config import ExperimentConfig, ModelConfig
from monatune.engine.module import NonFiniteLossError
from monatune.engine.smoke_data import write_layout
from monatune.engine.trainer import resolve_precision
from monatune.tuning import tuning_state

# Training batches smaller than this break the task's model (UperNet's pooling branch: BatchNorm
# over 1x1 maps needs two values per channel).
MIN_BATCH = {"semantic_segmentation": 2}


class StepTimer(L.Callback):
    """Seconds and loss of every training batch (forward, backward, optimizer step; CUDA synchronised),
    and the number of evaluation batches run."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.losses: list[float] = []
        self.eval_batches = 0
        self._t0 = 0.0

    @staticmethod
    def _sync(pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(pl_module)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        seconds = time.perf_counter() - self._t0
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        value = float(loss.detach())
        if not math.isfinite(value):  # modules outside TunedModule have no guard of their own
            raise NonFiniteLossError(f"non-finite training loss: {value}")
        self.seconds.append(seconds)
        self.losses.append(value)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self.eval_batches += 1


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without CUDA is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device: {device!r} is not valid; choose auto, cpu or cuda")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False)")
    return device


def weights_at_hand(m: ModelConfig) -> tuple[ModelConfig, str]:
    """``m`` unchanged when its weights are on this machine, else with random weights; and what was used."""
    architecture = m.pretrained if isinstance(m.pretrained, str) else m.backbone
    random = replace(m, backbone=architecture, pretrained=False, weights=None)
    if m.weights is not None:
        if Path(m.weights).is_file():
            return m, f"weights file {m.weights}"
        return random, f"RANDOM weights (weights file {m.weights} not found)"
    if not m.pretrained:
        from monatune.backbones.embedded import EMBEDDED_BACKBONES

        return m, "embedded pretrained weights" if m.backbone in EMBEDDED_BACKBONES else "random weights (config: pretrained false)"
    if cached_hub_weights(architecture) is not None:  # what create_backbone loads without the network
        return m, f"pretrained {architecture} (local cache)"
    return random, f"RANDOM weights ({architecture} pretrained weights not in the local cache; nothing is downloaded)"


def default_batch_size(cfg: ExperimentConfig, device: str) -> int:
    """1 on CPU (or the task's minimum), the config's per-device batch on CUDA."""
    return cfg.data.batch_size if device == "cuda" else MIN_BATCH.get(cfg.task, 1)


@dataclass
class SmokePlan:
    """The smoke run's config and what it changed, with the data written for it."""

    cfg: ExperimentConfig
    weights: str
    notes: list[str]
    image_sizes: dict[str, tuple[int, int]]


def smoke_config(cfg: ExperimentConfig, workdir: Path, steps: int, device: str, batch_size: int | None) -> SmokePlan:
    """``cfg`` for a smoke run in ``workdir`` (synthetic data written there now)."""
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    device = resolve_device(device)
    batch = default_batch_size(cfg, device) if batch_size is None else batch_size
    if batch < MIN_BATCH.get(cfg.task, 1):
        raise ValueError(f"--batch-size {batch}: {cfg.task} trains with at least {MIN_BATCH[cfg.task]} images per batch")
    accumulate = cfg.trainer.accumulate_grad_batches
    batches = steps * accumulate
    eval_batch = cfg.data.eval_batch_size or batch
    layout = write_layout(cfg, workdir / "data", num_train=batch * batches, num_eval=eval_batch)
    model, weights = weights_at_hand(cfg.model)
    data = replace(cfg.data, batch_size=batch, num_workers=0, **layout.data)
    trainer = replace(
        cfg.trainer,
        max_epochs=1,
        max_steps=steps,
        limit_train_batches=batches,
        limit_val_batches=1,
        val_every_n_epochs=1,
        accelerator=device,
        devices=1,
        num_nodes=1,
        strategy="auto",
        sync_batchnorm=False,
        precision="32-true" if device == "cpu" else cfg.trainer.precision,
        out_dir=str(workdir / "run"),
        progress_bar=False,
        log_every_n_steps=1,
        checkpoint_every_n_steps=None,
    )
    return SmokePlan(replace(cfg, model=model, data=data, trainer=trainer), weights, layout.notes, layout.image_sizes)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters of the backbone (what the method trains, as ``monatune params`` counts
    them) and of the heads (the modules the tuning trains fully), trainable and total of the model."""
    state = tuning_state(model)
    head_names = state["train_modules"] if state else []
    head_ids = {id(p) for name in head_names for p in model.get_submodule(name).parameters()}
    counts = {"backbone_trainable": 0, "heads_trainable": 0, "trainable": 0, "total": 0}
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        counts["total"] += p.numel()
        if p.requires_grad:
            counts["trainable"] += p.numel()
            counts["heads_trainable" if id(p) in head_ids else "backbone_trainable"] += p.numel()
    return counts


@dataclass
class SmokeReport:
    """What a smoke run measured (``step_seconds``/``losses`` per training batch)."""

    config: str
    task: str
    backbone: str
    method: str
    device: str
    precision: str
    batch_size: int
    weights: str
    image_sizes: dict[str, tuple[int, int]]
    params: dict[str, int]
    step_seconds: list[float]
    losses: list[float]
    eval_batches: int
    eval_metrics: dict[str, float]
    peak_memory_mb: float
    notes: list[str] = field(default_factory=list)

    @property
    def median_step_seconds(self) -> float:
        """Median of steps 2..N (the first one pays for allocation and kernel selection); step 1 if N = 1."""
        timed = self.step_seconds[1:] or self.step_seconds
        return statistics.median(timed)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["median_step_seconds"] = self.median_step_seconds
        return out


def _fit(plan: SmokePlan, timer: StepTimer) -> tuple[L.LightningModule, dict[str, float], float]:
    """``monatune fit`` itself (engine.run.run) with ``timer`` among the callbacks."""
    from monatune.engine.run import run

    result = run("fit", plan.cfg, ckpt=None, callbacks=[timer])
    metrics = {k: v for k, v in result["metrics"].items() if k.startswith("val/")}
    return result["module"], metrics, result["peak_memory_mb"]


def run_smoke(
    cfg: ExperimentConfig,
    steps: int = 5,
    device: str = "auto",
    batch_size: int | None = None,
    workdir: str | Path | None = None,
    config_name: str = "",
) -> SmokeReport:
    """Train ``steps`` batches and evaluate one batch of ``cfg``'s model on synthetic data.

    ``workdir``: where data and run files go (default: a temporary folder, removed afterwards).
    Raises :class:`NonFiniteLossError` naming the step for a NaN/inf loss, RuntimeError when no
    evaluation batch ran; any error of the run itself propagates."""
    with tempfile.TemporaryDirectory(prefix="monatune-smoke-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        plan = smoke_config(cfg, root, steps, device, batch_size)
        timer = StepTimer()
        try:
            module, metrics, peak = _fit(plan, timer)
        except NonFiniteLossError as exc:  # the engine counts from 0; the report counts batches 1..N
            raise NonFiniteLossError(f"smoke step {len(timer.seconds) + 1} of {steps}: {exc}") from exc
        if len(timer.seconds) != steps * plan.cfg.trainer.accumulate_grad_batches:
            raise RuntimeError(f"ran {len(timer.seconds)} training batches, expected {steps}")
        if timer.eval_batches != 1:
            raise RuntimeError(f"ran {timer.eval_batches} evaluation batches, expected 1")
        c = plan.cfg
        return SmokeReport(
            config=config_name,
            task=c.task,
            backbone=c.model.pretrained if isinstance(c.model.pretrained, str) else c.model.backbone,
            method=c.model.method,
            device=c.trainer.accelerator,
            precision=resolve_precision(c.trainer.precision),
            batch_size=c.data.batch_size,
            weights=plan.weights,
            image_sizes=plan.image_sizes,
            params=parameter_counts(module.model),
            step_seconds=timer.seconds,
            losses=timer.losses,
            eval_batches=timer.eval_batches,
            eval_metrics=metrics,
            peak_memory_mb=peak,
            notes=plan.notes,
        )
