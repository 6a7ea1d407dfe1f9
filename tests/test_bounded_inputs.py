"""Bounded inputs: every file a command names is a regular file of bounded size before han reads it, a search
space is checked against the config schema before any work, an unreachable MLflow server fails within seconds,
and `han show` draws a bounded page of a run with thousands of classes and epochs.

Where a regression would hang or exhaust memory (a named pipe, /dev/zero, MLflow's minutes of retries, a page
of a 3000-class run) the command runs as a watched child process (`run_han`), killed past its timeout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_hostile_inputs import make_fifo, run_han

from conftest import TINY_CONFIG, invoke, one_line_error
from han.config import load_config
from han.errors import ConfigError
from han.workflows.tune import DEFAULT_SPACE, check_space

DEV_ZERO = Path("/dev/zero")
needs_dev_zero = pytest.mark.skipif(not DEV_ZERO.exists(), reason="no /dev/zero on this platform")


def oversized(path: Path) -> Path:
    """A sparse file one byte over the size a config or search space file may have."""
    from han.config import MAX_CONFIG_BYTES

    path.write_bytes(b"")
    os.truncate(path, MAX_CONFIG_BYTES + 1)
    return path


# --- file options: not a regular file, or too large, is refused before it is opened -----------------------


@needs_dev_zero
def test_space_on_dev_zero_is_refused_before_it_is_read(tmp_path):
    child = run_han(["tune", str(TINY_CONFIG), "--space", str(DEV_ZERO), "--dir", str(tmp_path / "t")], timeout=60)
    one_line_error(child, 2, "--space /dev/zero: is a character device, not a regular file")
    assert not (tmp_path / "t").exists()


def test_space_on_a_named_pipe_is_refused_without_blocking(tmp_path):
    pipe = make_fifo(tmp_path / "space.yaml")
    child = run_han(["tune", str(TINY_CONFIG), "--space", str(pipe), "--dir", str(tmp_path / "t")], timeout=60)
    one_line_error(child, 2, f"--space {pipe}: is a named pipe, not a regular file")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: (tmp / "space").mkdir() or tmp / "space", "is a folder, not a search space file"),
        (lambda tmp: oversized(tmp / "space.yaml"), "1,048,577 bytes, more than a search space file may have"),
        (lambda tmp: tmp / "missing.yaml", "search space file not found"),
    ],
    ids=["folder", "oversized", "missing"],
)
def test_space_that_is_a_folder_too_large_or_missing_is_a_one_line_error(tmp_path, make, message):
    space = make(tmp_path)
    result = invoke("tune", TINY_CONFIG, "--space", space, "--dir", tmp_path / "t")
    one_line_error(result, 2, f"--space {space}: {message}")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: DEV_ZERO, "is a character device, not a regular file"),
        (lambda tmp: make_fifo(tmp / "config.yaml"), "is a named pipe, not a regular file"),
        (lambda tmp: (tmp / "config").mkdir() or tmp / "config", "is a folder, not a config file"),
        (lambda tmp: oversized(tmp / "config.yaml"), "1,048,577 bytes, more than a config file may have"),
    ],
    ids=["dev-zero", "fifo", "folder", "oversized"],
)
def test_config_file_that_is_not_a_bounded_regular_file_is_refused(tmp_path, make, message):
    if not DEV_ZERO.exists():
        pytest.skip("no /dev/zero on this platform")
    config = make(tmp_path)
    result = invoke("data", "inspect", config)
    one_line_error(result, 2, f"{config}: {message}")


@pytest.mark.parametrize(
    ("command", "make", "message"),
    [
        (["predict", "/nowhere/run"], lambda tmp: DEV_ZERO, "INPUT /dev/zero: is a character device"),
        (["predict", "/nowhere/run"], lambda tmp: make_fifo(tmp / "docs.csv"), "docs.csv: is a named pipe"),
        (["corpus-report", "/nowhere/run"], lambda tmp: (tmp / "d.csv").mkdir() or tmp / "d.csv", "is a folder"),
        (["report", "/nowhere/run"], lambda tmp: make_fifo(tmp / "docs.txt"), "docs.txt: is a named pipe"),
        (["corpus-report", "/nowhere/run"], lambda tmp: DEV_ZERO, "INPUT /dev/zero: is a character device"),
        (["evaluate", "/nowhere/run", "--data"], lambda tmp: make_fifo(tmp / "l.csv"), "l.csv: is a named pipe"),
    ],
    ids=["predict-dev-zero", "predict-fifo", "corpus-folder", "report-fifo", "corpus-report-dev-zero", "data-fifo"],
)
def test_documents_file_options_are_checked_first_naming_the_option(tmp_path, command, make, message):
    if not DEV_ZERO.exists():
        pytest.skip("no /dev/zero on this platform")
    path = make(tmp_path)
    output = ["-o", tmp_path / "out.html"] if "report" in command[0] else []  # the default would be ./report.html
    line = one_line_error(invoke(*command, path, *output), 3, message)
    assert f"{'--data' if command[-1] == '--data' else 'INPUT'} {path}: " in line


def test_a_vectors_file_that_is_a_named_pipe_is_named_before_any_work(tmp_path, corpus_csv):
    pipe = make_fifo(tmp_path / "vectors.vec")
    settings = [f"data.source={corpus_csv}", "embeddings.source=file", f"embeddings.path={pipe}"]
    result = invoke("preprocess", TINY_CONFIG, *settings, "--run-dir", tmp_path / "run")
    one_line_error(result, 3, f"embeddings.path {pipe}: is a named pipe, not a regular file")


# --- a search space is checked against the config schema before any work ---------------------------------


@pytest.fixture(scope="module")
def base_config():
    return load_config(TINY_CONFIG)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"train.max_epochs": {"low": 1, "high": 3.0}}, "train.max_epochs: an integer setting: give whole-number"),
        ({"model.word_hidden": {"low": 8.5, "high": 32}}, "model.word_hidden: an integer setting"),
        ({"task": ["multiclass", "multilabel"]}, "task: cannot vary between trials"),
        ({"data.text_column": ["text", "body"]}, "data.text_column: cannot vary between trials"),
        ({"preprocess.max_words": [10, 20]}, "preprocess.max_words: cannot vary between trials"),
        ({"embeddings.dim": [8, 16]}, "share one preprocessing"),
        ({"model.cell": ["gru", "transformer"]}, "model.cell"),
        ({"train.batch_size": [16, 0]}, "train.batch_size"),
    ],
    ids=["float-high", "float-low", "task", "data", "preprocess", "embeddings", "bad-choice", "out-of-range"],
)
def test_space_settings_are_checked_against_the_schema(base_config, space, message):
    with pytest.raises(ConfigError, match=message):
        check_space(space, base_config, "space")


def test_valid_spaces_are_accepted(base_config):
    space = {
        "train.max_epochs": {"low": 1, "high": 3},
        "train.lr": {"low": 1e-3, "high": 1e-1, "log": True},
        "train.wide_lr": {"low": 1, "high": 2},  # a float (or "auto") setting takes whole-number bounds too
        "train.batch_size": [8, 16],
        "model.cell": ["gru", "lstm"],
        "seed": [0, 1],
    }
    assert check_space(space, base_config, "space") == space
    assert check_space(dict(DEFAULT_SPACE), base_config, "space") == DEFAULT_SPACE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train.max_epochs: {low: 1, high: 3.0}\n", "train.max_epochs: an integer setting"),
        ("task: [multiclass, multilabel]\n", "task: cannot vary between trials"),
    ],
    ids=["float-bound", "task"],
)
def test_han_tune_refuses_a_bad_space_before_any_work(tmp_path, text, message):
    space = tmp_path / "space.yaml"
    space.write_text(text)
    result = invoke("tune", TINY_CONFIG, "--space", space, "--dir", tmp_path / "t")
    one_line_error(result, 2, f"--space {space}: {message}")
    assert not (tmp_path / "t").exists()


# --- an unreachable MLflow server fails within seconds ------------------------------------------------


@pytest.mark.slow  # a child process importing mlflow: about 5 s
def test_unreachable_mlflow_server_fails_within_seconds(corpus_csv, tmp_path):
    pytest.importorskip("mlflow")
    run_dir = tmp_path / "run"
    args = ["run", str(TINY_CONFIG), f"data.source={corpus_csv}", "data.split_column=split", "tracking=mlflow"]
    env: dict[str, str | None] = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}
    for name in (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    ):
        env[name] = None  # MLflow's own defaults, as a user who set nothing has them (None: removed)
    child = run_han([*args, "--run-dir", str(run_dir)], timeout=30, env=env)  # MLflow's own retries: 4 minutes
    one_line_error(child, 2, "cannot use the tracking store http://127.0.0.1:1")
    assert not run_dir.exists()


def test_han_bounds_mlflow_http_only_where_the_user_has_not(monkeypatch):
    pytest.importorskip("mlflow")
    from han.workflows.tracking import CHECK_HTTP, _using

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    with _using("http://127.0.0.1:1", CHECK_HTTP):
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"  # the user's choice stands
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == CHECK_HTTP["MLFLOW_HTTP_REQUEST_TIMEOUT"]
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ  # han's default is gone again


# --- han show draws a bounded page of a run with 3000 classes and 200,000 epochs -------------------------

CLASSES, EPOCHS = 3000, 200_000


@pytest.fixture(scope="module")
def huge_run(tmp_path_factory: pytest.TempPathFactory, tiny_overrides: list[str]) -> Path:
    """A preprocessed run whose labels, metrics.json and train log are those of 3000 classes and 200,000
    epochs, listed in its manifest like a real run's."""
    from han.store.rundir import RunDir

    run_dir = tmp_path_factory.mktemp("huge") / "run"
    invoke("preprocess", TINY_CONFIG, *tiny_overrides, "--run-dir", run_dir, check=True)
    run = RunDir(run_dir)
    labels = [f"class-{c}" for c in range(CLASSES)]
    run.save_labels(labels)
    with open(run.train_log_path, "w", encoding="utf-8") as log:
        for epoch in range(1, EPOCHS + 1):
            record = {"epoch": epoch, "train_loss": round(1 / epoch, 6), "validation_loss": round(2 / epoch, 6)}
            record |= {"validation_accuracy": 0.5, "validation_macro_f1": 0.4, "lr": 0.01, "docs_per_s": 900.0}
            log.write(json.dumps(record) + "\n")
    rows = [[0] * CLASSES for _ in range(CLASSES)]
    for c in range(CLASSES):
        rows[c][c], rows[c][(c + 1) % CLASSES] = c % 97 + 1, 1  # class c has c % 97 + 2 documents
    per_class = {
        name: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": c % 97 + 2} for c, name in enumerate(labels)
    }
    test = {"accuracy": 0.5, "macro_f1": 0.5, "loss": 1.0, "documents": sum(map(sum, rows))}
    test |= {"per_class": per_class, "confusion_matrix": {"labels": labels, "rows_true_columns_predicted": rows}}
    run.metrics_path.write_text(json.dumps({"test": test}), encoding="utf-8")
    run.record_artifacts(run.labels_path, run.train_log_path, run.metrics_path)
    return run_dir


