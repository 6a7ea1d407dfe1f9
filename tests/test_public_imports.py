"""The imports users rely on survive the library's reorganisation: `han.load`, `han.run`, `han.spark.predict`,
the config schema and the typed errors, each the real object (not a copy)."""

import inspect
import subprocess
import sys

import pytest

from import_graph import ROOT


def test_han_load_and_run_are_the_api_functions():
    import han
    import han.api

    assert han.load is han.api.load and han.run is han.api.run and han.train is han.api.train
    assert han.Classifier is han.api.Classifier
    assert list(inspect.signature(han.load).parameters)[:2] == ["path", "weights"]
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        han.no_such_thing  # noqa: B018


def test_spark_predict_is_importable_without_pyspark_imported():
    code = "import sys, han.spark; print(callable(han.spark.predict), 'pyspark' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.split() == ["True", "False"]


def test_the_config_schema_and_loader_are_at_han_config(tmp_path):
    from han.config import Config, DataConfig, ModelConfig, TrainConfig, config_from_dict, load_config

    path = tmp_path / "mine.yaml"
    path.write_text("data:\n  source: docs.csv\n  text_column: body\n  label_column: topic\n", encoding="utf-8")
    config = load_config(path, ["train.lr=0.01"])
    assert isinstance(config, Config) and isinstance(config.data, DataConfig)
    assert isinstance(config.model, ModelConfig) and isinstance(config.train, TrainConfig)
    assert config.train.lr == 0.01 and config.data.text_column == "body"
    assert config_from_dict(config.model_dump(mode="json")) == config


def test_the_typed_errors_are_at_han_errors():
    from han.errors import ConfigError, DataError, HanError, RunDirError, StorageError

    for error in (ConfigError, DataError, RunDirError, StorageError):
        assert issubclass(error, HanError)
