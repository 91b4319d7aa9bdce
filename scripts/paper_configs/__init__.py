"""The paper's configs (``configs/paper/``), one generator per task family; every registered method gets
each setting. ``scripts/make_paper_configs.py`` writes them; ``tests/test_paper_configs_current.py``
fails when a committed file differs from what they give."""

from __future__ import annotations

from paper_configs import classification, dense, oriented


def all_configs() -> dict[str, str]:
    """Relative path under configs/paper -> file text, for every paper experiment."""
    return {**classification.configs(), **dense.configs(), **oriented.configs()}
