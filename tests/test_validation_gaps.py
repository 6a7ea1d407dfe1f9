"""Gaps in validation and in the failed-write contract, each closed with one line and its exit code.

Floats beyond float32 are refused by the config (exit 2); a full disk or an unwritable place is exit 5 at
every step of preprocessing (the datasets cache and the spilled token arrays included) and when MLflow
logs a run; a run directory or workspace under a regular file is exit 4; `han compare` checks every
model's config before it makes anything; a multi-label label may not hold the separator that joins
labels in han's CSV output, and a 0/1 column holds 0/1; a divergence names the wide channel's rate.

A full disk is a small RLIMIT_FSIZE in a child process (SIGXFSZ ignored, so a write fails with EFBIG, which
han treats like ENOSPC).
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import ROOT, TINY_CONFIG, invoke, make_multilabel_corpus, one_line_error, write_csv

if TYPE_CHECKING:
    from click.testing import Result


@dataclass
class Child:
    """A `han` child process's outcome, with the fields `one_line_error` reads."""

    exit_code: int
    output: str
    stderr: str
    exception: BaseException | None = None


def run_child(argv: list[str], file_size_limit: int | None = None, env: dict[str, str] | None = None) -> Child:
    """`python ARGV` in the repository; with `file_size_limit`, no file it writes may grow past that many bytes."""

    def limit_file_size() -> None:
        if file_size_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    done = subprocess.run(
        [sys.executable, *argv],
        preexec_fn=limit_file_size,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    return Child(done.returncode, done.stdout + done.stderr, done.stderr)


def error_after_training(outcome: Child | Result, code: int, *fragments: str) -> str:
    """`one_line_error` for a command that trained first: training's live INFO lines (epochs, the wide channel)
    may precede its one error line, which must be the last line and hold every fragment."""
    assert outcome.exit_code == code, f"exit {outcome.exit_code}: {outcome.output}{outcome.exception!r}"
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), repr(outcome.exception)
    assert "Traceback" not in outcome.output + outcome.stderr, outcome.output
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:], outcome.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def han_temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if ".han-" in path.name]


# --- floats beyond float32's range are refused by the config --------------------------------------------
@pytest.mark.parametrize(
    "override",
    ["train.lr=1e39", "train.wide_lr=1e308", "train.weight_decay=1e39", "train.grad_clip=1e39", "model.linear_c=5e38"],
)
def test_a_float_beyond_float32_is_refused_naming_the_key(tiny_overrides, override):
    key = override.partition("=")[0]
    one_line_error(
        invoke("data", "inspect", TINY_CONFIG, *tiny_overrides, override),
        2,
        f"{key}: must be at most 3.402823e+38 in magnitude (float32's largest",
    )


def test_the_float32_bound_is_float32s_largest_and_is_itself_accepted(tiny_overrides):
    import numpy as np

    from han.config import FLOAT32_MAX, load_config

    assert float(np.finfo(np.float32).max) == FLOAT32_MAX
    config = load_config(TINY_CONFIG, [*tiny_overrides, f"train.lr={FLOAT32_MAX!r}", f"train.wide_lr={FLOAT32_MAX!r}"])
    assert config.train.lr == FLOAT32_MAX


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse rows", "dense"])
def test_lazy_adam_at_the_largest_valid_rate_diverges_instead_of_failing(sparse):
    import torch

    from han.training.optim import LazyAdam

    embedding = torch.nn.Embedding(4, 3, sparse=sparse)
    optimizer = LazyAdam(embedding.parameters(), lr=3.4e38)  # lr / (1 - beta1) at step 1: 10x float32's largest
    embedding(torch.tensor([1, 2])).sum().backward()
    optimizer.step()  # a finite rate never fails torch's float32 conversion
    assert embedding.weight[1:3].abs().min() > 1e37  # the weights blow up: training then reports divergence


