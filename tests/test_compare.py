"""`han compare`: shared preprocessing, every kind through the same stages, the table, resuming and refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_CONFIG, invoke, one_line_error, run_until_then_sigterm
from han.config import load_config
from han.errors import ConfigError, RunDirError
from han.workflows.compare import ComparePlan, compare, parse_models

# Every test but the SIGTERM one reads `compared`: six runs, each trained in a process of its own (about 25 s
# on 2 cores); the SIGTERM test runs two comparisons (about 45 s).
pytestmark = pytest.mark.slow

MODELS = ["han", "mean", "linear"]
SEEDS = [0, 1]


def _plan(config, directory: Path, models=MODELS, seeds=SEEDS) -> ComparePlan:
    return ComparePlan(config, str(TINY_CONFIG), list(models), list(seeds), directory)


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_config):
    directory = tmp_path_factory.mktemp("compare") / "cmp"
    return compare(_plan(tiny_config, directory)), directory


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_model_and_seed_is_trained_and_tested_on_the_same_splits(compared):
    result, directory = compared
    assert [row["model"] for row in result["rows"]] == MODELS
    assert sorted(p.name for p in (directory / "results").iterdir()) == sorted(
        f"{m}-seed{s}.json" for m in MODELS for s in SEEDS
    )
    shared = {
        p.relative_to(directory / "data"): _digest(p) for p in (directory / "data" / "data").rglob("*") if p.is_file()
    }
    for model in MODELS:
        for seed in SEEDS:
            run = directory / "runs" / f"{model}-seed{seed}"
            config = json.loads((run / "config.json").read_text())
            assert config["model"]["kind"] == model and config["seed"] == seed
            copied = {p.relative_to(run): _digest(p) for p in (run / "data").rglob("*") if p.is_file()}
            assert copied == shared  # the one preprocessing, byte for byte
            figures = json.loads((directory / "results" / f"{model}-seed{seed}.json").read_text())
            metrics = json.loads((run / "metrics.json").read_text())  # each run is left as `han run` leaves it
            assert metrics["test"]["accuracy"] == figures["test_accuracy"]
            assert metrics["validation"]["macro_f1"] == figures["validation_macro_f1"]
    test_size = result["split_sizes"]["test"]
    for row in result["rows"]:
        assert row["complete"] and len(row["runs"]) == len(SEEDS)
        accuracies = [run["test_accuracy"] for run in row["runs"]]
        assert row["summary"]["test_accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
        assert row["summary"]["test_accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
        assert row["summary"]["parameters"] > 0 and all(run["inference_docs_per_s"] > 0 for run in row["runs"])
        for run in row["runs"]:  # accuracy is a share of the test documents
            assert round(run["test_accuracy"] * test_size) == pytest.approx(run["test_accuracy"] * test_size)


def test_the_best_model_is_tested_against_every_other(compared):
    result, directory = compared
    means = {row["model"]: row["summary"]["test_accuracy"]["mean"] for row in result["rows"]}
    assert result["best"] == max(means, key=means.get)
    tests = {entry["model"]: entry for entry in result["significance"]}
    assert set(tests) == set(MODELS) - {result["best"]}
    for model, entry in tests.items():
        # The bootstrap's difference is the difference of mean accuracies over the same documents and seeds.
        assert entry["difference"] == pytest.approx(means[model] - means[result["best"]], abs=1e-9)
        assert 0.0 <= entry["p_value"] <= 1.0 and entry["significant"] == (entry["p_value"] < 0.05)
    saved = json.loads((directory / "compare.json").read_text())
    assert saved == json.loads(json.dumps(result))
    html = (directory / "compare.html").read_text()
    markdown = (directory / "compare.md").read_text()
    assert all(model in html and model in markdown for model in MODELS)


def test_a_finished_comparison_resumes_without_training_again(compared, tiny_config):
    result, directory = compared
    before = {p: p.stat().st_mtime_ns for p in directory.rglob("*.safetensors")}
    again = compare(_plan(tiny_config, directory), resume=True)
    assert {p: p.stat().st_mtime_ns for p in directory.rglob("*.safetensors")} == before
    assert json.dumps(again) == json.dumps(result)


def test_refusals(compared, tiny_config, tmp_path):
    _, directory = compared
    with pytest.raises(RunDirError, match="--resume"):
        compare(_plan(tiny_config, directory))
    other = load_config(TINY_CONFIG, [f"data.source={tiny_config.data.source}", "data.split_column=split"])
    with pytest.raises(RunDirError, match="another config"):
        compare(_plan(other, directory), resume=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a han comparison"):
        compare(_plan(tiny_config, foreign), resume=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(RunDirError, match="inside the han run directory"):
        compare(_plan(tiny_config, directory / "data" / "inner"))
    with pytest.raises(ConfigError, match="unknown kind"):
        parse_models("han,transformer")
    with pytest.raises(ConfigError, match="twice"):
        parse_models("han,han")
    assert parse_models(" cnn , linear ") == ["cnn", "linear"]


def test_reports_refuse_a_model_without_attention_in_one_line(compared):
    _, directory = compared
    run = directory / "runs" / "mean-seed0"
    for command in (["report", str(run), "--split", "test"], ["corpus-report", str(run), "--split", "test"]):
        outcome = invoke(*command, "-o", directory.parent / "page.html")
        one_line_error(outcome, ConfigError.exit_code, "model.kind han", "model.kind mean")
        assert not (directory.parent / "page.html").exists()


def test_a_comparison_stopped_by_sigterm_resumes_to_the_same_table(tiny_overrides, tmp_path):
    overrides = [*tiny_overrides, "train.checkpoint_every_steps=2"]
    config = load_config(TINY_CONFIG, overrides)
    models, seeds = ["han", "cnn"], [0, 1]
    straight = compare(_plan(config, tmp_path / "straight", models, seeds))

    directory = tmp_path / "stopped"
    command = ["compare", str(TINY_CONFIG), *overrides, "--models", "han,cnn", "--seeds", "2", "--dir", str(directory)]
    # Stop in the middle of the second model's training (the first one finished, the second has a checkpoint).
    run_until_then_sigterm(command, directory / "runs" / "han-seed1" / "checkpoints")
    assert (directory / "results" / "han-seed0.json").is_file()
    assert not (directory / "results" / "han-seed1.json").exists() and not (directory / "compare.json").exists()

    invoke(*command, "--resume", check=True)
    resumed = json.loads((directory / "compare.json").read_text())
    assert resumed["best"] == straight["best"]
    for ours, theirs in zip(resumed["rows"], straight["rows"], strict=True):
        for key in ("test_accuracy", "test_macro_f1", "validation_accuracy", "epochs"):
            assert [r[key] for r in ours["runs"]] == [r[key] for r in theirs["runs"]], (ours["model"], key)
    for name in ("han-seed1", "cnn-seed0", "cnn-seed1"):
        ours, theirs = (
            json.loads((d / "results" / f"{name}.json").read_text()) for d in (directory, tmp_path / "straight")
        )
        assert ours["test_predicted"] == theirs["test_predicted"], name
    assert [(e["model"], e["p_value"]) for e in resumed["significance"]] == [
        (e["model"], e["p_value"]) for e in straight["significance"]
    ]
