"""Every command README.md shows (Quick start, Command line, the dense demos) and its Python API
snippet run, on tiny sizes, so that a README naming a flag, key or subcommand that does not exist fails.

Commands are read from README.md itself, not copied here. Each runs through ``monatune.cli.main``
after these substitutions (``substitute``): the paper configs become ``configs/small/`` ones; the
README's example paths (``cfg.yaml``, ``runs/flowers102/...``, ``photos/``, ``PATH``, ``DIR``, ...)
become files of one tiny fit in a temporary folder; optional ``[...]`` parts are kept, with the
first of ``a|b`` choices; ``--trainer.devices 2`` becomes 1 (CPU); fit/validate/test get one
training and one validation batch. ``make demo`` and ``make test`` are not run. Demos run with
``--quick`` on the demo's recipe cut to one step per method; a demo without ``--quick`` is only
checked up to ``run_demo`` (its arguments parsed, the task found, the methods valid).
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from PIL import Image

from monatune.cli.main import build_parser, main

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
SECTIONS = ("Quick start", "Command line", "Dense prediction and oriented detection")
SMALL_CLASSIFICATION = ROOT / "configs" / "small" / "classification_digits.yaml"
SMALL_CONFIGS = {
    "configs/paper/classification/flowers102/mona.yaml": SMALL_CLASSIFICATION,
    "configs/paper/semantic_segmentation/ade20k_upernet_swin_l_160k/mona.yaml": ROOT / "configs/small/semantic_segmentation_upernet.yaml",
}
TINY_RUN = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]


def section(title: str) -> str:
    """The text of README section ``## title`` up to the next ``## `` heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def block_commands() -> list[str]:
    """``monatune ...`` lines of the sections' bash blocks, comments cut (``make`` lines are not run)."""
    lines = [line for title in SECTIONS for block in re.findall(r"```bash\n(.*?)```", section(title), re.S) for line in block.splitlines()]
    return [line.split("  #")[0].strip() for line in lines if line.startswith("monatune ")]


def prose_mentions() -> list[str]:
    """``monatune ...`` code spans of the sections' text (outside blocks)."""
    prose = "".join(re.sub(r"```.*?```", "", section(title), flags=re.S) for title in SECTIONS)
    return re.findall(r"`(monatune [a-z][^`]*)`", prose)


