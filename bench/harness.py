"""Shared pieces of the benchmark scripts: the benchmarked models, timing, memory, machine facts.

Settings (``SETTINGS``): Swin-T and Swin-B classifiers at 224 (batch 8) and a dense Swin-T at
512x512 (batch 2, four stage maps into small trainable heads, as a detection/segmentation neck
would consume them); ``tiny`` only smoke-tests the scripts. Weights are random: speed and memory
do not depend on their values.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import platform
import resource
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class Setting:
    name: str
    arch: str  # timm name
    size: int
    batch: int
    dense: bool = False


SETTINGS = {
    "swin_t_224": Setting("swin_t_224", "swin_tiny_patch4_window7_224", 224, 8),
    "swin_b_224": Setting("swin_b_224", "swin_base_patch4_window7_224", 224, 8),
    "swin_t_dense512": Setting("swin_t_dense512", "swin_tiny_patch4_window7_224", 512, 2, dense=True),
    # smoke tests of the scripts only (seconds): the shipped nano Swin, random weights
    "tiny": Setting("tiny", "tiny", 64, 2),
}


class DenseProbe(nn.Module):
    """Dense backbone + one trainable 1x1 conv per stage map: a stand-in for a neck/head."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(nn.Conv2d(c, 16, 1) for c in backbone.out_channels)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [head(f) for head, f in zip(self.heads, self.backbone(images))]


def build_model(setting: Setting) -> tuple[nn.Module, list[str]]:
    """The model of ``setting`` (random weights) and the names of its head modules (train always)."""
    from monatune import create_backbone

    if setting.arch == "tiny":
        from timm.models.swin_transformer import SwinTransformer

        model = SwinTransformer(img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
                                window_size=2, num_classes=100, strict_img_size=False)  # fmt: skip
        return model, ["head"]
    if setting.dense:
        return DenseProbe(create_backbone(setting.arch, dense=True)), ["heads"]
    return create_backbone(setting.arch, num_classes=100), ["head"]


def public_form(model: nn.Module) -> nn.Module:
    """Every Mona in ``model`` computed as the public code does: the literal (plain) form with
    torch's own ``nn.Dropout`` (monatune's dropout draws its mask faster); returns ``model``."""
    from monatune import Mona
    from monatune.fuse import set_mona_form

    set_mona_form(model, "plain")
    for module in model.modules():
        if isinstance(module, Mona):
            module.dropout = nn.Dropout(module.dropout.p)
    return model


def make_batch(setting: Setting, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(setting.batch, 3, setting.size, setting.size, generator=g)
    labels = torch.randint(0, 100, (setting.batch,), generator=g)
    return images, labels


def loss_fn(output: torch.Tensor | list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    if isinstance(output, list):  # dense: pull every stage map towards zero
        return sum(o.float().square().mean() for o in output)
    return nn.functional.cross_entropy(output.float(), labels)


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_mb() -> float:
    """Peak resident memory of this whole process so far.

    Linux: VmHWM of /proc/self/status, the high-water mark of this program image. (ru_maxrss would
    be wrong in a subprocess: Linux carries it over from the parent across fork and exec.)
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def saved_activation_mb(model: nn.Module, run: Callable[[], torch.Tensor]) -> float:
    """MB that autograd keeps for backward during ``run()`` (distinct storages, parameters excluded)."""
    params = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen.setdefault(storage.data_ptr(), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    del out
    return sum(seen.values()) / 2**20


def machine() -> dict[str, object]:
    """CPU model, cores, load, versions: what a reader needs to compare numbers."""
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), model)
    except OSError:
        pass
    import timm

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


def finish(results: dict, out: "os.PathLike[str] | None", table: str) -> dict:
    """End of a benchmark script: note the load after the run, write ``results`` as JSON to
    ``out`` (if given), print the markdown ``table``; returns ``results``."""
    import json
    from pathlib import Path

    results["machine"]["load_avg_after"] = machine()["load_avg_1_5_15"]
    if out:
        Path(out).write_text(json.dumps(results, indent=1))
    print(table)
    return results
