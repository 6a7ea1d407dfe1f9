"""Batch scoring on Spark: a trained run over a DataFrame's text column(s), with a label and one probability per class.

    import han.spark
    scored = han.spark.predict(df, "/shared/runs/bbc")            # df has a `text` column
    scored.select("id", "label", "p_business", "p_sport").write.parquet("scored/")

The scoring is `df.mapInPandas`: each Python worker loads the model once (a module-level cache,
kept while Spark reuses the worker, `spark.python.worker.reuse`, on by default), sets torch's CPU
threads to the task's cores (`spark.task.cpus`, default 1: every concurrent task scores on its own
core) and reads its partition as a stream: Arrow batches of `spark.sql.execution.arrow.maxRecordsPerBatch`
rows (10,000 by default; lower it for very long documents), each scored `chunk_size` documents at a
time, one output frame per chunk. A partition of any size costs one Arrow batch and one chunk of
memory. An empty partition loads nothing and yields nothing.

Texts go through exactly what `han predict` does with a CSV cell: the text column(s) stripped and
joined (the run's `data.text_separator`, empty parts skipped), then cleaning, the `max_chars` cut,
segmentation, caps and the vocabulary (han/serving/trained.py); results do not depend on the partitioning or
the chunk size. A null text is an error: `DataError` naming the partition, the row and the row's
other values (filter the nulls, or fill them with `df.na.fill({"text": ""})` to score them as empty
documents, as `han predict` scores an empty cell).

Where the executors find the run directory:
- `shipped=False` (default): `run_dir` is a path that the driver and every executor read at the same
  place: local mode, shared storage (NFS, a mounted bucket) or a path baked into the executors' image.
- `shipped=True`: the run directory was shipped with the job and each executor finds its copy with
  `SparkFiles.get(name)`, `name` being the last part of `run_dir`: `spark.sparkContext.addFile(
  "runs/bbc", recursive=True)` then `predict(df, "runs/bbc", shipped=True)`; or an archive of the run
  directory's contents, `spark-submit --archives bbc.zip#bbc` (or `sc.addArchive("bbc.zip#bbc")`), then
  `predict(df, "bbc", shipped=True)`. The driver reads `run_dir` when it is a local folder, its
  `SparkFiles` copy otherwise.

The driver checks the run directory against its manifest and reads its labels (the output schema);
each executor loads and verifies its copy and refuses one whose weights or labels differ from the
driver's. pyspark is imported only when `predict` runs; `import han` never imports it.

A multi-label run (task: multilabel) gives a `labels` string column by default (`label_col`): each
row's predicted label set at the run's thresholds, joined by `han.serving.inference.label_separator` (the run's
`data.label_separator`, default ";"), exactly the "labels" cell of `han predict`'s CSV ("" for no
label); the probability columns are each label's own probability. The executors also check that their
thresholds are the driver's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from han.errors import ConfigError, DataError, RunDirError
from han.store.rundir import RunDir

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from han.serving.trained import TrainedRun

DEFAULT_CHUNK_SIZE = 2048  # han.serving.inference.PREDICT_CHUNK_SIZE, without importing torch on the driver


@dataclass(frozen=True)
class _Job:
    """What every task needs to score its partition (pickled with the function mapInPandas runs)."""

    run_dir: str
    shipped: bool
    weights: str
    device: str | None
    weights_sha256: str
    classes: tuple[str, ...]
    text_cols: tuple[str, ...]
    separator: str
    chunk_size: int
    threads: int | None
    label_col: str
    prob_cols: tuple[str, ...]
    thresholds_sha256: str | None = None  # a multi-label run's thresholds.json; None for a single-label run


# Models loaded by this Python worker: (run path, weights, device, weights SHA-256) -> the loaded run.
_MODELS: dict[tuple[str, str, str | None, str], TrainedRun] = {}


def predict(
    df: DataFrame,
    run_dir: str | os.PathLike[str],
    text_col: str | Sequence[str] | None = None,
    *,
    shipped: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    threads: int | None = None,
    weights: str = "best",
    device: str | None = None,
    label_col: str | None = None,
    prob_prefix: str = "p_",
) -> DataFrame:
    """`df` with the predicted label of each row and one probability column per class (lazy, like any transformation).

    The output holds every input column, then `label_col` (string) and `<prob_prefix><class>`
    (double) for each class of the run, in the run's class order; rows keep their partitions and order.
    A multi-label run's `label_col` holds the predicted label set joined by the run's label separator
    (see the module docstring).

    run_dir: the run directory, read by the driver and the executors at that path; with `shipped`,
        shipped with `sc.addFile(run_dir, recursive=True)` or `--archives` and found with `SparkFiles`
        (see the module docstring).
    text_col: the string column holding the documents, or several joined as `han predict` joins them
        (default: the run's `data.text_column`). A null text (null in every text column) fails the job
        with a `DataError` naming the row; an empty string is scored as an empty document.
    chunk_size: documents encoded and scored at a time (memory per task: one chunk).
    threads: torch CPU threads per task (default: the task's cores, `spark.task.cpus`).
    weights: best or last; device: cpu, cuda, cuda:N or auto (default: the run's `device`).
    label_col: the prediction's column (default `label`; `labels` for a multi-label run).
    """
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    if chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size}: give a positive number of documents")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads={threads}: give a positive number of threads (or None for the task's cores)")
    if weights not in ("best", "last"):
        raise ConfigError(f"weights={weights!r}: use best or last")
    run = RunDir(_driver_run_dir(run_dir, shipped))
    weights_path = run.verify_trained(weights)
    config = run.load_config()
    classes = run.load_labels()
    listed = run.listed_artifacts()
    thresholds_sha256 = None
    if config.multilabel:
        run.require(run.thresholds_path, hint="training chooses them at its end: train the run again (`han train`)")
        run.verify_artifacts(run.thresholds_path)
        thresholds_sha256 = str(listed[run.thresholds_path.relative_to(run.root).as_posix()]["sha256"])
    if label_col is None:
        label_col = "labels" if config.multilabel else "label"
    text_cols = (
        list(config.data.text_columns) if text_col is None else [text_col] if isinstance(text_col, str) else [*text_col]
    )
    if not text_cols:
        raise ConfigError("text_col: give a column (or several)")
    fields = {field.name: field for field in df.schema.fields}
    for column in text_cols:
        if column not in fields:
            raise DataError(f"column {column!r} not found (columns: {', '.join(fields)}); pass text_col=")
        if not isinstance(fields[column].dataType, StringType):
            raise DataError(
                f"column {column!r} is {fields[column].dataType.simpleString()}, not string; "
                f"cast it (df.withColumn({column!r}, df[{column!r}].cast('string'))) or pick the text column"
            )
    prob_cols = [f"{prob_prefix}{name}" for name in classes]
    taken = {name.lower(): name for name in fields}
    clashes = [name for name in [label_col, *prob_cols] if name.lower() in taken]
    if clashes:
        raise DataError(
            f"output column(s) {', '.join(clashes)} already in the DataFrame; drop them or pass label_col= / prob_prefix="
        )
    job = _Job(
        run_dir=str(run_dir) if shipped else str(Path(run_dir).absolute()),  # executors run elsewhere
        shipped=shipped,
        weights=weights,
        device=device,
        weights_sha256=str(listed[weights_path.relative_to(run.root).as_posix()]["sha256"]),
        thresholds_sha256=thresholds_sha256,
        classes=tuple(classes),
        text_cols=tuple(text_cols),
        separator=config.data.text_separator,
        chunk_size=chunk_size,
        threads=threads,
        label_col=label_col,
        prob_cols=tuple(prob_cols),
    )
    schema = StructType(
        [
            *df.schema.fields,
            StructField(label_col, StringType(), True),
            *(StructField(name, DoubleType(), True) for name in prob_cols),
        ]
    )
    return df.mapInPandas(functools.partial(_score_partition, job), schema)


def _driver_run_dir(run_dir: str | os.PathLike[str], shipped: bool) -> Path:
    """The run directory as the driver reads it: `run_dir`, or (shipped and not a local folder) its SparkFiles copy."""
    path = Path(run_dir)
    if shipped and not path.is_dir():
        from pyspark import SparkFiles

        try:
            copy = Path(SparkFiles.get(path.name))
        except Exception:  # no SparkContext here (Spark Connect): the local path is all there is
            return path
        if not copy.is_dir():
            raise RunDirError(
                f"{run_dir}: not a local folder and not shipped with the job (no {path.name!r} among SparkFiles); "
                f"ship it with spark.sparkContext.addFile(path, recursive=True) or --archives run.zip#{path.name}"
            )
        return copy
    return path


def _executor_run_dir(job: _Job) -> Path:
    """Where this executor reads the run directory: `job.run_dir`, or its SparkFiles copy when shipped."""
    if not job.shipped:
        return Path(job.run_dir)
    from pyspark import SparkFiles

    name = Path(job.run_dir).name
    copy = Path(SparkFiles.get(name))
    if not copy.is_dir():
        raise RunDirError(
            f"{job.run_dir}: shipped=True but this executor has no {name!r} among its SparkFiles "
            f"({SparkFiles.getRootDirectory()}); ship it with spark.sparkContext.addFile(path, recursive=True) "
            f"or --archives run.zip#{name}, or pass shipped=False with a path every executor can read"
        )
    return copy


def _trained(job: _Job) -> TrainedRun:
    """This worker's model for `job`, loaded as `han predict` loads it (verified, and checked against the driver's run) on first use."""
    path = _executor_run_dir(job)
    key = (str(path.resolve()), job.weights, job.device, job.weights_sha256)
    trained = _MODELS.get(key)
    if trained is None:
        from han.serving.trained import load_trained_run

        trained = load_trained_run(path, job.weights, job.device)
        run = trained.run
        weights_path = run.best_weights_path if job.weights == "best" else run.last_weights_path
        listed = run.listed_artifacts()
        found = listed[weights_path.relative_to(run.root).as_posix()]["sha256"]
        thresholds = listed.get(run.thresholds_path.relative_to(run.root).as_posix()) if trained.multilabel else None
        differs = [
            name
            for name, same in (
                ("weights", found == job.weights_sha256),
                ("labels", tuple(trained.label_names) == job.classes),
                ("thresholds", (thresholds or {}).get("sha256") == job.thresholds_sha256),
            )
            if not same
        ]
        if differs:
            raise RunDirError(
                f"{path}: this executor's copy of the run directory is not the one the driver read "
                f"(different {differs[0]}); ship or sync the same run"
            )
        _MODELS[key] = trained
    return trained


def _task_threads(job: _Job) -> int:
    """torch threads for this task: `threads`, else the task's cores (`spark.task.cpus`), else 1."""
    if job.threads is not None:
        return job.threads
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
        return max(1, int(context.cpus())) if context is not None else 1
    except Exception:  # outside a task, or a Spark without TaskContext.cpus
        return 1


def _partition_id() -> int | None:
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
        return context.partitionId() if context is not None else None
    except ImportError:
        return None


def _score_partition(job: _Job, batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The function mapInPandas runs on a partition (see `_score_frames`)."""
    return _score_frames(job, batches, _partition_id())


def _score_frames(job: _Job, batches: Iterable[pd.DataFrame], partition: int | None = None) -> Iterator[pd.DataFrame]:
    """Score a stream of pandas frames `job.chunk_size` rows at a time: one output frame (the rows + label + probabilities) per chunk.

    Nothing is loaded until a row comes, so an empty partition costs nothing. A null text raises
    `DataError` naming `partition` and the row (counted from 1 within the partition).
    """
    import numpy as np
    import pandas as pd

    from han.data.records import join_text
    from han.serving.inference import label_separator, predict_texts
    from han.util.cpus import use_threads

    trained = None
    seen = 0
    for batch in batches:
        for start in range(0, len(batch), job.chunk_size):
            part = batch.iloc[start : start + job.chunk_size].reset_index(drop=True)
            missing = part[list(job.text_cols)].isna().all(axis=1).to_numpy()
            if missing.any():
                raise DataError(_null_message(job, part, int(np.flatnonzero(missing)[0]), seen, partition))
            columns = [part[c].tolist() for c in job.text_cols]
            texts = [join_text(values, job.separator) for values in zip(*columns, strict=True)]
            if trained is None:
                trained = _trained(job)
                use_threads(_task_threads(job))
            probabilities = np.stack(list(predict_texts(trained, texts, len(texts)))).astype(np.float32)
            if trained.multilabel:  # the joined label set at the run's thresholds, as `han predict` writes it
                separator = label_separator(trained)
                chosen = trained.predicted_sets(probabilities)
                labels = [separator.join(job.classes[i] for i in np.flatnonzero(row)) for row in chosen]
            else:
                labels = [job.classes[i] for i in probabilities.argmax(axis=1)]
            added = {job.label_col: labels}
            added.update(zip(job.prob_cols, probabilities.astype(np.float64).T, strict=True))
            yield pd.concat([part, pd.DataFrame(added, index=part.index)], axis=1)
            seen += len(part)


def _null_message(job: _Job, part: pd.DataFrame, index: int, seen: int, partition: int | None) -> str:
    """The one-line error for a null text: which row, its other values, and how to get past it."""
    where = f"partition {partition}, row {seen + index + 1}" if partition is not None else f"row {seen + index + 1}"
    others = [c for c in part.columns if c not in job.text_cols][:4]
    values = ", ".join(f"{c}={_short(part[c].iloc[index])}" for c in others)
    columns = (
        f"text column {job.text_cols[0]!r} is null"
        if len(job.text_cols) == 1
        else f"text columns {', '.join(map(repr, job.text_cols))} are all null"
    )
    fill = ", ".join(f"{c!r}: ''" for c in job.text_cols)
    return (
        f"han.spark.predict: {where}{f' ({values})' if values else ''}: {columns}; drop such rows "
        f"(df.dropna(subset=[...])) or fill them (df.na.fill({{{fill}}}) scores them as empty documents, "
        "as `han predict` scores an empty cell)"
    )


def _short(value: Any, limit: int = 60) -> str:
    """`repr` of a cell (numpy scalars as Python values), cut at `limit` characters."""
    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
