"""`han tune`: trials over one preprocessing, the best config reproduced by `han run`, pruning, resuming, refusals."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY_CONFIG, invoke, run_until_then_sigterm
from han.config import load_config
from han.errors import ConfigError, RunDirError
from han.training.train import train
from han.workflows.run import run_all
from han.workflows.tune import DEFAULT_SPACE, TunePlan, check_space, load_space, tune

optuna = pytest.importorskip("optuna")

# Small and fast: three short trials; a checkpoint every 2 steps so a stopped trial has one mid-epoch.
EXTRA = ["train.max_epochs=3", "train.checkpoint_every_steps=2"]
SPACE = {
    "train.lr": {"low": 1e-3, "high": 3e-2, "log": True},
    "model.dropout": {"low": 0.0, "high": 0.3},
    "train.batch_size": [8, 16],
}


def _plan(config, directory: Path, trials: int = 3, space=SPACE) -> TunePlan:
    return TunePlan(config, str(TINY_CONFIG), trials, directory, dict(space))


def _counted(trials: list[dict]) -> list[dict]:
    """The trials that count (interrupted ones left out), as params and value."""
    return [{"params": t["params"], "value": t["value"], "state": t["state"]} for t in trials if t["state"] != "FAIL"]


@pytest.fixture(scope="module")
def overrides(tiny_overrides):
    return [*tiny_overrides, *EXTRA]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, overrides):
    directory = tmp_path_factory.mktemp("tune") / "tiny"
    return tune(_plan(load_config(TINY_CONFIG, overrides), directory)), directory


def test_trials_finish_and_the_outputs_are_written(tuned):
    result, directory = tuned
    assert result["finished"] == 3 and result["metric"] == "validation_macro_f1" and result["direction"] == "maximize"
    assert [t["number"] for t in result["trials"]] == [0, 1, 2]
    assert all(t["state"] in ("COMPLETE", "PRUNED") for t in result["trials"])
    assert json.loads((directory / "tune.json").read_text()) == json.loads(json.dumps(result))
    for trial in result["trials"]:
        assert set(trial["params"]) == set(SPACE)
        assert 1e-3 <= trial["params"]["train.lr"] <= 3e-2 and trial["params"]["train.batch_size"] in (8, 16)
        run = directory / "trials" / f"trial-{trial['number']}"
        saved = json.loads((run / "config.json").read_text())
        assert saved["train"]["lr"] == trial["params"]["train.lr"]  # the trial trained with its sampled values
        log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
        assert len(log) == trial["epochs"]
        if trial["state"] == "COMPLETE":
            assert trial["value"] == max(r["validation_macro_f1"] for r in log)
    complete = [t for t in result["trials"] if t["state"] == "COMPLETE"]
    assert result["best"]["value"] == max(t["value"] for t in complete)
    # The study persists in the journal: reloading it shows the same trials.
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(directory / "study.journal"))
    )
    study = optuna.load_study(study_name="han-tune", storage=storage)
    assert [(t.number, t.state.name, t.params, t.value) for t in study.trials] == [
        (t["number"], t["state"], t["params"], t["value"]) for t in result["trials"]
    ]


def test_han_run_on_best_yaml_reproduces_the_best_trial(tuned, tmp_path):
    result, directory = tuned
    best_yaml = directory / "best.yaml"
    text = best_yaml.read_text()
    assert text.startswith("#") and f"han run {best_yaml} --run-dir runs/" in text.split("\n#   ", 1)[1].splitlines()[0]
    config = load_config(best_yaml)
    for name, value in result["best"]["params"].items():
        section, key = name.split(".")
        assert getattr(getattr(config, section), key) == value
    reproduced = run_all(config, tmp_path / "run")
    assert reproduced.train.best_metric == result["best"]["value"]  # exactly: same seed, same preprocessing


def test_a_finished_tuning_resumed_only_rewrites_its_outputs(tuned, overrides):
    result, directory = tuned
    before = {p: p.stat().st_mtime_ns for p in directory.rglob("*.safetensors")}
    again = tune(_plan(load_config(TINY_CONFIG, overrides), directory), resume=True)
    assert {p: p.stat().st_mtime_ns for p in directory.rglob("*.safetensors")} == before
    assert json.dumps(again) == json.dumps(result)


def test_refusals(tuned, overrides, tmp_path, monkeypatch):
    _, directory = tuned
    config = load_config(TINY_CONFIG, overrides)
    with pytest.raises(RunDirError, match="--resume"):
        tune(_plan(config, directory))
    other = load_config(TINY_CONFIG, [*overrides, "train.max_epochs=2"])
    with pytest.raises(RunDirError, match="another config"):
        tune(_plan(other, directory), resume=True)
    with pytest.raises(RunDirError, match="another space"):
        tune(_plan(config, directory, space=DEFAULT_SPACE), resume=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a han tuning"):
        tune(_plan(config, foreign), resume=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(RunDirError, match="inside the han run directory"):
        tune(_plan(config, directory / "data" / "inner"))
    for space, message in (
        ({"train.lrr": [0.1]}, "unknown key"),
        ({"embeddings.dim": [8, 16]}, "share one preprocessing"),
        ({"train.lr": {"low": 0.1, "high": 0.01}}, "low < high"),
        ({"train.lr": {"low": 0.0, "high": 0.1, "log": True}}, "low > 0"),
        ({"model.dropout": [0.1, 0.1]}, "distinct"),
        ({"model.dropout": [1.5]}, "model.dropout"),
        ([1, 2], "mapping"),
    ):
        with pytest.raises(ConfigError, match=message):
            check_space(space, config, "space")
    (tmp_path / "space.yaml").write_text("train.lr: [0.01, 0.02]\ntrain.lr: [0.03]\n")
    with pytest.raises(ConfigError, match=r"space\.yaml"):
        load_space(tmp_path / "space.yaml", config)
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ConfigError, match=r"pip install 'han\[tune\]'"):
        tune(_plan(config, tmp_path / "new"))
    assert not (tmp_path / "new").exists()


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_pruned_trials_stop_after_the_epoch_that_was_pruned(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr("han.workflows.tune.make_pruner", AlwaysPrune)
    config = load_config(TINY_CONFIG, [f"data.source={tiny_config.data.source}", "data.split_column=split", *EXTRA])
    small = {**DEFAULT_SPACE, "model.word_hidden": [8], "model.sentence_hidden": [8]}  # the built-in space, narrowed
    result = tune(_plan(config, tmp_path / "tune", trials=2, space=small))
    assert [(t["state"], t["epochs"]) for t in result["trials"]] == [("PRUNED", 1), ("PRUNED", 1)]
    assert result["best"] is None and not (tmp_path / "tune" / "best.yaml").exists()
    for number in (0, 1):
        log = (tmp_path / "tune" / "trials" / f"trial-{number}" / "train_log.jsonl").read_text().splitlines()
        assert len(log) == 1


def test_an_epoch_hook_that_raises_ends_training_after_that_epoch(tiny_config, tmp_path):
    from han.text.preprocess import preprocess

    run_dir = tmp_path / "run"
    preprocess(tiny_config, run_dir)
    seen = []

    def hook(record):
        seen.append(record["epoch"])
        if record["epoch"] == 2:
            raise KeyError("stop here")

    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyError, match="stop here"):
        train(tiny_config, run_dir, on_epoch=hook)
    assert seen == [1, 2] and signal.getsignal(signal.SIGTERM) == handler
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and set(log[1]) >= {"validation_loss", "validation_macro_f1"}
    # The run directory stays consistent: resuming continues from the newest checkpoint to the end.
    result = train(tiny_config, run_dir, resume=True)
    assert result.epochs_run == tiny_config.train.max_epochs


@pytest.mark.slow
def test_a_tuning_stopped_by_sigterm_resumes_to_the_same_trials(tuned, overrides, tmp_path):
    straight, _ = tuned
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(SPACE))
    directory = tmp_path / "stopped"
    command = [
        "tune",
        str(TINY_CONFIG),
        *overrides,
        "--trials",
        "3",
        "--dir",
        str(directory),
        "--space",
        str(space_file),
    ]
    # Stop in the middle of the second trial (the first one finished, the second has a checkpoint).
    run_until_then_sigterm(command, directory / "trials" / "trial-1" / "checkpoints")
    stopped = json.loads((directory / "tune.json").read_text())
    assert [t["state"] for t in stopped["trials"]] == ["COMPLETE"]

    outcome = invoke(*command, "--resume", check=True)
    assert "best" in outcome.output and "best.yaml" in outcome.output
    resumed = json.loads((directory / "tune.json").read_text())
    assert resumed["finished"] == 3
    states = [(t["number"], t["state"], t.get("resumes")) for t in resumed["trials"]]
    assert states == [(0, "COMPLETE", None), (1, "FAIL", None), (2, "COMPLETE", 1), (3, "COMPLETE", None)]
    assert resumed["trials"][0]["value"] == straight["trials"][0]["value"]
    # The interrupted trial continued from its checkpoint, in its folder taken over, and the search
    # sampled what the uninterrupted one did: the same parameters and values.
    assert not (directory / "trials" / "trial-1").exists() and (directory / "trials" / "trial-2").is_dir()
    assert _counted(resumed["trials"]) == _counted(straight["trials"])
    assert resumed["best"]["params"] == straight["best"]["params"]
