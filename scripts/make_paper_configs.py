"""Write every config of configs/paper/ (the paper's recipes, SPEC §5 and §8, for every registered method).

Run from the repository root: ``python scripts/make_paper_configs.py`` (``--check``: write nothing,
list the files that differ). The files are committed; ``scripts/paper_configs/`` is their single source
of truth: one module per task family, one entry per setting, every method taken from the registry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_configs import all_configs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "configs" / "paper"


def stale(root: Path = ROOT) -> list[str]:
    """Files under ``root`` that differ from the generators' output, are missing, or are not generated."""
    wanted = all_configs()
    present = {str(p.relative_to(root)) for p in root.rglob("*.yaml")}
    differ = [rel for rel, text in wanted.items() if not (root / rel).is_file() or (root / rel).read_text() != text]
    return sorted(differ + sorted(present - set(wanted)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; list stale files, exit 1 if any")
    args = parser.parse_args(argv)
    if args.check:
        files = stale()
        print("\n".join(files) or "configs/paper is current")
        return 1 if files else 0
    configs = all_configs()
    for rel, text in configs.items():
        path = ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(configs)} configs under {ROOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