# --- a divergence names the rates that apply ---------------------------------------------------------------
def test_a_divergence_with_a_learnt_wide_channel_names_train_wide_lr(tmp_path, tiny_overrides):
    run_dir = tmp_path / "run"
    learnt = ["model.wide=true", "model.wide_weights=learnt", "train.wide_lr=1e38"]
    config = [TINY_CONFIG, *tiny_overrides, *learnt, "--run-dir", run_dir]
    invoke("preprocess", *config, check=True)
    error_after_training(  # the wide channel's live INFO lines come first
        invoke("train", *config),
        2,
        "error: training diverged at epoch 1",
        "lower train.lr (now 0.01), train.wide_lr (now 1e+38) or train.grad_clip (now 5.0)",
    )


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (
            ["model.wide=true", "model.wide_weights=learnt"],
            "lower train.lr (now 0.01), train.wide_lr (now 0.05, auto: 1 / steps an epoch) or ",
        ),
        (["model.wide=true", "model.wide_weights=fitted"], "lower train.lr (now 0.01) or train.grad_clip"),
        (["model.wide=false", "train.grad_clip=null"], "lower train.lr (now 0.01) or set train.grad_clip (e.g. 5)"),
    ],
    ids=["learnt wide channel, auto rate", "fitted wide channel", "no wide channel"],
)
def test_the_divergence_message_names_wide_lr_only_where_it_applies(tiny_config, overrides, named):
    from types import SimpleNamespace

    from han.config import config_from_dict
    from han.errors import TrainingDiverged
    from han.training.train import TrainingSession

    config = config_from_dict(tiny_config.model_dump(mode="json"), "test", overrides)
    groups = [{"lr": 0.01, "initial_lr": 0.01}, {"lr": 0.0, "initial_lr": 0.05}]  # the wide group mid warm-up
    optimizer = SimpleNamespace(param_groups=groups if config.model.wide_weights == "learnt" else groups[:1])
    loop = SimpleNamespace(epoch=1, global_step=3)
    session = SimpleNamespace(config=config, loop=loop, nonfinite_in_a_row=0, optimizer=optimizer)
    with pytest.raises(TrainingDiverged) as caught:
        TrainingSession.check_divergence(session, math.nan)  # type: ignore[arg-type]
    assert named in str(caught.value)
    assert ("train.wide_lr" in str(caught.value)) == ("auto" in named)


# --- a full disk while preprocessing -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("place", ["full", "unwritable"])
def test_a_datasets_cache_that_cannot_be_written_is_a_storage_error(tmp_path, tiny_overrides, place):
    run_dir = tmp_path / "run"
    args = ["-m", "pipelines", "preprocess", str(TINY_CONFIG), *tiny_overrides, "--run-dir", str(run_dir)]
    if place == "full":  # an empty cache: the CSV must be read into it
        cache, limit, reason = tmp_path / "datasets-cache", 1000, "File too large"
    else:
        cache, limit, reason = _unmakeable_under_sys(), None, "Operation not permitted"
    outcome = run_child(args, file_size_limit=limit, env={"HF_DATASETS_CACHE": str(cache)})
    one_line_error(outcome, 5, f"could not be read into the datasets cache {cache} ({reason})")
    assert not run_dir.exists()  # the data is read before the run directory is made


@pytest.mark.slow
def test_a_full_disk_while_tokens_are_spilled_is_a_storage_error_and_leaves_nothing_complete(
    tmp_path, tiny_config, tiny_overrides
):
    from han.data.splits import load_data

    load_data(tiny_config.data, tiny_config.seed)  # the datasets cache holds the corpus: only han's files grow
    run_dir = tmp_path / "run"
    config = [str(TINY_CONFIG), *tiny_overrides, "--run-dir", str(run_dir)]
    outcome = run_child(["-m", "pipelines", "preprocess", *config], file_size_limit=1000)
    one_line_error(outcome, 5, f"{run_dir}/.tokens", "could not be written (File too large)")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "preprocess" not in manifest and "preprocess_key" not in manifest
    assert not (run_dir / "vocab.json").exists() and not (run_dir / "embeddings.safetensors").exists()
    assert han_temporaries(run_dir) == []
    invoke("preprocess", *config, check=True)  # once there is room, the same command finishes


