"""`han compare`: several model kinds trained and tested on the same splits with the same seeds.

One preprocessing (DIR/data) is shared by every model: each model and seed trains in its own run
directory (DIR/runs/<kind>-seed<seed>), a copy of the preprocessed one, through the same train stage
as `han train`, and is scored on the test split through the same loop as `han evaluate`. A finished
model's figures and test predictions are kept in DIR/results/<kind>-seed<seed>.json, so an
interrupted comparison resumes where it stopped (a model cut off mid-training continues from its
checkpoint) and ends with the same table.

The table: test accuracy and macro-F1 (mean and sample std over seeds), training time, inference
docs/s (the encoded test split through the model, tokenisation excluded), parameters and peak
resident memory of training and testing (each model and seed runs in a fresh process, so its time and
memory are its own); and the best model (by mean test accuracy) against every
other with a paired bootstrap over test documents (han/evaluation/significance.py).

A multi-label config (task: multilabel) is compared the same way, each run tested at its own decision
thresholds (chosen on validation at the end of its training, as `han evaluate` uses them): the table
shows test micro-F1, macro-F1 and exact match (the whole label set right), the best model is the one
with the highest mean test micro-F1, and the paired bootstrap compares exact match per document
(micro-F1 is a ratio over all label decisions, not a mean over documents; exact match is the
per-document 0/1 figure the bootstrap resamples). Each result keeps its predicted and true label sets
as lists of label indices.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import statistics
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from han import errors
from han.config import Config, config_from_dict
from han.errors import ConfigError, HanError, RunDirError, TrainingStopped
from han.evaluation.scoring import predict_probabilities
from han.evaluation.significance import SIGNIFICANCE_LEVEL, paired_bootstrap
from han.models.build import KINDS, describe
from han.progress import Progress
from han.reports.comparison import comparison_html, comparison_markdown
from han.serving.inference import merge_metrics, run_metrics
from han.serving.trained import load_trained_run
from han.store.outputs import check_output, output_format, resolved, write_output_text
from han.store.rundir import RunDir
from han.training.train import train
from han.util.atomic import create_folder, read_json, write_json_atomic, write_text_atomic
from han.util.lock import folder_lock
from han.util.memory import process_peak_rss_bytes
from han.util.signals import die_with_parent
from han.workflows.workspace import linked_run_copy, open_workspace

log = logging.getLogger(__name__)

RESAMPLES = 10_000
COSTS = ("train_seconds", "inference_docs_per_s", "peak_memory_bytes")
SUMMARISED = ("test_accuracy", "test_macro_f1", *COSTS)
HEADLINE: tuple[str, ...] = ("accuracy", "macro_f1")  # the test and validation figures of a result (multiclass)
MULTILABEL_HEADLINE: tuple[str, ...] = ("micro_f1", "macro_f1", "exact_match")  # multilabel: accuracy is exact match
MULTILABEL_SUMMARISED = tuple(f"test_{name}" for name in MULTILABEL_HEADLINE) + COSTS


@dataclass(frozen=True)
class ComparePlan:
    """What to compare: the base config, the kinds, the seeds, where."""

    config: Config
    config_source: str
    models: list[str]
    seeds: list[int]
    directory: Path
    page: Path | None = None  # the HTML page (default DIR/compare.html); written like any user output


def parse_models(text: str) -> list[str]:
    """`han,cnn,linear` as a list of known kinds, each once, in order."""
    models = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in models if name not in KINDS]
    if not models or unknown:
        raise ConfigError(
            f"--models {text!r}: {'unknown kind(s) ' + ', '.join(map(repr, unknown)) if unknown else 'empty'}; "
            f"choose from {','.join(KINDS)}"
        )
    if len(set(models)) != len(models):
        raise ConfigError(f"--models {text!r}: a kind is named twice")
    return models


def model_config(config: Config, kind: str, seed: int) -> Config:
    """The base config with `model.kind` and `seed` replaced, validated again."""
    source = f"compare --models {kind}"
    return config_from_dict(config.model_dump(mode="json"), source, [f"model.kind={kind}", f"seed={seed}"])


def check_model_configs(plan: ComparePlan) -> None:
    """Every model's config valid (model.ensemble 3 is not for kind linear, ...), before anything is made or
    preprocessed: a `ConfigError` naming the kind."""
    for kind in plan.models:
        for seed in plan.seeds:
            model_config(plan.config, kind, seed)


# --- one model in its own process ------------------------------------------------------------------
def _child(config_data: dict[str, Any], run_dir: str, connection: Connection, parent_pid: int) -> None:
    """A spawned process: train and test one model; send back its figures or its error (as plain data).

    It holds its run directory's lock while it works, and stops (SIGTERM: a checkpoint, then the end) when
    the comparison's process dies, so no trainer goes on in a folder nobody holds.
    """
    die_with_parent(parent_pid)
    message: tuple[Any, ...]
    try:
        config = config_from_dict(config_data, "compare")
        with folder_lock(Path(run_dir), "han compare"):
            message = ("ok", _train_and_test(config, Path(run_dir), Progress()))
    except HanError as error:
        message = ("error", type(error).__name__, str(error), error.exit_code)
    except BaseException as error:
        message = ("error", type(error).__name__, f"{type(error).__name__}: {error}", 1)
    try:
        connection.send(message)
    except OSError:  # the parent is gone: nobody to tell
        pass
    finally:
        connection.close()


def _raise_from_child(message: tuple[Any, ...] | None, run_dir: Path) -> None:
    """Re-raise a child's error as the same han error (a crash without a message as a `HanError`)."""
    if message is None:
        raise HanError(f"{run_dir}: the process training this model ended without a result; rerun with --resume")
    _, name, text, code = message
    if name == "TrainingStopped":
        raise TrainingStopped(text, code - 128)
    error_type = getattr(errors, name, None)
    if isinstance(error_type, type) and issubclass(error_type, HanError):
        raise error_type(text)
    raise HanError(f"{run_dir}: {text}")


