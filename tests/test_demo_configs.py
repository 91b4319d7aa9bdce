"""One source of truth for the demo: each demo runs a shipped small config (package data, the files
configs/small links to) through ``load_config`` as ``monatune fit --config`` does, changing only what a
demo must: method, run folder, logging, its size (backbone, epochs, image counts, a step decay scaled
to the epochs) and where its synthetic data goes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from monatune.configs import small_config, small_configs
from monatune.demo import DEMO_TASKS
from monatune.demo.runner import demo_task
from monatune.engine.config import load_config

REPO_SMALL = Path(__file__).resolve().parents[1] / "configs" / "small"
DEMO_KEYS = {
    "model.method", "model.backbone", "trainer.out_dir", "trainer.log_every_n_steps", "trainer.max_epochs",
    "trainer.val_every_n_epochs", "data.root", "data.options", "optim.milestones",
}  # fmt: skip


def test_the_small_configs_ship_with_the_package_and_the_repository_links_to_them():
    assert REPO_SMALL.resolve() == small_config("detection_retinanet").parent.resolve()
    assert small_configs() == sorted(p.stem for p in REPO_SMALL.glob("*.yaml")) and len(small_configs()) >= 10
    with pytest.raises(ValueError, match="shipped: classification_digits"):
        small_config("nope")


def _flat(cfg) -> dict:
    return {f"{section}.{key}": value for section, values in dataclasses.asdict(cfg).items() if isinstance(values, dict)
            for key, value in values.items()}  # fmt: skip


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("name", sorted(DEMO_TASKS))
def test_each_demo_is_a_shipped_small_config_with_only_the_demo_overrides(name, quick, tmp_path):
    demo = demo_task(name)
    cfg = demo.make_config("lora", quick, tmp_path / "runs" / "lora-seed0")
    shipped = [load_config(small_config(n)) for n in small_configs()]
    base = next(s for s in shipped if _flat(s) == {**_flat(cfg), **{k: v for k, v in _flat(s).items() if k in DEMO_KEYS}})
    changed = {k for k, v in _flat(cfg).items() if _flat(base)[k] != v}
    assert changed <= DEMO_KEYS and cfg.task == base.task == demo.task
    assert cfg.model.method == "lora" and cfg.data.options.keys() >= base.data.options.keys()
    assert {k for k, v in cfg.data.options.items() if base.data.options.get(k) != v} <= {"num_train_images", "num_val_images"}
