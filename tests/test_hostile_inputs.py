"""Hostile inputs: one reader per format, strict, and bounds.

Each case goes through the `han` command (in-process, or as a child process where a regression would
hang or eat memory: a named pipe, /dev/zero, an endless line, an unreachable hub) and must give one
stderr line naming the file and the line, row or field, with its exit code and no traceback.
Children run the tree under test: `ROOT` is where the imported `han` lives, not this file's tree.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest

import han
from conftest import TINY_CONFIG, invoke, make_corpus, one_line_error, write_csv
from han.config import DataConfig
from han.data.splits import load_data

ROOT = Path(han.__file__).resolve().parents[1]
GOOD = make_corpus(30, seed=7)


# --- a watched child process: a hang or runaway memory fails the test instead of the machine ----------


@dataclass
class Child:
    """A finished child process, with the fields of click's Result that `one_line_error` reads."""

    exit_code: int
    stdout: str
    stderr: str
    peak_mib: float
    seconds: float
    exception: None = None  # a crash in a child shows as its traceback on stderr

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), "VmRSS: 0 kB")
    return int(line.split()[1]) / 1024


def run_han(
    args: list[str],
    stdin: int | None = None,
    feed: Callable[[object], None] | None = None,
    timeout: float = 60,
    rss_limit_mib: float = 1500,
    env: dict[str, str | None] | None = None,
) -> Child:
    """`python -m pipelines ARGS` in the tree under test, killed (and the test failed) past `timeout` or `rss_limit_mib`.

    `env` adds to the environment; a None value removes that variable.
    """
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to watch the child's memory")
    # on the CPU: a CUDA context alone would cost more memory than the bounds measured here
    child_env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-m", "pipelines", *args],
            cwd=ROOT,
            stdin=subprocess.PIPE if feed is not None else (stdin if stdin is not None else subprocess.DEVNULL),
            stdout=out,
            stderr=err,
            env={key: value for key, value in child_env.items() if value is not None},
        )
        if feed is not None:
            threading.Thread(target=feed, args=(child.stdin,), daemon=True).start()
        peak, failure = 0.0, None
        while child.poll() is None:
            peak = max(peak, rss_mib(child.pid))
            if peak > rss_limit_mib:
                failure = f"used {peak:.0f} MiB of memory (limit {rss_limit_mib} MiB)"
            elif time.monotonic() - start > timeout:
                failure = f"did not finish within {timeout} s (a hang)"
            if failure:
                child.kill()
                child.wait()
                break
            time.sleep(0.05)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if failure:
        pytest.fail(f"han {' '.join(args[:1])} {failure}; stderr: {stderr[-2000:]}")
    return Child(child.returncode, stdout, stderr, peak, seconds)