def _in_own_process(config: Config, run_dir: Path) -> dict[str, Any]:
    """`_train_and_test` in a fresh (spawned) process, so its time and peak memory are its own.

    SIGTERM to this process is passed on: the child checkpoints and stops, and its `TrainingStopped`
    is raised here. Ctrl-C reaches the child from the terminal itself; it is passed on only if the
    child is still running a minute later.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(config.model_dump(mode="json"), str(run_dir), sender, os.getpid()))
    process.start()
    sender.close()
    message: tuple[Any, ...] | None = None
    try:
        message = receiver.recv()
    except EOFError:
        pass
    except BaseException as interruption:
        if isinstance(interruption, KeyboardInterrupt):
            if not receiver.poll(60) and process.is_alive():
                os.kill(process.pid or 0, signal.SIGINT)
        elif process.is_alive():
            os.kill(process.pid or 0, signal.SIGTERM)
        try:
            message = receiver.recv()
        except (EOFError, OSError):
            message = None
        process.join()
        if message is not None and message[0] == "error" and message[1] == "TrainingStopped":
            _raise_from_child(message, run_dir)
        raise
    finally:
        receiver.close()
    process.join()
    if message is None or message[0] != "ok":
        _raise_from_child(message, run_dir)
    assert message is not None
    figures: dict[str, Any] = message[1]
    return figures


# --- one model, one seed -------------------------------------------------------------------------
def _train_and_test(config: Config, run_dir: Path, progress: Progress) -> dict[str, Any]:
    """Train (or resume) one model in `run_dir`, then score its test split; the figures of one result row.

    The metrics are the run's own (`han.serving.inference.run_metrics`: a multi-label run at its thresholds).
    `test_predicted` and `test_labels` hold each test document's class index, or (multi-label) its sorted
    list of label indices.
    """
    result = train(config, run_dir, progress, resume=True)
    trained = load_trained_run(run_dir)
    run = trained.run
    validation, test = run.load_split("validation"), run.load_split("test")
    batch, precision = config.train.eval_batch_size, config.precision
    validation_metrics = run_metrics(
        trained, validation.labels, predict_probabilities(trained.model, validation, batch, precision)
    )
    start = time.perf_counter()
    probabilities = predict_probabilities(trained.model, test, batch, precision)
    seconds = time.perf_counter() - start
    test_metrics = run_metrics(trained, test.labels, probabilities)
    merge_metrics(run, {"validation": validation_metrics, "test": test_metrics})  # as `han run` leaves them
    if trained.multilabel:
        headline = MULTILABEL_HEADLINE
        predicted = [np.flatnonzero(row).tolist() for row in trained.predicted_sets(probabilities)]
        labels = [np.flatnonzero(row).tolist() for row in test.labels]
    else:
        headline = HEADLINE
        predicted, labels = probabilities.argmax(axis=1).tolist(), test.labels.tolist()
    return {
        **{f"test_{name}": test_metrics[name] for name in headline},
        **{f"validation_{name}": validation_metrics[name] for name in headline},
        "train_seconds": result.seconds,
        "inference_docs_per_s": round(len(test) / max(seconds, 1e-9), 1),
        "parameters": int(sum(p.numel() for p in trained.model.parameters())),
        "peak_memory_bytes": process_peak_rss_bytes(),  # not lowered by train()'s peak reset
        "epochs": result.epochs_run,
        "test_predicted": predicted,
        "test_labels": labels,
    }


def _correct(run: dict[str, Any], multilabel: bool) -> np.ndarray:
    """Whether each test document was classified correctly: the class, or (multi-label) the whole label set."""
    if multilabel:
        return np.array([p == t for p, t in zip(run["test_predicted"], run["test_labels"], strict=True)])
    return np.equal(run["test_predicted"], run["test_labels"])


# --- the whole comparison ------------------------------------------------------------------------
def check_page(plan: ComparePlan) -> None:
    """Refuse a page (--output) that would land on a file of the comparison or of another han folder, or whose
    extension names another format than HTML; the default page, DIR/compare.html, is the comparison's own."""
    page = plan.page
    if page is None or resolved(page) == resolved(plan.directory / "compare.html"):
        return
    check_output(page, [Path(plan.config_source)], option="--output")
    if resolved(page).is_relative_to(resolved(plan.directory)):  # the comparison may not exist yet
        raise RunDirError(
            f"{page}: is inside the comparison folder {plan.directory}, which holds only what han writes there; "
            "write --output elsewhere or leave it out (DIR/compare.html)"
        )
    output_format(page, ("html",), option="--output")


