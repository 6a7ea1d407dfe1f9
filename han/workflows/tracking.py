"""Experiment tracking of `han run` with MLflow (opt-in: `tracking: mlflow`; needs `pip install 'han[mlflow]'`).

A finished run is logged as one MLflow run under the experiment `tracking_experiment`: the resolved config
as params (dotted keys: `train.lr`, `model.kind`), each epoch's numbers as metrics with `step=epoch`
(`train_loss`, `validation_accuracy`, `lr`, `docs_per_s`, `epoch_seconds`, ...), the final evaluation
(`test_accuracy`, `test_macro_f1`, `test_loss`, `final_validation_*`), the run directory's manifest,
config, metrics and train log as artifacts, its HTML reports under `reports/` (`write_reports`: made in a
temporary folder, han never writing into a run directory what it does not need), and the model as a
pyfunc model (`han/serving/mlflow_model.py`, "models from code": safetensors weights, no pickle) under the
name `model`, its signature's input the run's own `data.text_column`(s).
A multi-label run logs every number of its metrics the same way (`test_micro_f1`, `test_exact_match`,
`test_hamming_loss`, ...; `test_accuracy` is its exact match; nested figures such as per-label ones are
left to metrics.json), and its model also carries thresholds.json and predicts label sets.

Where: the tracking URI MLflow itself would use when `MLFLOW_TRACKING_URI` is set (or `mlflow.set_tracking_uri`
was called), else the file store `./mlruns` (absolute `file:` URI), so nothing needs a server. MLflow 3 keeps
its file store behind `MLFLOW_ALLOW_FILE_STORE=true`; han sets it while it logs to a file store the user has
not decided about, and reading the store back with MLflow's tools needs it set too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from han.config import Config, DocumentReportConfig
from han.errors import ConfigError, HanError, StorageError
from han.store.rundir import RunDir
from han.util.atomic import failure_reason, write_failure

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # off while han logs (MLflow reloads the model to check it)
MODEL_NAME = "model"  # the logged model's name: runs:/<run id>/model
REPORTS = "reports"  # artifact folder of the run's HTML reports
REPORT_SPLIT = "validation"  # the split whose first documents the logged attention report shows
REPORT_DOCUMENTS = 20  # a sample, not the split: the report is made in seconds whatever the data's size
# MLflow's HTTP retries, backoff and timeout (its environment variables), set only where the user has not:
# its own defaults (7 retries, backoff factor 2, 120 s) make an unreachable server fail after about four minutes.
# The check before any work gives up within about 10 s (2 tries of at most 5 s, no wait between them when the
# connection is refused); logging the finished run retries longer, its run directory being complete already.
CHECK_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
LOG_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


class TrackingError(HanError):
    """The finished run could not be logged to the MLflow tracking store (the run directory is complete)."""


class _TrainLike(Protocol):
    @property
    def history(self) -> list[dict[str, Any]]: ...
    @property
    def epochs_run(self) -> int: ...
    @property
    def best_epoch(self) -> int: ...


class RunResultLike(Protocol):
    """What `track_run` reads of `han.workflows.run.RunResult` (han.workflows.tracking may not import the runner)."""

    @property
    def train(self) -> _TrainLike: ...
    @property
    def metrics(self) -> dict[str, dict[str, Any]]: ...
    @property
    def seconds(self) -> dict[str, float]: ...


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ConfigError("tracking: mlflow needs the mlflow package: pip install 'han[mlflow]'") from None
    return mlflow


def tracking_uri() -> str:
    """The tracking URI runs go to: MLflow's own (MLFLOW_TRACKING_URI or set in-process), else `file:` ./mlruns."""
    mlflow = _mlflow()
    if os.environ.get("MLFLOW_TRACKING_URI") or mlflow.is_tracking_uri_set():
        return str(mlflow.get_tracking_uri())
    return (Path.cwd() / "mlruns").absolute().as_uri()


def _is_file_store(uri: str) -> bool:
    return uri.startswith("file:") or ("://" not in uri and not uri.startswith(("databricks", "sqlite", "uc")))


