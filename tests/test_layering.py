"""The packages of monatune form layers (README "Layout"): a module imports only from its own package
and from packages of lower layers, never from above. Imports inside functions count too; the one
upward reach is the task registry's loading of ``monatune.tasks.<name>.task`` by name (a plugin)."""

from __future__ import annotations

import ast
from pathlib import Path

import monatune

SRC = Path(monatune.__file__).parent

# Bottom to top; packages on one line are peers (neither imports the other). "<root>" = monatune/__init__.py.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("version", "files", "weights", "configs"),  # weights/, configs/: package data (embedded weights, small configs)
    ("layers",),
    ("backbones",),
    ("methods",),
    ("tuning",),
    ("adapter_io", "fuse", "checkpointing"),
    ("ops",),
    ("metrics", "plots"),
    ("data",),
    ("engine",),
    ("tasks",),
    ("demo",),
    ("cli",),
    ("<root>",),
)


def package_of(module: str) -> str:
    """``monatune.engine.run`` -> ``engine``; ``monatune.files`` -> ``files``; ``monatune`` -> ``<root>``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def imports(root: Path) -> list[tuple[str, str, str]]:
    """(file, importing package, imported package) for every monatune import under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        source = "<root>" if rel == Path("__init__.py") else (rel.parts[0].removesuffix(".py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] if node.module != "monatune" else [f"monatune.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name == "monatune" or name.startswith("monatune."):
                    target = package_of(name)
                    if target != source:
                        found.append((str(rel), source, target))
    return found


def violations(root: Path) -> list[str]:
    level = {package: i for i, layer in enumerate(LAYERS) for package in layer}
    out = []
    for file, source, target in imports(root):
        if source not in level or target not in level:
            out.append(f"{file}: package {source if source not in level else target!r} is in no layer (add it to LAYERS and the README)")
        elif level[target] >= level[source]:
            out.append(f"{file}: {source} (layer {level[source]}) imports {target} (layer {level[target]})")
    return out


def test_no_module_imports_from_its_layer_or_above():
    assert imports(SRC)  # the scan sees the code
    assert violations(SRC) == []


def test_every_package_has_a_layer():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    packages |= {p.stem for p in SRC.glob("*.py") if p.name != "__init__.py"}
    assert packages == {package for layer in LAYERS for package in layer} - {"<root>"}


def test_the_check_catches_an_upward_import(tmp_path):
    (tmp_path / "backbones").mkdir()
    (tmp_path / "backbones" / "bad.py").write_text("def f():\n    from monatune.engine.config import ExperimentConfig\n")
    (tmp_path / "layers.py").write_text("import monatune.layers\nfrom monatune import methods\n")
    (tmp_path / "newpkg.py").write_text("from monatune.files import write_atomically\n")
    assert violations(tmp_path) == [
        "backbones/bad.py: backbones (layer 2) imports engine (layer 9)",
        "layers.py: layers (layer 1) imports methods (layer 3)",
        "newpkg.py: package 'newpkg' is in no layer (add it to LAYERS and the README)",
    ]


def test_the_readme_layout_lists_the_layers_in_order():
    readme = (SRC.parents[1] / "README.md").read_text()
    block = readme[readme.index("## Layout") :].split("```")[1]
    entries = [line.split()[0].rstrip("/").removesuffix(".py") for line in block.splitlines() if line.startswith("  ") and line[2] != " "]
    order = [package for layer in LAYERS for package in layer if package != "<root>"] + ["__init__"]
    assert [e for e in entries if e in order] == [p for p in order if p in entries]
    assert {p for layer in LAYERS for p in layer[:1]} - {"<root>"} <= set(entries)  # every layer has its line
