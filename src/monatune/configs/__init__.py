"""The small configs (CPU-sized runs on the embedded backbones and synthetic data), shipped with the
package: ``monatune demo`` runs them, and ``configs/small`` in the repository is a link to this folder.

    monatune fit --config configs/small/detection_retinanet.yaml      # from a checkout
    monatune.configs.small_config("detection_retinanet")               # anywhere: the file's path
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def small_configs() -> list[str]:
    """Names of the shipped small configs (file names without ``.yaml``)."""
    return sorted(p.name.removesuffix(".yaml") for p in resources.files(__name__).joinpath("small").iterdir() if p.name.endswith(".yaml"))


def small_config(name: str) -> Path:
    """The path of the shipped small config ``name``."""
    if name not in small_configs():
        raise ValueError(f"unknown small config {name!r}; shipped: {', '.join(small_configs())}")
    return Path(str(resources.files(__name__).joinpath("small", f"{name}.yaml")))


__all__ = ["small_config", "small_configs"]
