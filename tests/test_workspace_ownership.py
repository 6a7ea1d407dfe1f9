"""Workspaces are han's own too: no output lands in a comparison or tuning folder, an output's name agrees
with what is written into it, and a run directory is never read or emptied through a symbolic link.

The workspaces are made by han itself (`claim_workspace`, the function `han compare` and `han tune` make
theirs with), or by a real comparison and tuning in the slow tests, which then resume.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import TINY_CONFIG, invoke, make_corpus, one_line_error, write_csv
from han.workflows.workspace import claim_workspace


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def documents(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "in.csv", [{"text": r["text"]} for r in make_corpus(6, seed=5)])


@pytest.fixture
def comparison(tmp_path: Path) -> Path:
    """A comparison folder as han makes it, with a kept result (what --resume reads again)."""
    folder = tmp_path / "cmp"
    claim_workspace(folder, "comparison", {"config": {"seed": 0}}, resume=False)
    (folder / "results").mkdir()
    (folder / "results" / "mean-seed0.json").write_text('{"model": "mean", "seed": 0}')
    (folder / "compare.json").write_text("{}")
    (folder / "compare.md").write_text("| model |\n")
    return folder


@pytest.fixture
def tuning(tmp_path: Path) -> Path:
    """A tuning folder as han makes it, with its Optuna study."""
    folder = tmp_path / "tune"
    claim_workspace(folder, "tuning", {"config": {"seed": 0}, "space": {}}, resume=False)
    (folder / "study.journal").write_text('{"op_code": 0}\n')
    return folder


# --- finding 1: an output inside a comparison folder ------------------------------------------------
@pytest.mark.parametrize("name", ["results/mean-seed0.json", "compare.json", "compare.md", "notes.html"])
def test_predict_output_inside_a_comparison_folder_is_refused(trained_run, documents, comparison, name):
    before = snapshot(comparison)
    one_line_error(invoke("predict", trained_run, documents, "--output", comparison / name), 4, "comparison folder")
    assert snapshot(comparison) == before


@pytest.mark.parametrize("name", ["results/mean-seed0.json", "compare.json", "compare.md"])
def test_compare_page_inside_its_own_folder_is_refused_before_any_work(comparison, tiny_overrides, name):
    before = snapshot(comparison)
    args = ["--models", "mean", "--seeds", "1", "--dir", comparison, "--resume", "-o", comparison / name]
    outcome = invoke("compare", TINY_CONFIG, *tiny_overrides, *args)
    one_line_error(outcome, 4, str(comparison / name), "comparison folder")
    assert snapshot(comparison) == before
    assert not (comparison / "data").exists()  # refused before preprocessing


def test_compare_page_inside_a_folder_it_has_yet_to_make_is_refused(tmp_path, tiny_overrides):
    folder = tmp_path / "new-cmp"
    page = folder / "results" / "mean-seed0.json"
    outcome = invoke(
        "compare", TINY_CONFIG, *tiny_overrides, "--models", "mean", "--seeds", "1", "--dir", folder, "-o", page
    )
    one_line_error(outcome, 4, "comparison folder")
    assert not folder.exists()


# --- finding 2: an output inside a tuning folder -------------------------------------------------
def test_show_output_over_the_optuna_study_is_refused(trained_run, tuning):
    before = snapshot(tuning)
    one_line_error(invoke("show", trained_run, "-o", tuning / "study.journal"), 4, "tuning folder")
    assert snapshot(tuning) == before


@pytest.mark.parametrize("command", ["report", "corpus-report"])
def test_report_output_inside_a_tuning_folder_is_refused(trained_run, tuning, command):
    before = snapshot(tuning)
    outcome = invoke(command, trained_run, "--split", "test", "-o", tuning / "trials" / "page.html")
    one_line_error(outcome, 4, "tuning folder")
    assert snapshot(tuning) == before


# --- an output's extension agrees with its format ------------------------------------------------
@pytest.mark.parametrize(
    ("args", "name", "fragment"),
    [
        (["predict", "RUN", "DOCS"], "out.json", "a .json name for jsonl or csv"),
        (["predict", "RUN", "DOCS"], "out.html", "a .html name"),
        (["report", "RUN", "DOCS"], "out.json", "a .json name for html or jsonl"),
        (["report", "RUN", "DOCS", "--format", "jsonl"], "out.html", "--format jsonl"),
        (["corpus-report", "RUN"], "out.jsonl", "a .jsonl name for html or json"),
        (["show", "RUN"], "page.json", "a .json name for html"),
        (["show", "RUN"], "page.md", "a .md name for html"),
    ],
)
def test_an_output_named_for_another_format_is_refused(trained_run, documents, tmp_path, args, name, fragment):
    out = tmp_path / name
    args = [trained_run if a == "RUN" else documents if a == "DOCS" else a for a in args]
    one_line_error(invoke(*args, "-o", out), 2, fragment)
    assert not out.exists()


def test_compare_page_named_for_another_format_is_refused(tmp_path, tiny_overrides):
    folder, page = tmp_path / "cmp", tmp_path / "table.json"
    outcome = invoke("compare", TINY_CONFIG, *tiny_overrides, "--models", "mean", "--dir", folder, "-o", page)
    one_line_error(outcome, 2, "a .json name for html")
    assert not folder.exists() and not page.exists()


def test_an_extension_that_names_no_format_takes_the_commands_own(trained_run, documents, tmp_path):
    upper = tmp_path / "out.JSONL"  # the case of an extension does not matter
    invoke("predict", trained_run, documents, "-o", upper, check=True)
    assert len([json.loads(line) for line in upper.read_text().splitlines()]) == 6
    odd = tmp_path / "page.weird"
    invoke("report", trained_run, documents, "-o", odd, check=True)
    assert odd.read_text().lstrip().lower().startswith("<!doctype html")


# --- finding 17: a han-made subfolder that is a symbolic link -----------------------------------------
def _link_away(run: Path, name: str, elsewhere: Path) -> Path:
    """Move RUN/name to `elsewhere` and leave a symbolic link to it in its place."""
    shutil.move(str(run / name), str(elsewhere))
    (run / name).symlink_to(elsewhere, target_is_directory=True)
    return elsewhere


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_run_whose_model_folder_is_a_link_is_not_loaded(run_copy, tmp_path, documents, command):
    _link_away(run_copy, "model", tmp_path / "weights-elsewhere")
    args = [command, run_copy] + ([documents, "-o", tmp_path / "p.jsonl"] if command == "predict" else [])
    one_line_error(invoke(*args), 4, str(run_copy / "model"), "symbolic link")


def test_overwrite_of_a_run_with_a_linked_model_folder_removes_nothing(run_copy, tmp_path, tiny_overrides):
    elsewhere = _link_away(run_copy, "model", tmp_path / "weights-elsewhere")
    before, weights = snapshot(run_copy), snapshot(elsewhere)
    outcome = invoke("run", TINY_CONFIG, *tiny_overrides, "--run-dir", run_copy, "--overwrite")
    one_line_error(outcome, 4, "symbolic link")
    assert snapshot(run_copy) == before and (run_copy / "metrics.json").is_file()
    assert (run_copy / "model").is_symlink() and snapshot(elsewhere) == weights


def test_overwrite_of_a_run_with_a_linked_data_folder_removes_nothing(run_copy, tmp_path, tiny_overrides):
    elsewhere = _link_away(run_copy, "data", tmp_path / "data-elsewhere")
    before, data = snapshot(run_copy), snapshot(elsewhere)
    outcome = invoke("preprocess", TINY_CONFIG, *tiny_overrides, "--run-dir", run_copy, "--overwrite")
    one_line_error(outcome, 4, "symbolic link")
    assert snapshot(run_copy) == before and snapshot(elsewhere) == data


def test_training_through_a_linked_checkpoints_folder_is_refused(run_copy, tmp_path, tiny_overrides):
    (tmp_path / "ckpt-elsewhere").mkdir()
    if (run_copy / "checkpoints").exists():
        shutil.rmtree(run_copy / "checkpoints")
    (run_copy / "checkpoints").symlink_to(tmp_path / "ckpt-elsewhere", target_is_directory=True)
    outcome = invoke("train", TINY_CONFIG, *tiny_overrides, "--run-dir", run_copy, "--resume")
    one_line_error(outcome, 4, str(run_copy / "checkpoints"), "symbolic link")
    assert list((tmp_path / "ckpt-elsewhere").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root removes files from a read-only folder")
def test_overwrite_checks_every_file_before_removing_any(run_copy, tiny_overrides):
    before = snapshot(run_copy)
    (run_copy / "model").chmod(0o555)
    try:
        outcome = invoke("train", TINY_CONFIG, *tiny_overrides, "--run-dir", run_copy, "--overwrite")
    finally:
        (run_copy / "model").chmod(0o755)
    one_line_error(outcome, 4, "read-only", "nothing was removed")
    assert snapshot(run_copy) == before


# --- the whole story, with a real comparison and a real tuning ------------------------------------------
@pytest.mark.slow
def test_a_comparison_stays_resumable_whatever_output_is_aimed_at_it(tmp_path, tiny_overrides, trained_run, documents):
    folder = tmp_path / "cmp"
    command = ["compare", TINY_CONFIG, *tiny_overrides, "--models", "mean,linear", "--seeds", "1", "--dir", folder]
    invoke(*command, check=True)
    kept = snapshot(folder / "results")
    for name in ("results/mean-seed0.json", "compare.json", "compare.md"):
        one_line_error(invoke(*command, "--resume", "-o", folder / name), 4, "comparison folder")
    one_line_error(invoke("predict", trained_run, documents, "-o", folder / "results" / "linear-seed0.json"), 4)
    assert snapshot(folder / "results") == kept
    invoke(*command, "--resume", check=True)  # the comparison is not stuck
    invoke(*command, "--resume", "-o", folder / "compare.html", check=True)  # its own page, named
    assert json.loads((folder / "compare.json").read_text())["best"] in ("mean", "linear")


@pytest.mark.slow
def test_a_tuning_stays_resumable_whatever_output_is_aimed_at_it(tmp_path, tiny_overrides, trained_run):
    pytest.importorskip("optuna")
    folder = tmp_path / "tune"
    command = ["tune", TINY_CONFIG, *tiny_overrides, "train.max_epochs=1", "--trials", "1", "--dir", folder]
    invoke(*command, check=True)
    journal = (folder / "study.journal").read_bytes()
    one_line_error(invoke("show", trained_run, "-o", folder / "study.journal"), 4, "tuning folder")
    assert (folder / "study.journal").read_bytes() == journal
    invoke(*command, "--resume", check=True)
