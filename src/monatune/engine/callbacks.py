"""Callbacks: loss/metric history (for plots and results files), RNG state in checkpoints, run cost,
the run's config.yaml once training has started, one console line per epoch when there is no progress bar."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from monatune.files import write_json_atomic, write_text_atomic


class ConfigFile(L.Callback):
    """Writes the run's config (``text``, YAML) to ``path`` when training starts.

    Not earlier: by then the checkpoint has been restored and checked (a resume refused for another
    method, or a config that fails to build, must not replace the config the run was trained with)."""

    def __init__(self, path: str | Path, text: str) -> None:
        self.path = Path(path)
        self.text = text

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            write_text_atomic(self.path, self.text)


class EpochLines(L.Callback):
    """Without a progress bar (SLURM, nohup, ``> log``): a start line and one flushed line per epoch
    (mean training loss, that epoch's validation metrics, seconds), on stderr so stdout stays the result."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._sum, self._n, self._t0 = 0.0, 0, 0.0
        self._val: dict[str, float] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.max_steps and trainer.max_steps > 0:
            length = f"{trainer.max_steps} steps"
        else:
            length = f"{trainer.max_epochs} epoch{'s' if trainer.max_epochs != 1 else ''}"
        resumed = f", resuming at epoch {trainer.current_epoch + 1} step {trainer.global_step}" if trainer.global_step else ""
        self._say(trainer, f"{self.title}: {length} of {trainer.num_training_batches} batches{resumed}")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sum, self._n, self._t0 = 0.0, 0, time.perf_counter()
        self._val = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._sum = self._sum + loss.detach().float()  # a device op: no host sync a step
        self._n += 1

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Validation of this epoch has already run: Lightning validates inside the epoch loop.
        parts = [f"epoch {trainer.current_epoch + 1}" + (f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else "")]
        if self._n:
            parts.append(f"train/loss {float(self._sum) / self._n:.4g}")
        parts += [f"{k} {v:.4g}" for k, v in sorted(self._val.items())]
        parts.append(f"{time.perf_counter() - self._t0:.1f} s")
        self._say(trainer, "  ".join(parts))

    @staticmethod
    def _say(trainer, line: str) -> None:
        if trainer.is_global_zero:
            print(line, file=sys.stderr, flush=True)


class History(L.Callback):
    """Records the mean training loss of every epoch, every step's loss and the validation metrics
    (kept across resumes). Under DDP each loss is the mean over the ranks (one all-gather an epoch,
    no host sync a step) and only the global rank 0 writes ``path``."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.train_loss: list[float] = []  # per epoch
        self.step_loss: list[float] = []  # per logged step
        self.val: list[dict[str, float]] = []
        self._epoch: list[torch.Tensor] = []  # this epoch's step losses, on the device

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._epoch.append(loss.detach().float().reshape(()))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._epoch:
            losses = torch.stack([t.to(pl_module.device) for t in self._epoch])
            if trainer.world_size > 1:  # every rank takes the same number of steps (distributed sampler)
                losses = pl_module.all_gather(losses).reshape(trainer.world_size, -1).mean(0)
            values = losses.tolist()
            self.step_loss.extend(values)
            self.train_loss.append(sum(values) / len(values))
        self._epoch = []
        if trainer.is_global_zero:
            self._write()

    def on_validation_end(self, trainer, pl_module) -> None:
        # Not on_validation_epoch_end: callbacks run before the module there, so the module's
        # epoch metrics are not yet in callback_metrics.
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        metrics["epoch"] = trainer.current_epoch
        self.val.append(metrics)

    def as_dict(self) -> dict[str, Any]:
        return {"train_loss": self.train_loss, "step_loss": self.step_loss, "val": self.val}

    def _write(self) -> None:
        if self.path is not None:
            write_json_atomic(self.path, self.as_dict())

    def state_dict(self) -> dict[str, Any]:
        # a mid-epoch checkpoint keeps the epoch's losses so far (this rank's: checkpoints come from rank 0)
        return self.as_dict() | {"epoch_partial": [float(t) for t in self._epoch]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_loss = list(state.get("train_loss", []))
        self.step_loss = list(state.get("step_loss", []))
        self.val = list(state.get("val", []))
        self._epoch = [torch.tensor(v) for v in state.get("epoch_partial", [])]


class RNGState(L.Callback):
    """Stores Python/NumPy/torch RNG states in checkpoints so a resumed run continues like an unbroken one."""

    def state_dict(self) -> dict[str, Any]:
        state = {
            "python": list(random.getstate()[1]),
            "python_pos": random.getstate()[2],
            "numpy": np.random.get_state()[1].tolist(),
            "numpy_pos": int(np.random.get_state()[2]),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        random.setstate((3, tuple(state["python"]), state["python_pos"]))
        np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def reset_peak_rss() -> None:
    """Reset the process's peak resident memory (Linux); a no-op elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (since the last reset), or NaN if unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class RunCost(L.Callback):
    """Wall time of training and peak memory (CUDA allocator peak on GPU, peak RSS on CPU)."""

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.peak_memory_mb = float("nan")
        self._t0 = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        if torch.cuda.is_available() and pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        else:
            reset_peak_rss()
        self._t0 = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.train_seconds = time.perf_counter() - self._t0
        if pl_module.device.type == "cuda":
            self.peak_memory_mb = torch.cuda.max_memory_allocated(pl_module.device) / 2**20
        else:
            self.peak_memory_mb = peak_rss_mb()
