"""Multi-label runs (task: multilabel) through the other paths: compare, the Python API, sharded
preprocess and predict, tune, MLflow and Spark scoring."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import TINY_CONFIG, TOPICS, invoke, make_multilabel_corpus, write_csv
from han.config import Config, load_config
from han.store.encoded import EncodedSplit
from han.workflows.run import run_all

NAMES = sorted(TOPICS)  # food, sport, tech


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("multilabel-paths") / "topics.csv", make_multilabel_corpus(240))


@pytest.fixture(scope="module")
def overrides(corpus: Path) -> list[str]:
    return [
        f"data.source={corpus}",
        "data.split_column=split",
        "task=multilabel",
        "data.label_column=topics",
        "data.label_separator=;",
        "train.max_epochs=3",
        "train.threads=1",
    ]


@pytest.fixture(scope="module")
def config(overrides: list[str]) -> Config:
    return load_config(TINY_CONFIG, overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, config: Config) -> Path:
    run_dir = tmp_path_factory.mktemp("multilabel-run") / "run"
    run_all(config, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [row["text"] for row in make_multilabel_corpus(30, seed=5)] + ["", "<b>goal</b> & code"]


@pytest.fixture(scope="module")
def texts_csv(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> Path:
    return write_csv(tmp_path_factory.mktemp("multilabel-texts") / "texts.csv", [{"text": t} for t in texts])


def cli_predictions(run_dir: Path, source: Path, output: Path) -> list[dict[str, Any]]:
    invoke("predict", run_dir, source, "-o", output, check=True)
    return [json.loads(line) for line in output.read_text().splitlines()]


# --- han compare -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_compare_tables_micro_f1_and_tests_exact_match(config, tmp_path):
    from han.reports.comparison import comparison_markdown
    from han.workflows.compare import ComparePlan, compare

    models, seeds = ["han", "linear"], [0, 1]
    directory = tmp_path / "cmp"
    result = compare(ComparePlan(config, str(TINY_CONFIG), models, seeds, directory))
    assert result["task"] == "multilabel" and result["metric"] == "micro_f1"
    assert result["significance_metric"] == "exact_match" and "exact match" in result["significance_test"]
    means = {row["model"]: row["summary"]["test_micro_f1"]["mean"] for row in result["rows"]}
    assert result["best"] == max(means, key=means.get)
    exact = {}
    for row in result["rows"]:
        assert row["complete"] and set(row["summary"]) >= {"test_micro_f1", "test_macro_f1", "test_exact_match"}
        assert "test_accuracy" not in row["summary"]
        matched = []
        for seed in seeds:
            name = f"{row['model']}-seed{seed}"
            figures = json.loads((directory / "results" / f"{name}.json").read_text())
            metrics = json.loads((directory / "runs" / name / "metrics.json").read_text())
            # the run's own metrics, at its thresholds, as `han evaluate` computes them
            assert figures["test_micro_f1"] == metrics["test"]["micro_f1"]
            assert figures["test_exact_match"] == metrics["test"]["exact_match"]
            assert figures["validation_macro_f1"] == metrics["validation"]["macro_f1"]
            predicted, labels = figures["test_predicted"], figures["test_labels"]
            assert len(predicted) == len(labels) == result["split_sizes"]["test"]
            assert all(isinstance(s, list) and s == sorted(set(s)) for s in predicted + labels)
            assert all(0 <= i < len(NAMES) for s in predicted + labels for i in s)
            hits = [p == t for p, t in zip(predicted, labels, strict=True)]
            assert np.mean(hits) == pytest.approx(figures["test_exact_match"])
            matched.append(np.mean(hits))
        exact[row["model"]] = float(np.mean(matched))
    (test,) = result["significance"]
    assert test["against"] == result["best"]
    assert test["difference"] == pytest.approx(exact[test["model"]] - exact[result["best"]], abs=1e-9)
    markdown = (directory / "compare.md").read_text()
    assert markdown == comparison_markdown(result)
    header = next(line for line in markdown.splitlines() if line.startswith("| model"))
    assert "test micro-F1" in header and "test exact match" in header and "vs best (exact match)" in header
    assert "test accuracy" not in header
    html = (directory / "compare.html").read_text()
    assert "test micro-F1" in html and "best by micro-F1" in html


# --- Python API ----------------------------------------------------------------------------------------
def test_the_api_predicts_the_label_sets_han_predict_writes(trained, texts, texts_csv, tmp_path):
    import han

    classifier = han.load(trained)
    assert classifier.multilabel and set(classifier.thresholds or {}) == set(NAMES)
    ours = classifier.predict(texts)
    assert ours.multilabel and len(ours) == len(texts)
    rows = cli_predictions(trained, texts_csv, tmp_path / "out.jsonl")
    assert ours.labels == [r["labels"] for r in rows]
    assert all(isinstance(s, list) for s in ours.labels) and any(len(s) > 1 for s in ours.labels)
    np.testing.assert_allclose(ours.probabilities, [[r[f"p_{c}"] for c in ours.classes] for r in rows], atol=1e-6)
    assert classifier.predict(texts[3]).labels == [ours.labels[3]]
    empty = classifier.predict([])
    assert empty.labels == [] and empty.probabilities.shape == (0, len(NAMES))
    explanation = classifier.explain(texts[0])
    assert explanation.labels == ours.labels[0]
    assert explanation.probabilities == pytest.approx(dict(zip(ours.classes, ours.probabilities[0], strict=True)))
    assert sum(s.weight for s in explanation.sentences if s.weight is not None) == pytest.approx(1.0, abs=1e-5)


# --- sharding ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_prediction_shards_merge_into_the_single_process_output(trained, tmp_path, suffix):
    data = write_csv(tmp_path / "input.csv", [{"text": r["text"]} for r in make_multilabel_corpus(45, seed=11)])
    single, sharded = tmp_path / f"single{suffix}", tmp_path / f"sharded{suffix}"
    invoke("predict", trained, data, "--output", single, "--chunk-size", 8, check=True)
    for index in (0, 1):
        invoke("predict", trained, data, "--output", sharded, "--chunk-size", 8, "--shard", f"{index}/2", check=True)
    invoke("merge-predictions", sharded, "--shards", 2, check=True)
    assert sharded.read_bytes() == single.read_bytes()
    assert "labels" in single.read_text().splitlines()[0]


def test_preprocess_shards_merge_into_the_single_process_run(overrides, tmp_path):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    invoke("preprocess", TINY_CONFIG, *overrides, "--run-dir", single, check=True)
    for index in (0, 1):
        invoke("preprocess", TINY_CONFIG, *overrides, "--run-dir", sharded, "--shard", f"{index}/2", check=True)
    invoke("preprocess", TINY_CONFIG, *overrides, "--run-dir", sharded, "--merge-shards", 2, check=True)
    for name in ("vocab.json", "labels.json", "config.json", "embeddings.safetensors"):
        assert (sharded / name).read_bytes() == (single / name).read_bytes(), name
    for split in ("train", "validation", "test"):
        a, b = EncodedSplit.load(single / "data" / split), EncodedSplit.load(sharded / "data" / split)
        assert a.multilabel and b.multilabel
        for field in ("tokens", "sentence_offsets", "document_offsets", "labels"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (split, field)


# --- han tune ------------------------------------------------------------------------------------------
def test_tune_maximises_validation_micro_f1_and_best_yaml_reproduces_it(config, tmp_path):
    pytest.importorskip("optuna")
    from han.workflows.tune import TunePlan, tune

    space = {"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}, "train.batch_size": [8, 16]}
    result = tune(TunePlan(config, str(TINY_CONFIG), 2, tmp_path / "tune", space))
    assert result["metric"] == "validation_micro_f1" and result["direction"] == "maximize"
    assert result["finished"] == 2 and result["best"] is not None
    for trial in result["trials"]:
        log = (tmp_path / "tune" / "trials" / f"trial-{trial['number']}" / "train_log.jsonl").read_text()
        assert trial["value"] == max(json.loads(line)["validation_micro_f1"] for line in log.splitlines())
    reproduced = run_all(load_config(tmp_path / "tune" / "best.yaml"), tmp_path / "run")
    assert reproduced.train.best_metric == result["best"]["value"]
    assert (tmp_path / "run" / "thresholds.json").is_file()


# --- MLflow --------------------------------------------------------------------------------------------
def test_mlflow_logs_the_run_and_its_model_predicts_the_joined_label_sets(
    overrides, texts, texts_csv, tmp_path, monkeypatch
):
    pytest.importorskip("mlflow")
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    config = load_config(TINY_CONFIG, [*overrides, "tracking=mlflow", "tracking_experiment=han-multilabel"])
    run_dir = tmp_path / "run"
    run_all(config, run_dir)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("han-multilabel")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("micro_f1", "macro_f1", "exact_match", "hamming_loss"):
        assert run.data.metrics[f"test_{key}"] == pytest.approx(metrics["test"][key], abs=1e-12)
    assert len(client.get_metric_history(run.info.run_id, "validation_micro_f1")) == 3

    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    frame = model.predict(pd.DataFrame({"text": texts}))
    assert list(frame.columns) == ["labels", *(f"p_{name}" for name in NAMES)]
    out = tmp_path / "out.csv"
    invoke("predict", run_dir, texts_csv, "-o", out, check=True)
    expected = pd.read_csv(out, keep_default_na=False, dtype={"labels": str})
    assert frame["labels"].tolist() == expected["labels"].tolist()
    assert any(";" in cell for cell in frame["labels"])
    for name in NAMES:
        np.testing.assert_allclose(frame[f"p_{name}"], expected[f"p_{name}"], atol=1e-6)


# --- Spark ---------------------------------------------------------------------------------------------
def _spark_job(run_dir: Path) -> Any:
    from han.spark import _Job
    from han.store.rundir import RunDir

    listed = RunDir(run_dir).listed_artifacts()
    return _Job(
        run_dir=str(run_dir),
        shipped=False,
        weights="best",
        device=None,
        weights_sha256=listed["model/best.safetensors"]["sha256"],
        classes=tuple(NAMES),
        text_cols=("text",),
        separator="\n\n",
        chunk_size=7,
        threads=1,
        label_col="labels",
        prob_cols=tuple(f"p_{c}" for c in NAMES),
        thresholds_sha256=listed["thresholds.json"]["sha256"],
    )


def test_spark_partitions_score_the_joined_label_sets_of_han_predict(trained, texts, texts_csv, tmp_path):
    """What each Spark task runs on its partition (han.spark._score_frames), without a Spark session."""
    pd = pytest.importorskip("pandas")
    from han.errors import RunDirError
    from han.spark import _MODELS, _score_frames

    frames = list(_score_frames(_spark_job(trained), iter([pd.DataFrame({"id": range(len(texts)), "text": texts})])))
    scored = pd.concat(frames, ignore_index=True)
    assert list(scored.columns) == ["id", "text", "labels", *(f"p_{c}" for c in NAMES)]
    rows = cli_predictions(trained, texts_csv, tmp_path / "out.jsonl")
    assert scored["labels"].tolist() == [";".join(r["labels"]) for r in rows]
    _MODELS.clear()
    job = _spark_job(trained)
    stale = type(job)(**{**job.__dict__, "thresholds_sha256": "0" * 64})  # the driver read other thresholds
    with pytest.raises(RunDirError, match="different thresholds"):
        list(_score_frames(stale, iter([pd.DataFrame({"id": [0], "text": ["a goal"]})])))
    _MODELS.clear()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_spark_predict_gives_the_label_sets_of_han_predict(trained, texts, texts_csv, tmp_path):
    pytest.importorskip("pyspark")
    pytest.importorskip("pandas")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java")
    from pyspark.sql import SparkSession
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    import han.spark

    saved = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("han-test-multilabel")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    try:
        spark.sparkContext.setLogLevel("FATAL")
        schema = StructType([StructField("id", LongType(), False), StructField("text", StringType(), True)])
        df = spark.createDataFrame(list(enumerate(texts)), schema).repartition(2)
        scored = [row.asDict() for row in han.spark.predict(df, trained).orderBy("id").collect()]
    finally:
        spark.stop()
        if saved is None:
            os.environ.pop("PYSPARK_PYTHON", None)
        else:
            os.environ["PYSPARK_PYTHON"] = saved
    rows = cli_predictions(trained, texts_csv, tmp_path / "out.jsonl")
    assert [r["labels"] for r in scored] == [";".join(r["labels"]) for r in rows]
    for ours, theirs in zip(scored, rows, strict=True):
        for name in NAMES:
            assert ours[f"p_{name}"] == pytest.approx(theirs[f"p_{name}"], abs=1e-6)
