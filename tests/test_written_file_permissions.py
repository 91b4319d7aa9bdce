"""Adapter and checkpoint files get the usual permissions (0666 less the umask), not mkstemp's 0600."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from core_cases import tiny_timm_swin

import monatune
from monatune.engine.checkpoint_io import SafeCheckpointIO


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_adapter_file_respects_the_umask(tmp_path, umask):
    path = monatune.save_adapter(monatune.apply(tiny_timm_swin(), "lora"), tmp_path / "a.safetensors")
    assert _mode(path) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def test_checkpoint_file_respects_the_umask(tmp_path, umask):
    path = tmp_path / "ckpt" / "last.ckpt"
    SafeCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)
    assert _mode(path) == 0o666 & ~umask
    assert torch.equal(SafeCheckpointIO().load_checkpoint(path)["state_dict"]["w"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