@contextmanager
def _using(uri: str, http: Mapping[str, str]) -> Iterator[None]:
    """Log to `uri` for the duration, MLflow's file store allowed, its HTTP retries bounded by `http` (where the
    user has not set them), its progress bars and INFO chatter muted; then restore."""
    mlflow = _mlflow()
    defaults = {PROGRESS_BAR: "false", **http} | ({ALLOW_FILE_STORE: "true"} if _is_file_store(uri) else {})
    added = {name: value for name, value in defaults.items() if name not in os.environ}  # the user's choice stands
    os.environ.update(added)
    set_uri = not mlflow.is_tracking_uri_set() and not os.environ.get("MLFLOW_TRACKING_URI")
    if set_uri:
        mlflow.set_tracking_uri(uri)
    chatter = logging.getLogger("mlflow")
    level = chatter.level
    chatter.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        chatter.setLevel(level)
        if set_uri:
            mlflow.set_tracking_uri(None)  # back to unset (this also clears MLFLOW_TRACKING_URI it had set)
        for name in added:
            os.environ.pop(name, None)


def check_tracking(config: Config) -> None:
    """Before any work: with `tracking: mlflow`, mlflow must be importable and the tracking store reachable."""
    if config.tracking != "mlflow":
        return
    mlflow = _mlflow()
    uri = tracking_uri()
    try:
        with _using(uri, CHECK_HTTP):
            mlflow.MlflowClient().get_experiment_by_name(config.tracking_experiment)
    except Exception as error:  # MlflowException, OSError, a missing store driver (sqlalchemy), ...
        failure = write_failure(error)
        if failure is not None:  # read-only, disk full, ...: a place, not a setting, is at fault
            raise StorageError(
                f"tracking: mlflow: the tracking store {uri} cannot be written ({failure_reason(failure)}); "
                "make room there or point MLFLOW_TRACKING_URI at a writable store"
            ) from None
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"tracking: mlflow: cannot use the tracking store {uri}: {first_line}") from None


def flatten_config(config: BaseModel, prefix: str = "") -> dict[str, str]:
    """Every setting as `section.key` -> a string (lists, mappings and null as JSON), cut to MLflow's limit."""
    params: dict[str, str] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            params.update(flatten_config(value, f"{key}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        params[key] = text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."
    return params


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def epoch_metrics(history: list[dict[str, Any]]) -> list[tuple[str, float, int]]:
    """(name, value, step=epoch) for each finite number of each epoch record; `seconds` is `epoch_seconds`."""
    rows = []
    for record in history:
        epoch = int(record["epoch"])
        for key, raw in record.items():
            value = _number(raw)
            if key != "epoch" and value is not None:
                rows.append(("epoch_seconds" if key == "seconds" else key, value, epoch))
    return rows


def final_metrics(result: RunResultLike) -> dict[str, float]:
    """The final evaluation's numbers (`test_*`, `final_validation_*`), the epochs and the stage times."""
    metrics: dict[str, float] = {}
    for split, values in result.metrics.items():
        name = "final_validation" if split == "validation" else split
        for key, raw in values.items():
            value = _number(raw)
            if value is not None:
                metrics[f"{name}_{key}"] = value
    metrics["epochs_run"] = float(result.train.epochs_run)
    metrics["best_epoch"] = float(result.train.best_epoch)
    for stage, seconds in result.seconds.items():
        metrics[f"stage_seconds_{stage}"] = float(seconds)
    return metrics


def _artifact_files(run: RunDir) -> list[Path]:
    named = [run.manifest_path, run.config_path, run.metrics_path, run.train_log_path, run.model_card_path]
    return [p for p in named if p.is_file()]


def write_reports(config: Config, run: RunDir, folder: Path) -> list[Path]:
    """Write the run's HTML reports into `folder` (a temporary one: never the run directory); return them.

    `run.html`: the `han show` page (metrics, curves, confusion matrix, config), for every run.
    `report.html`: the `han report` attention page of the first `REPORT_DOCUMENTS` validation documents,
    misclassified first, for a network with attention (model.kind han, rnn with attention pooling) only.
    A report that cannot be made is left out with a warning: the run is logged without it.
    """
    from han.models.build import has_attention
    from han.reports.documents import document_report
    from han.reports.output import write_document_report
    from han.reports.run_page import write_run_page
    from han.serving.trained import load_trained_run

    written = []
    try:
        write_run_page([run.root], folder / "run.html")
        written.append(folder / "run.html")
    except HanError as error:
        log.warning("mlflow: the run page (han show) is not logged: %s", error)
    if not has_attention(config.model):
        log.info("mlflow: model.kind %s has no attention weights: no attention report logged", config.model.kind)
        return written
    try:
        options = DocumentReportConfig(sort="misclassified")
        trained = load_trained_run(run.root)
        report = document_report(trained, None, REPORT_SPLIT, options, first=REPORT_DOCUMENTS)
        write_document_report(report, folder / "report.html", "html")
        written.append(folder / "report.html")
    except HanError as error:
        log.warning("mlflow: the attention report (han report) is not logged: %s", error)
    return written


def _tags(config: Config, run: RunDir) -> dict[str, str]:
    tags = {"han.run_dir": str(run.root.resolve()), "han.model_kind": config.model.kind}
    versions = run.read_manifest().get("versions")
    if isinstance(versions, Mapping):
        tags.update({f"han.versions.{name}": str(value) for name, value in versions.items()})
    return tags


def _log_model(mlflow: Any, run: RunDir, config: Config) -> str:
    from han.serving import mlflow_model
    from han.util.distribution import requirement

    with tempfile.TemporaryDirectory(prefix="han-mlflow-") as folder, warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"mlflow\.")  # MLflow's advice and its pandas deprecations
        files = mlflow_model.copy_run_files(run, Path(folder) / "run")
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(Path(mlflow_model.__file__)),
            artifacts={mlflow_model.ARTIFACT_KEY: str(files)},
            signature=mlflow_model.model_signature(run.load_labels(), config.data.text_columns, config.multilabel),
            # MLflow checks the model loads and predicts it; kept as serving_input_example.json
            input_example=mlflow_model.input_example(config.data),
            pip_requirements=[requirement()],  # han-classifier==<version>
            tags={"han.model_kind": config.model.kind},
        )
    return str(info.model_uri)