def readme_commands() -> list[str]:
    """Commands to run: block lines and the text's spans that carry options (bare names are checked
    by ``test_every_subcommand_the_readme_names_exists``)."""
    commands = block_commands() + [m for m in prose_mentions() if " --" in m]
    return list(dict.fromkeys(commands))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny finished fit of the small classification config at runs/flowers102/mona (checkpoint,
    adapter, history), a copy as runs/flowers102/full, its cfg.yaml and two photos."""
    root = tmp_path_factory.mktemp("readme")
    run = root / "runs" / "flowers102" / "mona"
    config = root / "cfg.yaml"
    config.write_text(SMALL_CLASSIFICATION.read_text().replace("out_dir: runs/small/digits_mona", f"out_dir: {run}"))
    assert main(["fit", "--config", str(config), *TINY_RUN]) == 0
    shutil.copytree(run, root / "runs" / "flowers102" / "full")
    photos = root / "photos"
    photos.mkdir()
    for i, color in enumerate(("red", "navy")):
        Image.new("RGB", (64, 48), color).save(photos / f"{i}.png")
    return {"root": root, "config": config, "run": run}


def substitute(command: str, ws: dict[str, Path], scratch: Path) -> list[str]:
    """``command``'s argv (without ``monatune``) with the README's examples replaced by tiny ones."""
    command = re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split("|")[0], command)  # keep [...], first of a|b
    command = re.sub(r"(\S+)\|\S+", r"\1", command)  # "mona,full|all" -> "mona,full"
    run = ws["run"]
    paths = {
        **{k: str(v) for k, v in SMALL_CONFIGS.items()},
        "cfg.yaml": str(ws["config"]),
        "FILE": str(ws["config"]),
        "runs/flowers102/mona/checkpoints/last.ckpt": str(run / "checkpoints" / "last.ckpt"),
        "PATH": str(run / "checkpoints" / "last.ckpt"),
        "runs/flowers102/mona/adapter.safetensors": str(run / "adapter.safetensors"),
        "runs/flowers102/mona": str(run),
        "runs/flowers102/full": str(run.parent / "full"),
        "photos/": str(ws["root"] / "photos"),
        "adapter.safetensors": str(scratch / "adapter.safetensors"),
        "cmp.png": str(scratch / "cmp.png"),
        "preds/": str(scratch / "preds"),
        "DIR": str(scratch / "demo"),
    }
    argv = [paths.get(token, token) for token in shlex.split(command)[1:]]
    for i, token in enumerate(argv[:-1]):
        if token in ("--trainer.devices", "--devices"):
            argv[i + 1] = "1"
        if token == "--steps":
            argv[i + 1] = "2"
    if argv[0] == "fit":
        argv += [*TINY_RUN, "--trainer.out_dir", str(scratch / "run")]
    elif argv[0] in ("validate", "test"):
        argv += ["--trainer.limit_val_batches", "1"]
    return argv


def _fake_run_demo(task, method_names, out_dir, quick, seeds=1, backbone=None):
    # a demo without --quick: arguments parsed, task and methods resolved; the run itself is not started
    from monatune.backbones.embedded import EMBEDDED_BACKBONES

    assert task.name and method_names and out_dir and seeds >= 1 and backbone in (None, *EMBEDDED_BACKBONES)
    return {}


def command_id(command: str) -> str:
    # pytest replaces ids of 100 characters or more by "command<n>"; the failure message has it whole
    text = command.removeprefix("monatune ")
    return text if len(text) < 90 else text[:86] + "..."


@pytest.mark.parametrize("command", readme_commands(), ids=command_id)
def test_readme_command_runs(
    command: str, workspace: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    argv = substitute(command, workspace, tmp_path)
    if argv[0] == "demo":
        from monatune.demo import classification

        if "--quick" not in argv:
            monkeypatch.setattr("monatune.demo.runner.run_demo", _fake_run_demo)
        # the demo's quick recipe, one step per method (the methods' processes get it through the config)
        monkeypatch.setitem(classification.QUICK, "epochs", 1)
        monkeypatch.setitem(classification.QUICK, "num_train_images", 32)
        monkeypatch.chdir(tmp_path)  # a demo without --out writes demo_out/ here
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: unknown subcommand or option
        pytest.fail(f"`{command}` ran as `monatune {shlex.join(argv)}` and exited with {exc.code}: {capsys.readouterr().err}")
    assert code == 0, f"`{command}` ran as `monatune {shlex.join(argv)}` and returned {code}: {capsys.readouterr().err}"


def test_the_readme_shows_commands_of_each_kind() -> None:
    # the extraction itself: a README reformatted so that nothing is found would otherwise pass silently
    subcommands = {c.split()[1] for c in readme_commands()}
    assert {"params", "fit", "validate", "test", "export", "plot", "predict", "demo", "smoke"} <= subcommands


def test_every_subcommand_the_readme_names_exists() -> None:
    known = set(build_parser()._subparsers._group_actions[0].choices)
    named = {m.split()[1] for m in prose_mentions() + block_commands()}
    assert named - known == set(), f"README names subcommands that do not exist: {sorted(named - known)}"


def test_python_api_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python API block with the hub model replaced by the embedded pretrained Swin
    (``monatune.create_backbone("swin_nano_synthetic", num_classes=102)``, a timm SwinTransformer,
    offline); the ``monatune.methods()`` line's comment must be what it returns."""
    code = re.search(r"```python\n(.*?)```", section("Python API"), re.S).group(1)
    hub_call = r'timm\.create_model\("swin_base_patch4_window7_224\.ms_in22k", pretrained=True, num_classes=102\)'
    assert len(re.findall(hub_call, code)) == 2, "the README's Python API snippet changed: update this test's substitution"
    code = re.sub(hub_call, 'monatune.create_backbone("swin_nano_synthetic", num_classes=102)', code)
    listed = re.search(r"monatune\.methods\(\)\s*#\s*(\[.*\])", code).group(1)
    monkeypatch.chdir(tmp_path)  # the snippet writes flowers_mona.safetensors
    namespace: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), namespace)
    import monatune

    assert monatune.methods() == eval(listed)
    assert (tmp_path / "flowers_mona.safetensors").is_file()
    trainable, total = monatune.count_parameters(namespace["plain"])
    assert 0 < trainable < total