def compare(plan: ComparePlan, progress: Progress | None = None, *, resume: bool = False) -> dict[str, Any]:
    """Preprocess once, train and test every model with every seed (finished ones kept), and summarise.

    Writes DIR/compare.json (the table's data), DIR/compare.md and the HTML page, and returns the data; the figures of each model and seed are
    in DIR/results/. SIGINT/SIGTERM stop the model in training at a checkpoint (`TrainingStopped`);
    the same command with `resume` continues. Every model's config and the page are checked first
    (`check_model_configs`, `check_page`); DIR's lock is held throughout (a second process on DIR is
    refused), each model's process holds its run directory's.
    """
    check_model_configs(plan)
    check_page(plan)
    with folder_lock(plan.directory, "han compare"):
        return _compare(plan, progress, resume)


def _compare(plan: ComparePlan, progress: Progress | None, resume: bool) -> dict[str, Any]:
    progress = progress or Progress()
    request = {"config": plan.config.model_dump(mode="json")}
    data = open_workspace(plan.directory, "comparison", request, resume, plan.config, progress)
    results_dir = plan.directory / "results"
    create_folder(results_dir, "--dir")
    total, done = len(plan.models) * len(plan.seeds), 0
    for kind in plan.models:
        for seed in plan.seeds:
            done += 1
            name = f"{kind}-seed{seed}"
            result_path = results_dir / f"{name}.json"
            if result_path.is_file():
                log.info("compare %d/%d: %s finished earlier; kept", done, total, name)
                continue
            log.info("compare %d/%d: %s", done, total, name)
            run_dir = plan.directory / "runs" / name
            create_folder(run_dir.parent, "--dir")
            linked_run_copy(data, run_dir)
            figures = _in_own_process(model_config(plan.config, kind, seed), run_dir)
            write_json_atomic(result_path, {"model": kind, "seed": seed, **figures})
    summary = summarise(plan, results_dir)
    write_json_atomic(plan.directory / "compare.json", summary)
    write_text_atomic(plan.directory / "compare.md", comparison_markdown(summary))
    write_output_text(plan.page or plan.directory / "compare.html", comparison_html(summary))
    return summary


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarise(plan: ComparePlan, results_dir: Path) -> dict[str, Any]:
    """The comparison table's data from the finished results (the schema han/reports/comparison.py renders)."""
    multilabel = plan.config.multilabel
    summarised, ranking = (MULTILABEL_SUMMARISED, "test_micro_f1") if multilabel else (SUMMARISED, "test_accuracy")
    rows: list[dict[str, Any]] = []
    correct: dict[str, np.ndarray] = {}
    documents = RunDir(plan.directory / "data").read_manifest()["preprocess"]["documents"]  # recorded by preprocess
    split_sizes = {name: int(documents[name]) for name in ("train", "validation", "test")}
    for kind in plan.models:
        runs = []
        for seed in plan.seeds:
            path = results_dir / f"{kind}-seed{seed}.json"
            if path.is_file():
                runs.append(read_json(path))
        summary: dict[str, Any] | None = None
        if runs:
            summary = {
                key: _mean_std([float(r[key]) for r in runs]) if all(r.get(key) is not None for r in runs) else None
                for key in summarised
            }
            summary["parameters"] = runs[0]["parameters"]
        complete = len(runs) == len(plan.seeds)
        if complete:
            correct[kind] = np.array([_correct(r, multilabel) for r in runs])
        shown = [{k: v for k, v in r.items() if k not in ("test_predicted", "test_labels", "model")} for r in runs]
        description = describe(model_config(plan.config, kind, plan.seeds[0]).model)
        rows.append(
            {"model": kind, "description": description, "complete": complete, "runs": shown, "summary": summary}
        )
    ranked = [row for row in rows if row["complete"]]
    best: str | None = max(ranked, key=lambda row: row["summary"][ranking]["mean"])["model"] if ranked else None
    significance = []
    if best is not None:
        for kind in correct:
            if kind == best:
                continue
            difference, p_value = paired_bootstrap(correct[kind], correct[best], RESAMPLES, seed=0)
            significance.append(
                {
                    "model": kind,
                    "against": best,
                    "difference": difference,
                    "p_value": p_value,
                    "significant": bool(p_value < SIGNIFICANCE_LEVEL),
                }
            )
    if multilabel:  # best by micro-F1; the bootstrap compares exact match, a 0/1 figure per document
        return {
            "title": Path(plan.config_source).stem,
            "config": plan.config_source,
            "task": "multilabel",
            "seeds": plan.seeds,
            "split_sizes": split_sizes,
            "metric": "micro_f1",
            "significance_metric": "exact_match",
            "best": best,
            "rows": rows,
            "significance": significance,
            "significance_test": (
                f"paired bootstrap of exact match (the whole label set right) over test documents "
                f"({RESAMPLES:,} resamples), seeds paired"
            ),
        }
    return {
        "title": Path(plan.config_source).stem,
        "config": plan.config_source,
        "seeds": plan.seeds,
        "split_sizes": split_sizes,
        "metric": "accuracy",
        "best": best,
        "rows": rows,
        "significance": significance,
        "significance_test": f"paired bootstrap over test documents ({RESAMPLES:,} resamples), seeds paired",
    }