# --- a run directory or workspace that cannot be made -----------------------------------------------------
def _command(name: str, target: Path, tiny_overrides: list[str]) -> list[object]:
    """`han NAME` of the tiny config writing into `target` (--run-dir, or --dir for compare and tune)."""
    base = [name, TINY_CONFIG, *tiny_overrides]
    if name == "compare":
        return [*base, "--models", "mean", "--seeds", "1", "--dir", target]
    if name == "tune":
        return [*base, "--trials", "1", "--dir", target]
    return [*base, "--run-dir", target]


COMMANDS = ["run", "preprocess", "compare", "tune"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_under_a_regular_file_is_a_run_dir_error_naming_the_file(tmp_path, tiny_overrides, command):
    regular = tmp_path / "afile"
    regular.write_text("mine\n")
    option = "--dir" if command in ("compare", "tune") else "--run-dir"
    one_line_error(
        invoke(*_command(command, regular / "x" / "y", tiny_overrides)),
        4,
        f"{regular / 'x' / 'y'}: cannot be created: {regular} is a file, not a folder; choose another {option}",
    )
    assert regular.read_text() == "mine\n"


def _unmakeable_under_sys() -> Path:
    """A folder that even root cannot make: /sys refuses new entries (skip where it does not)."""
    target = Path("/sys/han-validation-gaps")
    try:
        target.mkdir()
    except OSError:
        return target / "run"
    target.rmdir()
    pytest.skip("/sys accepts new folders here")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_that_cannot_be_made_is_a_storage_error(tiny_overrides, command):
    target = _unmakeable_under_sys()
    one_line_error(invoke(*_command(command, target, tiny_overrides)), 5, f"{target}: the folder could not be created")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_in_a_read_only_folder_is_a_storage_error(tmp_path, tiny_overrides, command):
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        outcome = invoke(*_command(command, read_only / "x", tiny_overrides))
    finally:
        read_only.chmod(0o755)
    one_line_error(outcome, 5, f"{read_only / 'x'}: the folder could not be created (Permission denied)")


# --- MLflow's store on a full or unwritable disk ------------------------------------------------------------
LOG_ON_A_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    import han.workflows.run as runner

    log_the_run = runner.track_run

    def disk_full_then_log(*args, **kwargs):  # the disk fills up between the run and its logging
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        return log_the_run(*args, **kwargs)

    runner.track_run = disk_full_then_log
    from pipelines.cli import main

    sys.argv = ["han", *sys.argv[1:]]
    main()
    """
)


@pytest.mark.slow
def test_a_full_disk_while_mlflow_logs_the_run_is_a_storage_error(tmp_path, tiny_overrides):
    pytest.importorskip("mlflow")
    run_dir, store = tmp_path / "run", tmp_path / "mlruns"
    args = ["run", str(TINY_CONFIG), *tiny_overrides, "model.kind=linear", "tracking=mlflow", "--run-dir", str(run_dir)]
    outcome = run_child(["-c", LOG_ON_A_FULL_DISK, *args], env={"MLFLOW_TRACKING_URI": store.as_uri()})
    error_after_training(
        outcome,
        5,
        f"tracking: mlflow: logging the finished run {run_dir} to {store.as_uri()} failed",
        "could not be written (File too large); the run directory itself is complete",
    )
    assert (run_dir / "metrics.json").is_file()


def test_an_unwritable_mlflow_store_is_a_storage_error_before_any_work(tmp_path, tiny_overrides, monkeypatch):
    pytest.importorskip("mlflow")
    store = _unmakeable_under_sys()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    run_dir = tmp_path / "run"
    args = ["run", TINY_CONFIG, *tiny_overrides, "model.kind=linear", "tracking=mlflow", "--run-dir", run_dir]
    one_line_error(invoke(*args), 5, f"tracking: mlflow: the tracking store {store.as_uri()} cannot be written")
    assert not run_dir.exists()


# --- han compare checks every model's config first ----------------------------------------------------------
def test_compare_refuses_a_model_config_before_it_makes_anything(tmp_path, tiny_overrides):
    folder = tmp_path / "D"
    args = ["compare", TINY_CONFIG, *tiny_overrides, "model.ensemble=3", "--models", "mean,linear", "--dir", folder]
    one_line_error(invoke(*args, "--seeds", "1"), 2, "compare --models linear: ", "model.ensemble", "(set 1)")
    assert not folder.exists()


# --- multi-label labels: no separator inside a label, 0/1 columns hold 0/1 ------------------------------------
def _multilabel_files(folder: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Layouts each holding one label with ';' in it: their overrides and the fragments the error names."""
    rows = make_multilabel_corpus(60, split=False)
    single = [{"text": row["text"], "topics": row["topics"].split(";")[0]} for row in rows]
    single[4]["topics"] = "sport;tech"  # several labels, but data.label_separator is not set
    write_csv(folder / "single.csv", single)
    with open(folder / "lists.jsonl", "w", encoding="utf-8") as handle:
        for i, row in enumerate(rows):
            labels = row["topics"].split(";") + (["a|b"] if i == 6 else [])
            handle.write(json.dumps({"text": row["text"], "topics": labels}) + "\n")
    flags = [{"text": row["text"], "sport": "1", "tech;food": "0"} for row in rows]
    write_csv(folder / "flags.csv", flags)
    topics = ["task=multilabel", "data.label_column=topics"]
    return {
        "text column": ([*topics, f"data.source={folder / 'single.csv'}"], ["single.csv", "'sport;tech' at row 5"]),
        "list column": (
            [*topics, f"data.source={folder / 'lists.jsonl'}", "data.label_separator='|'"],
            ["lists.jsonl", "label 'a|b' at row 7, column 'topics'", "'|' joins a document's labels"],
        ),
        "0/1 columns": (
            ["task=multilabel", f"data.source={folder / 'flags.csv'}", "data.label_columns=[sport, 'tech;food']"],
            ["flags.csv", "label column 'tech;food' holds ';' in its name"],
        ),
    }


@pytest.mark.parametrize("layout", ["text column", "list column", "0/1 columns"])
def test_a_label_holding_the_output_separator_is_refused(tmp_path, layout):
    overrides, fragments = _multilabel_files(tmp_path)[layout]
    line = one_line_error(invoke("data", "inspect", TINY_CONFIG, *overrides), 3, *fragments)
    assert "in han's CSV output; rename the label, or set data.label_separator" in line


def test_data_labels_holding_the_output_separator_are_refused(tmp_path):
    overrides, _ = _multilabel_files(tmp_path)["list column"]
    labels = "data.labels=[food, sport, tech, 'a|b']"
    one_line_error(invoke("data", "inspect", TINY_CONFIG, *overrides, labels), 2, "data.labels: 'a|b' holds '|'")


def _flag_rows(cell: str) -> list[dict[str, str]]:
    rows = make_multilabel_corpus(60, split=False)
    flags = [
        {"text": row["text"], "sport": "1" if i % 2 else "0", "tech": "0" if i % 2 else "1"}
        for i, row in enumerate(rows)
    ]
    flags[3]["sport"] = cell
    return flags


@pytest.mark.parametrize("cell", ["yes", "no", "Y", "2"])
def test_a_flag_cell_outside_the_documented_spellings_is_refused(tmp_path, cell):
    path = write_csv(tmp_path / "flags.csv", _flag_rows(cell))
    overrides = ["task=multilabel", f"data.source={path}", "data.label_columns=[sport, tech]"]
    one_line_error(
        invoke("data", "inspect", TINY_CONFIG, *overrides),
        3,
        f"label column 'sport' holds '{cell}' at row 4",
        "1, 1.0 or true, 0, 0.0 or false (any case), and an empty cell reads as 0",
    )


@pytest.mark.parametrize(("cell", "has_label"), [("TRUE", True), ("1.0", True), ("False", False), ("", False)])
def test_the_documented_flag_spellings_are_read(tmp_path, cell, has_label):
    from han.config import load_config
    from han.data.splits import load_data

    path = write_csv(tmp_path / "flags.csv", _flag_rows(cell))
    overrides = ["task=multilabel", f"data.source={path}", "data.label_columns=[sport, tech]"]
    config = load_config(TINY_CONFIG, [*overrides, "data.allow_empty_labels=true"])
    data = load_data(config.data, 0, multilabel=True)
    every = {
        row: labels for split in data.splits.values() for row, labels in zip(split.rows, split.labels, strict=True)
    }
    labels = every[4]
    assert ("sport" in labels) == has_label
