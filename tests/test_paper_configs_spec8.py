"""The paper configs carry SPEC §8's settings (values read from SPEC, not from the generators)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monatune.engine.config import load_config
from monatune.methods import build_method, methods

ROOT = Path(__file__).parents[1]
PAPER = ROOT / "configs" / "paper"
DENSE = {
    "detection": "voc_retinanet_swin_l",
    "instance_segmentation": "coco_cascade_mask_rcnn_swin_b_3x",
    "semantic_segmentation": "ade20k_upernet_swin_l_160k",
}


def _configs(folder: Path):
    paths = sorted(folder.rglob("*.yaml"))
    assert paths, f"no configs under {folder}"
    return [(p, load_config(p)) for p in paths]


def test_classification_drop_path_and_decay():
    # SPEC §8.7: drop-path 0.3 for every method; §8.9: norms and biases (and position tables) not decayed
    configs = _configs(PAPER / "classification")
    assert len(configs) == 3 * len(methods())
    for path, cfg in configs:
        assert cfg.model.drop_path_rate == 0.3, path
        assert {"norm", "bias"} <= set(cfg.optim.no_decay), path


@pytest.mark.parametrize("task", list(DENSE))
def test_dense_configs_decay_biases(task):
    # SPEC §8.9: detection and segmentation exempt only norms ("norm" in the name, as mmdet/mmseg's custom_keys),
    # relative-position tables, abs. position embeddings
    for path, cfg in _configs(PAPER / task / DENSE[task]):
        assert sorted(cfg.optim.no_decay) == ["abs_pos", "norm_name", "rel_pos"], path
        if cfg.model.method == "lorand":  # SPEC §8.10: the paper's LoRand++ setting, beta 16
            options = build_method("lorand", **cfg.model.method_options).options
            assert (options.alpha, options.beta) == (4, 16), path


def test_ade20k_sync_batchnorm_for_mona_full_fixed_only():
    # SPEC §8.6
    synced = {cfg.model.method for _, cfg in _configs(PAPER / "semantic_segmentation") if cfg.trainer.sync_batchnorm}
    assert synced == {"mona", "full", "fixed"}
    for task in ("detection", "instance_segmentation", "classification"):
        assert not any(cfg.trainer.sync_batchnorm for _, cfg in _configs(PAPER / task)), task