def make_fifo(path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    os.mkfifo(path)
    return path


# --- 5: a stray or unclosed quote, a ragged row: refused by the predict/report reader as by training -----

QUOTE_CASES = [
    # (file name, content, fragments of the message)
    (
        "unclosed.csv",
        'text,id\nfirst document.,1\n"second document,2\nthird document.,3\nfourth document.,4\n',
        ["unclosed.csv: line 3: a quoted field that starts there is never closed"],
    ),
    (
        "one_column.csv",
        'text\nfirst document.\n"second document\nthird document.\nfourth document.\n',
        ["one_column.csv: line 3: a quoted field that starts there is never closed"],
    ),
    (
        "stray.tsv",
        'text\tid\nfirst document.\t1\n"second document\t2\nthird document.\t3\n"fourth" document.\t4\n',
        ["stray.tsv: line 5 (in the record that starts at line 3): malformed CSV"],
    ),
    ("ragged.csv", "text,id\nfirst.,1\nsecond, with a comma.,2\nthird.,3\n", ["ragged.csv: line 3: expected 2 fields"]),
]


@pytest.mark.parametrize("command", ["predict", "report"])
@pytest.mark.parametrize(("name", "content", "fragments"), QUOTE_CASES, ids=[c[0] for c in QUOTE_CASES])
def test_5_a_stray_or_unclosed_quote_is_refused_naming_the_line(
    trained_run, tmp_path, command, name, content, fragments
):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    args = [command, str(trained_run), str(path)]
    if command == "report":
        args += ["--output", str(tmp_path / "report.html")]
    one_line_error(invoke(*args), 3, *fragments)
    assert not (tmp_path / "report.html").exists()


# --- 8: text must be text: numbers, booleans, lists, objects, bytes are refused, not stringified --------


def parquet(rows: list[dict]) -> Callable[[Path], None]:
    return lambda path: datasets.Dataset.from_list(rows).to_parquet(str(path))


def jsonl(rows: list[dict]) -> Callable[[Path], None]:
    return lambda path: path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def text(content: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(content, encoding="utf-8")


PREDICT_TYPE_CASES = [
    ("zero.jsonl", jsonl([{"text": "fine."}, {"text": 0}]), ["zero.jsonl: line 2: field 'text' is a number (0)"]),
    ("false.jsonl", jsonl([{"text": "fine."}, {"text": False}]), ["false.jsonl: line 2: field 'text' is a boolean"]),
    ("object.jsonl", jsonl([{"text": {"body": "x"}}]), ["object.jsonl: line 1: field 'text' is an object"]),
    (
        "list.jsonl",
        jsonl([{"text": "a."}, {"text": None}, {"text": ["x"]}]),
        ["list.jsonl: line 3: field 'text' is a list"],
    ),
    (
        "numbers.parquet",
        parquet([{"text": None}, {"text": 5}]),
        ["numbers.parquet: row 2: column 'text' is a number (5)"],
    ),
    ("bytes.parquet", parquet([{"text": b"raw"}]), ["bytes.parquet: row 1: column 'text' is bytes"]),
    ("twice.csv", text("text,id,text\nfirst.,1,second.\n"), ["twice.csv: the header row names a column twice"]),
]


@pytest.mark.parametrize(("name", "write", "fragments"), PREDICT_TYPE_CASES, ids=[c[0] for c in PREDICT_TYPE_CASES])
def test_8_a_text_value_that_is_not_a_string_is_refused_by_predict(trained_run, tmp_path, name, write, fragments):
    write(tmp_path / name)
    one_line_error(invoke("predict", trained_run, tmp_path / name), 3, *fragments)


def training_rows(value_at_7: object) -> list[dict]:
    rows: list[dict] = [{"text": r["text"], "label": r["label"]} for r in GOOD]
    rows[6]["text"] = value_at_7
    return rows


TRAINING_TYPE_CASES = [
    ("mixed.jsonl", jsonl(training_rows(7)), ["mixed.jsonl [train]: column 'text' holds a number (7) at row 7"]),
    ("list.jsonl", jsonl(training_rows(["a", "b"])), ["list.jsonl [train]: column 'text' holds a list at row 7"]),
    (
        "numbers.parquet",
        parquet([{"text": i, "label": "ab"[i % 2]} for i in range(30)]),
        ["numbers.parquet [train]: column 'text' holds a number (0) at row 1"],
    ),
]


@pytest.mark.parametrize(("name", "write", "fragments"), TRAINING_TYPE_CASES, ids=[c[0] for c in TRAINING_TYPE_CASES])
def test_8_a_text_column_that_is_not_text_is_refused_by_training(tmp_path, name, write, fragments):
    write(tmp_path / name)
    result = invoke("preprocess", TINY_CONFIG, f"data.source={tmp_path / name}", "--run-dir", tmp_path / "run")
    one_line_error(result, 3, *fragments)


# --- 9: named pipes and devices are refused before they are opened; stdin lines are bounded -------------

PIPE_MESSAGE = "is a named pipe, not a regular file"


def pipe_predict(tmp: Path, run: Path) -> tuple[list[str], str]:
    return ["predict", str(run), str(make_fifo(tmp / "docs.csv"))], "docs.csv: "


def pipe_report(tmp: Path, run: Path) -> tuple[list[str], str]:
    return ["report", str(run), str(make_fifo(tmp / "docs.txt")), "-o", str(tmp / "r.html")], "docs.txt: "


def pipe_source(tmp: Path, run: Path) -> tuple[list[str], str]:
    return ["preprocess", str(TINY_CONFIG), f"data.source={make_fifo(tmp / 'data.csv')}"], "data.csv: "


def pipe_in_glob(tmp: Path, run: Path) -> tuple[list[str], str]:
    write_csv(tmp / "a.csv", GOOD)
    make_fifo(tmp / "b.csv")
    return ["preprocess", str(TINY_CONFIG), f"data.source={tmp}/*.csv"], "b.csv: "


def pipe_in_list(tmp: Path, run: Path) -> tuple[list[str], str]:
    good = write_csv(tmp / "a.csv", GOOD)
    return ["preprocess", str(TINY_CONFIG), f"data.source=[{good},{make_fifo(tmp / 'b.csv')}]"], "b.csv: "


def pipe_in_class_folder(tmp: Path, run: Path) -> tuple[list[str], str]:
    for label in ("pos", "neg"):
        (tmp / "docs" / label).mkdir(parents=True)
        for i in range(12):
            (tmp / "docs" / label / f"{i}.txt").write_text(f"A {label} document, number {i}. It has words.")
    make_fifo(tmp / "docs" / "neg" / "late.txt")
    return ["preprocess", str(TINY_CONFIG), f"data.source={tmp / 'docs'}"], "late.txt: "


PIPE_CASES = [pipe_predict, pipe_report, pipe_source, pipe_in_glob, pipe_in_list, pipe_in_class_folder]


@pytest.mark.parametrize("setup", PIPE_CASES, ids=[c.__name__ for c in PIPE_CASES])
def test_9_a_named_pipe_is_refused_before_it_is_opened(trained_run, tmp_path, setup):
    args, name = setup(tmp_path, trained_run)
    if args[0] == "preprocess":
        args += ["--run-dir", str(tmp_path / "run")]
    child = run_han(args)
    one_line_error(child, 3, name, PIPE_MESSAGE)


def test_9_dev_zero_on_stdin_is_refused_at_once_with_bounded_memory(trained_run):
    with open("/dev/zero", "rb") as zero:
        child = run_han(["predict", str(trained_run)], stdin=zero.fileno())
    one_line_error(child, 3, "standard input: line 1: binary data (a NUL byte)")


@pytest.mark.slow
def test_9_an_endless_stdin_line_is_cut_while_read_with_bounded_memory(trained_run):
    size, chunk = 1_500_000_000, b"word " * 13_107  # 1.5 GB of one line, then two short lines

    def feed(pipe) -> None:
        try:
            pipe.write(b"a short first document.\n")
            for _ in range(size // len(chunk)):
                pipe.write(chunk)
            pipe.write(b"\nthe last document.\n")
            pipe.close()
        except (BrokenPipeError, ValueError):
            pass

    child = run_han(["predict", str(trained_run)], feed=feed, timeout=180, rss_limit_mib=1400)
    assert child.exit_code == 0, child.stderr
    assert [json.loads(line)["row"] for line in child.stdout.splitlines()] == [1, 2, 3]
    assert "1 line(s) longer than preprocess.max_chars" in child.stderr


# --- 10a: a JSON line nested 200,000 deep is a one-line error, not a RecursionError --------------------


@pytest.mark.parametrize("command", ["predict", "report"])
def test_10a_a_deeply_nested_json_line_is_refused_naming_the_line(trained_run, tmp_path, command):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "fine."}\n' + "[" * 200_000 + "\n", encoding="utf-8")
    args = [command, str(trained_run), str(path)]
    if command == "report":
        args += ["--output", str(tmp_path / "report.html")]
    one_line_error(invoke(*args), 3, "deep.jsonl: line 2 is nested")


# --- 13: carving keeps every class in train --------------------------------------------------------


@pytest.mark.parametrize("seed", [5, 23], ids=["lost-to-test", "lost-to-validation"])
def test_13_carving_keeps_a_one_document_class_in_train(tmp_path, caplog, seed):
    from sklearn.model_selection import train_test_split

    rows = [{"text": r["text"], "label": r["label"]} for r in make_corpus(60, seed=1)]
    normal = load_data(DataConfig(source=str(write_csv(tmp_path / "normal.csv", rows))), seed=seed)
    indices = list(range(len(rows)))  # ordinary data: exactly sklearn's stratified split, as always
    _, test = train_test_split(indices, test_size=0.2, random_state=seed, stratify=[r["label"] for r in rows])
    assert normal.splits["test"].rows == sorted(i + 1 for i in test)

    rows.insert(17, {"text": "Dollar rates moved on the currency market today.", "label": "dlr"})
    with caplog.at_level(logging.WARNING, logger="han"):
        # on the old carving, seed 5 lost 'dlr' to test and seed 23 to validation: "never seen in training"
        loaded = load_data(DataConfig(source=str(write_csv(tmp_path / "r52.csv", rows))), seed=seed)
    assert loaded.splits["train"].labels.count("dlr") == 1
    assert {len(s) for s in loaded.splits.values()} == {43, 5, 13}
    assert all(set(loaded.splits[name].labels) == {"food", "sport", "tech"} for name in ("validation", "test"))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'dlr'" in m and "test split" in m for m in warned), warned
    assert any("'dlr'" in m and "validation split" in m for m in warned), warned


# --- 15c: an unreachable hub fails in seconds, in one line ------------------------------------------


def test_15c_an_unreachable_hub_fails_fast_in_one_line(tmp_path):
    with socket.socket() as probe:  # a local port nobody listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env: dict[str, str | None] = {
        "HF_ENDPOINT": f"http://127.0.0.1:{port}",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"),
        "HF_DATASETS_OFFLINE": None,  # the case at hand: offline mode not set, and no network
        "HF_HUB_OFFLINE": None,
    }
    args = ["preprocess", str(TINY_CONFIG), "data.source=someone/nonexistent-dataset"]
    child = run_han([*args, "--run-dir", str(tmp_path / "run")], env=env, timeout=120)
    one_line_error(child, 3, "someone/nonexistent-dataset: the Hugging Face hub cannot be reached")
    assert child.seconds < 15, f"took {child.seconds:.1f} s"