def track_run(config: Config, run_dir: Path, result: RunResultLike) -> str | None:
    """Log a finished run to MLflow (see the module docstring); return the MLflow run id (None: tracking is off)."""
    if config.tracking != "mlflow":
        return None
    mlflow = _mlflow()
    from mlflow.entities import Metric, Param

    run = RunDir(Path(run_dir))
    uri = tracking_uri()
    try:
        with _using(uri, LOG_HTTP):
            client = mlflow.MlflowClient()
            experiment = client.get_experiment_by_name(config.tracking_experiment)
            experiment_id = (
                experiment.experiment_id if experiment else client.create_experiment(config.tracking_experiment)
            )
            nested = mlflow.active_run() is not None
            with mlflow.start_run(experiment_id=experiment_id, run_name=run.root.name, nested=nested) as active:
                run_id = active.info.run_id
                mlflow.set_tags(_tags(config, run))
                params = [Param(k, v) for k, v in flatten_config(config).items()]
                now = int(time.time() * 1000)
                metrics = [Metric(k, v, now, step) for k, v, step in epoch_metrics(result.train.history)]
                metrics += [Metric(k, v, now, 0) for k, v in final_metrics(result).items()]
                for start in range(0, max(len(params), len(metrics)), 100):  # MLflow's batch limits
                    client.log_batch(run_id, metrics=metrics[start : start + 100], params=params[start : start + 100])
                for path in _artifact_files(run):  # at their paths inside the run directory
                    parent = path.parent.relative_to(run.root).as_posix()
                    mlflow.log_artifact(str(path), artifact_path=None if parent == "." else parent)
                with tempfile.TemporaryDirectory(prefix="han-reports-") as folder:
                    for path in write_reports(config, run, Path(folder)):
                        mlflow.log_artifact(str(path), artifact_path=REPORTS)
                model_uri = _log_model(mlflow, run, config)
    except HanError:
        raise
    except Exception as error:
        failure = write_failure(error)
        if failure is not None:  # disk full, read-only, ...: exit 5 like any failed write
            raise StorageError(
                f"tracking: mlflow: logging the finished run {run.root} to {uri} failed: {failure.filename or 'a file'} "
                f"could not be written ({failure_reason(failure)}); the run directory itself is complete"
            ) from None
        raise TrackingError(
            f"tracking: mlflow: logging the finished run {run.root} to {uri} failed ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}); the run directory itself is complete"
        ) from error
    log.info(
        "mlflow: logged run %s to %s (experiment %r); its model: runs:/%s/%s (%s)",
        *(run_id, uri, config.tracking_experiment, run_id, MODEL_NAME, model_uri),
    )
    return str(run_id)
