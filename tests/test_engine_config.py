"""Config files: valid YAML loads, wrong keys/values name themselves and the valid choices."""

import pytest

from monatune.cli.train import split_overrides
from monatune.engine.config import ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_yaml_and_overrides(tmp_path):
    path = write(tmp_path, "model:\n  method: lora\n  num_classes: 7\noptim:\n  lr: 1.0e-4\n")
    cfg = load_config(path, ["optim.lr=2e-3", "trainer.max_epochs=3", "model.method_options={rank: 8}"])
    assert cfg.model.method == "lora" and cfg.model.num_classes == 7
    assert cfg.optim.lr == pytest.approx(2e-3) and cfg.trainer.max_epochs == 3
    assert cfg.model.method_options == {"rank": 8}


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("model:\n  methd: mona\n", ["methd", "model", "method"]),
        ("modle:\n  method: mona\n", ["modle", "model, data, optim, trainer"]),
        ("model:\n  method: monaa\n", ["model.method", "monaa", "mona", "lora"]),
        ("optim:\n  schedule: linear\n", ["optim.schedule", "linear", "cosine, step, poly"]),
        ("optim:\n  lr: fast\n", ["optim.lr", "fast", "number"]),
        ("task: detectionn\n", ["task", "detectionn", "classification"]),
        ("model:\n  method: lora\n  method_options: {rnk: 4}\n", ["rnk", "rank", "alpha"]),
        ("trainer:\n  max_epochs: 2.5\n", ["trainer.max_epochs", "integer"]),
    ],
)
def test_bad_config_names_key_and_choices(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model: [unclosed\n"))


def test_cli_override_syntax():
    assert split_overrides(["--model.method", "lora", "--trainer.max_epochs=2"]) == ["model.method=lora", "trainer.max_epochs=2"]
    with pytest.raises(ValueError, match="--section.key"):
        split_overrides(["--verbose"])
    with pytest.raises(ValueError, match="needs a value"):
        split_overrides(["--model.method"])


def test_paper_configs_all_parse():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))
    assert configs, "no configs shipped"
    for path in configs:
        load_config(path)  # raises ConfigError naming the file on any problem
