"""Every file of configs/paper/ is what the one generator (scripts/paper_configs/) gives, and nothing
else is there: adding a method or changing a recipe means rerunning scripts/make_paper_configs.py."""

from __future__ import annotations

import sys
from pathlib import Path

from monatune.methods import methods

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _generator():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import make_paper_configs
    finally:
        sys.path.remove(str(SCRIPTS))
    return make_paper_configs


def test_the_committed_paper_configs_are_the_generators_output():
    generator = _generator()
    assert len(generator.all_configs()) == 12 * len(methods())  # 3 classification + 3 dense + 6 oriented settings
    assert generator.stale() == [], "configs/paper differs from its generator: rerun scripts/make_paper_configs.py"


def test_a_stale_missing_or_stray_file_is_reported(tmp_path):
    generator = _generator()
    configs = generator.all_configs()
    for rel, text in configs.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    first, second = sorted(configs)[:2]
    (tmp_path / first).write_text("task: classification\n")
    (tmp_path / second).unlink()
    (tmp_path / "classification" / "stray.yaml").write_text("{}\n")
    assert generator.stale(tmp_path) == sorted([first, second, "classification/stray.yaml"])
