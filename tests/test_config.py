from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from han.config import Config, apply_overrides, config_to_yaml, load_config
from han.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_the_expected_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"bbc.yaml", "tiny.yaml", "clothing.yaml", "reuters_r8.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads_and_starts_with_its_command(path: Path):
    config = load_config(path)
    assert isinstance(config, Config)
    lines = path.read_text().splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert header, "a config starts with a comment"
    assert any(f"han run configs/{path.name}" in line for line in header)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_fill_in_and_config_is_frozen(tmp_path):
    config = load_config(write(tmp_path, "data:\n  source: x.csv\n"))
    assert config.model.word_hidden == 50 and config.model.attention_dim == 100 and config.embeddings.dim == 200
    with pytest.raises(ValidationError):
        config.seed = 3  # type: ignore[misc]


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "data:\n  source: x.csv\ntrain:\n  lrate: 0.1\n"))
    message = str(info.value)
    assert "train.lrate" in message and "unknown key" in message and "config.yaml" in message
    assert "\n" not in message


def test_wrong_type_is_named_with_the_value(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "data:\n  source: x.csv\ntrain:\n  batch_size: lots\n"))
    assert "train.batch_size" in str(info.value) and "'lots'" in str(info.value)
    assert "\n" not in str(info.value)


def test_out_of_range_value_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.dropout"):
        load_config(write(tmp_path, "data:\n  source: x.csv\nmodel:\n  dropout: 1.5\n"))


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value) and "not found" in str(info.value)


def test_missing_required_section(tmp_path):
    with pytest.raises(ConfigError, match=r"data: required key is missing"):
        load_config(write(tmp_path, "seed: 1\n"))


def test_invalid_yaml_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))


def test_overrides_are_parsed_and_validated(tmp_path):
    path = write(tmp_path, "data:\n  source: x.csv\n")
    config = load_config(path, ["train.lr=0.01", "model.freeze_embeddings=true", "data.text_column=[title, text]"])
    assert config.train.lr == 0.01 and config.model.freeze_embeddings is True
    assert config.data.text_columns == ["title", "text"]
    with pytest.raises(ConfigError, match=r"train\.lr"):
        load_config(path, ["train.lr=-1"])
    with pytest.raises(ConfigError, match=r"train\.nope"):
        load_config(path, ["train.nope=1"])
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        load_config(path, ["train.lr"])


def test_override_cannot_descend_into_a_value():
    with pytest.raises(ConfigError, match="is a value"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_resolved_yaml_round_trips(tmp_path):
    config = load_config(write(tmp_path, "data:\n  source: x.csv\n"), ["seed=7"])
    again = Config.model_validate(yaml.safe_load(config_to_yaml(config)))
    assert again == config


def test_file_embeddings_need_a_path(tmp_path):
    with pytest.raises(ConfigError, match=r"embeddings\.path"):
        load_config(write(tmp_path, "data:\n  source: x.csv\nembeddings:\n  source: file\n"))
