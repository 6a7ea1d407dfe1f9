"""Nothing lost: han deletes or replaces only what it made.

Every test goes through the `han` command (CliRunner, or a subprocess where a signal is involved)
and imports nothing but the CLI and the shared fixtures, so each can be run against an older han.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pipelines
from conftest import TINY_CONFIG, invoke, make_corpus, one_line_error, write_csv

ROOT = Path(pipelines.__file__).resolve().parents[1]  # subprocesses run the han under test


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def documents(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "in.csv", [{"text": r["text"]} for r in make_corpus(12, seed=21)])


# --- finding 1: --overwrite only ever removes han's own files ------------------------------------
def test_overwrite_refuses_a_folder_han_did_not_make(tmp_path, tiny_overrides):
    project = tmp_path / "p"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text('{"name": "app"}')
    (project / "thesis.tex").write_text("x")
    (project / "src" / "main.py").write_text("print(1)")
    before = snapshot(project)
    result = invoke("preprocess", TINY_CONFIG, *tiny_overrides, "--run-dir", project, "--overwrite")
    one_line_error(result, 4, "not a han run directory")
    assert snapshot(project) == before


def test_overwrite_keeps_a_data_source_kept_inside_the_run_directory(tmp_path, tiny_overrides, corpus_rows):
    run = tmp_path / "run"
    overrides = [o for o in tiny_overrides if not o.startswith("data.source=")]
    assert invoke("preprocess", TINY_CONFIG, *tiny_overrides, "--run-dir", run).exit_code == 0
    source = write_csv(run / "corpus.csv", corpus_rows)
    notes = run / "notes.txt"
    notes.write_text("mine")
    result = invoke("preprocess", TINY_CONFIG, *overrides, f"data.source={source}", "--run-dir", run, "--overwrite")
    assert result.exit_code == 0, result.output
    assert source.read_bytes() and notes.read_text() == "mine"
    assert invoke("preprocess", TINY_CONFIG, *overrides, f"data.source={source}", "--run-dir", run).exit_code == 0


def test_overwrite_with_bad_new_data_leaves_the_old_run_intact(tmp_path, run_copy, tiny_overrides):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\n")
    before = snapshot(run_copy)
    overrides = [o for o in tiny_overrides if not o.startswith("data.source=")]
    result = invoke("run", TINY_CONFIG, *overrides, f"data.source={bad}", "--run-dir", run_copy, "--overwrite")
    one_line_error(result, 3, "bad.csv")
    assert snapshot(run_copy) == before
    assert invoke("evaluate", run_copy).exit_code == 0


# --- finding 2: an output is never one of the inputs -------------------------------------------
@pytest.mark.parametrize("command", ["predict", "report", "corpus-report"])
def test_output_equal_to_the_input_is_refused(run_copy, documents, command):
    before = documents.read_bytes()
    result = invoke(command, run_copy, documents, "--output", documents)
    one_line_error(result, 2, "input")
    assert documents.read_bytes() == before


# --- finding 3: special files are written directly, never replaced --------------------------------
def test_a_device_output_is_written_directly_not_replaced(tmp_path, run_copy, documents):
    # A private null device, so that a regression replaces this node, not the machine's /dev/null.
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError) as error:
        pytest.skip(f"cannot create a device node here ({error})")
    for command in (
        ["report", run_copy, documents, "-o", device, "--format", "html"],
        ["predict", run_copy, documents, "-o", device],
    ):
        result = invoke(*command)
        assert result.exit_code == 0, result.output
        assert stat.S_ISCHR(os.stat(device).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "null", "run"]


def test_a_symlinked_output_is_written_through_and_stays_a_link(tmp_path, run_copy, documents):
    target = tmp_path / "real.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert invoke("predict", run_copy, documents, "-o", link).exit_code == 0
    assert link.is_symlink() and len(target.read_text().splitlines()) == 12


# --- finding 4 and 10: outputs inside a run directory, or naming a folder ---------------------------
@pytest.mark.parametrize("name", ["manifest.json", "notes.csv", "model/extra.jsonl"])
def test_output_inside_a_run_directory_is_refused(run_copy, documents, name):
    before = snapshot(run_copy)
    result = invoke("predict", run_copy, documents, "--output", run_copy / name)
    one_line_error(result, 4, "run directory")
    assert snapshot(run_copy) == before
    assert invoke("evaluate", run_copy).exit_code == 0


def test_output_naming_a_folder_is_refused_before_predicting(tmp_path, run_copy, documents):
    folder = tmp_path / "out"
    folder.mkdir()
    result = invoke("predict", run_copy, documents, "--output", folder)
    one_line_error(result, 2, "is a folder")


# --- finding 6: reports read text exactly like predict ------------------------------------------
def test_report_probabilities_equal_predict_for_cleaned_cut_and_rtl_text(tmp_path, run_copy):
    texts = [
        "The chef baked bread.\u200b Zero\u2060width and \x07control characters. The oven was hot.",
        "The team won the match. " * 3000,  # beyond max_chars of the tiny run? cut like predict either way
        "\u05d4\u05e7\u05d1\u05d5\u05e6\u05d4 \u05e0\u05d9\u05e6\u05d7\u05d4. The team scored a goal.",
        "\u0627\u0644\u0641\u0631\u064a\u0642 \u0641\u0627\u0632. Software runs on the server.",
    ]
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    predictions, report = tmp_path / "p.jsonl", tmp_path / "r.jsonl"
    assert invoke("predict", run_copy, source, "-o", predictions).exit_code == 0
    assert invoke("report", run_copy, source, "-o", report).exit_code == 0
    predicted = [json.loads(line) for line in predictions.read_text().splitlines()]
    reported = sorted((json.loads(line) for line in report.read_text().splitlines()), key=lambda r: r["row"])
    for p, r in zip(predicted, reported, strict=True):
        for name, value in r["probabilities"].items():
            assert abs(p[f"p_{name}"] - value) <= 1e-6


def test_report_on_a_20_mb_document_is_cut_not_a_traceback(tmp_path, run_copy):
    source = tmp_path / "huge.txt"
    source.write_text("The team won. " * 1_500_000 + "\n", encoding="utf-8")
    result = invoke("report", run_copy, source, "-o", tmp_path / "r.jsonl")
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 1


# --- finding 7: corpus-report checks the split against the manifest ------------------------------
def test_corpus_report_refuses_a_tampered_split(tmp_path, run_copy):
    arrow = next((run_copy / "data" / "test").glob("*.arrow"))
    data = bytearray(arrow.read_bytes())
    data[-100] ^= 0xFF
    arrow.write_bytes(bytes(data))
    result = invoke("corpus-report", run_copy, "--split", "test", "-o", tmp_path / "c.json")
    one_line_error(result, 4, "manifest.json")


# --- findings 10 and 12: merge-predictions checks its parts and keeps them on any problem ----------
def parts(tmp_path: Path, suffix: str, first: str, second: str) -> tuple[Path, list[Path]]:
    output = tmp_path / f"out{suffix}"
    paths = [tmp_path / f"out.shard-{i}-of-2{suffix}" for i in range(2)]
    paths[0].write_text(first)
    paths[1].write_text(second)
    return output, paths


@pytest.mark.parametrize(
    ("suffix", "first", "second"),
    [
        (".csv", "row,label,p_a\n1,a,0.9\n", "row,label,p_b\n2,b,0.8\n"),  # other header
        (".csv", "row,label,p_a\n1,a,0.9\n", "junk\n"),  # junk
        (".jsonl", '{"row": 1, "label": "a", "p_a": 0.9}\n', "{not json\n"),  # invalid JSON line
        (".jsonl", '{"row": 1, "label": "a", "p_a": 0.9}\n', '{"row": 2, "other": 1}\n'),  # other fields
    ],
    ids=["csv-header", "csv-junk", "jsonl-invalid", "jsonl-fields"],
)
def test_merge_refuses_parts_that_do_not_fit_and_keeps_them(tmp_path, suffix, first, second):
    output, paths = parts(tmp_path, suffix, first, second)
    result = invoke("merge-predictions", output, "--shards", "2")
    one_line_error(result, 3, "out.shard-")
    assert all(p.exists() for p in paths) and not output.exists()


# --- finding 14: a killed preprocess leaves nothing that blocks the next command --------------------
def run_han(*args: object, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines", *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the command ended (exit {process.returncode}) before it could be interrupted")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.slow
def test_run_resume_finishes_after_preprocess_was_killed(tmp_path, tiny_overrides):
    rows = make_corpus(8000, seed=8)
    source = write_csv(tmp_path / "big.csv", rows)
    overrides = [o for o in tiny_overrides if not o.startswith("data.source=")]
    overrides += [f"data.source={source}", "train.max_epochs=1", "preprocess.workers=1"]
    run = tmp_path / "run"
    process = run_han("preprocess", TINY_CONFIG, *overrides, "--run-dir", run)
    wait_for(lambda: run.is_dir() and any(p.name.startswith(".tokens") for p in run.iterdir()), process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert any(p.name.startswith(".tokens") for p in run.iterdir())  # what a kill leaves behind
    for flags in ([], ["--overwrite"]):
        result = invoke("preprocess", TINY_CONFIG, *overrides, "--run-dir", run, *flags)
        assert "not a han run directory" not in result.stderr, result.stderr
    result = invoke("run", TINY_CONFIG, *overrides, "--run-dir", run, "--resume")
    assert result.exit_code == 0, result.output
    assert not [p for p in run.rglob("*") if p.name.startswith(".")]


# --- finding 15: SIGTERM leaves no temporary; manifest keys never leave the run directory -----------
def test_sigterm_during_predict_leaves_no_partial_file(tmp_path, trained_run):
    source = tmp_path / "many.txt"
    source.write_text("The chef baked bread in the oven. The team won the match.\n" * 200_000)
    output = tmp_path / "out.csv"
    process = run_han("predict", trained_run, source, "--output", output, "--chunk-size", "256")
    wait_for(lambda: any(p.name.startswith(".out.csv") for p in tmp_path.iterdir()), process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.txt"]


def test_a_manifest_key_outside_the_run_directory_is_refused(tmp_path, run_copy):
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    manifest_path = run_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["artifacts"]["data/test/../../../outside.txt"] = {"bytes": 6, "sha256": "0" * 64}
    manifest_path.write_text(json.dumps(manifest))
    result = invoke("evaluate", run_copy)
    one_line_error(result, 4, "outside the run directory")
    assert outside.read_text() == "secret"
