import itertools
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from han.config import TrainConfig
from han.errors import RunDirError
from han.store.rundir import RunDir
from han.text.preprocess import preprocess
from han.training.optim import lr_factor
from han.training.train import is_better_epoch, train


def test_run_directory_holds_every_artifact(trained_run):
    run = RunDir(trained_run)
    for path in (
        run.config_path,
        run.manifest_path,
        run.labels_path,
        run.vocab_path,
        run.embeddings_path,
        run.best_weights_path,
        run.last_weights_path,
        run.train_log_path,
        run.metrics_path,
    ):
        assert path.is_file(), path
    assert run.splits() == ["test", "train", "validation"]
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["seed"] == 0 and len(manifest["data_fingerprint"]) == 64
    assert manifest["versions"]["torch"] and manifest["preprocess"]["documents"]["train"] == 168
    assert set(manifest["stage_seconds"]) == {"preprocess", "train", "evaluate"}
    log = [json.loads(line) for line in run.train_log_path.read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, len(log) + 1))
    assert {"train_loss", "validation_macro_f1", "docs_per_s", "lr"} <= set(log[0])
    assert not list(trained_run.rglob("*.tmp")), "no temporary files left behind"


def test_tiny_model_learns_the_synthetic_task(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9
    log = [json.loads(line) for line in (trained_run / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["train_loss"] < log[0]["train_loss"]


def test_same_seed_gives_identical_runs(tmp_path, tiny_config):
    weights = []
    for name in ("a", "b"):
        preprocess(tiny_config, tmp_path / name)
        train(
            tiny_config.model_copy(update={"train": tiny_config.train.model_copy(update={"max_epochs": 2})}),
            tmp_path / name,
        )
        weights.append(load_file(str(tmp_path / name / "model" / "last.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert np.array_equal(weights[0][key], weights[1][key]), key
    assert (tmp_path / "a" / "train_log.jsonl").read_text().count("\n") == 2


def test_early_stopping_stops_when_the_metric_stalls(tmp_path, tiny_config):
    # a learning rate of ~0 cannot improve the validation loss after the first epoch
    config = tiny_config.model_copy(
        update={
            "train": tiny_config.train.model_copy(
                update={"lr": 1e-12, "max_epochs": 10, "early_stopping_patience": 2, "early_stopping_metric": "loss"}
            )
        }
    )
    preprocess(config, tmp_path)
    result = train(config, tmp_path)
    assert result.epochs_run < 10 and result.best_epoch <= result.epochs_run - 2


def epoch_record(accuracy: float, loss: float) -> dict[str, float]:
    return {"validation_accuracy": accuracy, "validation_loss": loss}


def test_an_equal_metric_with_a_lower_validation_loss_is_a_better_epoch():
    best = epoch_record(0.98, 0.08)
    assert is_better_epoch(epoch_record(0.98, 0.06), best, "accuracy")  # tie: the loss decides
    assert not is_better_epoch(epoch_record(0.98, 0.09), best, "accuracy")
    assert not is_better_epoch(epoch_record(0.97, 0.01), best, "accuracy")  # the metric comes first
    assert is_better_epoch(epoch_record(0.99, 0.50), best, "accuracy")
    assert is_better_epoch(epoch_record(0.0, 1.0), None, "accuracy")
    assert not is_better_epoch(epoch_record(0.99, 0.08), best, "loss")  # the loss alone when it is the metric
    assert is_better_epoch(epoch_record(0.90, 0.07), best, "loss")


def test_training_keeps_going_while_the_metric_ties_and_the_loss_falls(tmp_path, tiny_config):
    # the tiny corpus's validation split scores 1.0 within a few epochs; the epochs after still lower its loss
    config = tiny_config.model_copy(
        update={
            "train": tiny_config.train.model_copy(
                update={"lr": 0.02, "max_epochs": 8, "early_stopping_patience": 1, "early_stopping_metric": "accuracy"}
            )
        }
    )
    preprocess(config, tmp_path)
    result = train(config, tmp_path)
    history = result.history
    best = history[result.best_epoch - 1]
    assert all(r["validation_accuracy"] <= best["validation_accuracy"] for r in history)
    tied = [r for r in history if r["validation_accuracy"] == best["validation_accuracy"]]
    assert len(tied) >= 2 and best["validation_loss"] == min(r["validation_loss"] for r in tied)
    assert best is not tied[0]  # the first epoch to reach the best accuracy was not kept


def test_train_refuses_other_preprocessing_settings(tmp_path, tiny_config):
    preprocess(tiny_config, tmp_path)
    changed = tiny_config.model_copy(update={"preprocess": tiny_config.preprocess.model_copy(update={"max_words": 7})})
    with pytest.raises(RunDirError, match=r"preprocess\.max_words"):
        train(changed, tmp_path)


def test_train_needs_a_preprocessed_run(tmp_path, tiny_config):
    with pytest.raises(RunDirError, match=r"not found|missing"):
        train(tiny_config, tmp_path / "nothing")


def test_learning_rate_schedule():
    config = TrainConfig(scheduler="cosine", warmup_fraction=0.1)
    factors = [lr_factor(step, 100, config) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:])) and factors[-1] < 0.01
    assert lr_factor(50, 100, TrainConfig(scheduler="constant", warmup_fraction=0.0)) == 1.0
    assert lr_factor(50, 100, TrainConfig(scheduler="linear", warmup_fraction=0.0)) == pytest.approx(0.5)


def test_saved_config_is_resolved_and_loads_as_a_config(trained_run, tiny_config):
    from han.config import load_config

    assert load_config(RunDir(trained_run).config_path) == tiny_config