@pytest.mark.slow
def test_show_draws_a_bounded_page_of_a_huge_run_and_says_what_it_left_out(huge_run, tmp_path):
    output = tmp_path / "run.html"
    child = run_han(["show", str(huge_run), "-o", str(output)], timeout=60, rss_limit_mib=2500)
    assert child.exit_code == 0, child.stderr
    html = output.read_text(encoding="utf-8")
    assert len(html.encode()) < 2_000_000, len(html.encode())
    assert f"the curves draw 400 of its {EPOCHS:,} epochs" in html
    assert html.count(f"classes of most test documents, of {CLASSES:,}") == 1
    assert html.count(f"classes of most support, of {CLASSES:,}") == 1
    assert html.count(f"classes of most documents, of {CLASSES:,}") == 1
    shown = 40
    assert html.count('<rect class="cell"') == shown * shown and html.count('<rect class="score"') == 3 * shown
    # the most frequent classes are the ones drawn: c % 97 == 96, the largest support (98 documents)
    assert "true class-96," in html and "true class-193," in html and "true class-0," not in html
    # a row's shade is its share of the whole row: class 96's diagonal, 97 of its 98 documents
    assert "true class-96, predicted class-96: 97 (99.0% of the row)" in html


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bound", "file", "what"),
    [("MAX_LOG_BYTES", "train_log.jsonl", "train log"), ("MAX_METRICS_BYTES", "metrics.json", "metrics file")],
)
def test_show_refuses_a_run_file_over_its_bound(huge_run, tmp_path, monkeypatch, bound, file, what):
    import han.reports.run_page as run_page

    monkeypatch.setattr(run_page, bound, 1 << 20)
    output = tmp_path / "run.html"
    one_line_error(invoke("show", huge_run, "-o", output), 4, f"{file}: ", f"more than a {what} may have (1,048,576)")
    assert not output.exists()
