"""Checkpoint files: written atomically (temp file + rename, umask permissions), read without executing pickled code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from monatune.files import write_atomically


class SafeCheckpointIO(TorchCheckpointIO):
    """A killed run never leaves a half-written checkpoint; loading uses ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        write_atomically(Path(path), lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)
