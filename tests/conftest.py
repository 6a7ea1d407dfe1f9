"""Shared fixtures: a small synthetic labelled corpus and a trained tiny run; `invoke` and `one_line_error`,
the helpers every test of the `han` command goes through."""

from __future__ import annotations

import csv
import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from click.testing import Result

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"

TOPICS = {
    "sport": ["match", "goal", "team", "coach", "league", "score", "player", "season"],
    "tech": ["software", "chip", "computer", "network", "device", "code", "server", "data"],
    "food": ["recipe", "kitchen", "bread", "cheese", "flavour", "chef", "sauce", "oven"],
}
FILLER = ["the", "a", "was", "very", "today", "we", "said", "and", "it", "new", "with", "for"]


def make_document(rng: random.Random, label: str) -> str:
    """A few sentences mixing filler words with the label's topic words."""
    sentences = []
    for _ in range(rng.randint(1, 6)):
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 12))]
        for _ in range(rng.randint(1, 2)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(TOPICS[label]))
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def make_corpus(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    labels = sorted(TOPICS)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        rows.append(
            {
                "text": make_document(rng, label),
                "label": label,
                "split": "train" if i < 0.7 * n else ("validation" if i < 0.85 * n else "test"),
            }
        )
    return rows


def make_multilabel_document(rng: random.Random, topics: list[str]) -> str:
    """A few sentences of filler words, each with a word of every one of `topics`."""
    sentences = []
    for _ in range(rng.randint(2, 6)):
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 12))]
        for topic in topics:
            words.insert(rng.randrange(len(words) + 1), rng.choice(TOPICS[topic]))
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def make_multilabel_corpus(n: int, seed: int = 0, split: bool = True) -> list[dict[str, str]]:
    """Documents of one or two topics (every third has two), `topics` joined by ';', and (with `split`) a
    train/validation/test `split` column (70/15/15 in order)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topics = sorted(rng.sample(sorted(TOPICS), 2 if i % 3 == 0 else 1))
        row = {"text": make_multilabel_document(rng, topics), "topics": ";".join(topics)}
        if split:
            row["split"] = "train" if i < 0.7 * n else ("validation" if i < 0.85 * n else "test")
        rows.append(row)
    return rows


def random_batch(vocab_size: int, seed: int = 0) -> tuple[Any, Any, Any]:
    """Four documents of 1-3 sentences of 1-6 words (ids 1..vocab_size-1), padded with 0: the model's inputs."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    counts = torch.tensor([2, 1, 3, 2])
    lengths = torch.from_numpy(rng.integers(1, 7, int(counts.sum())))
    word_ids = torch.zeros(len(lengths), 6, dtype=torch.int64)
    for i, n in enumerate(lengths.tolist()):
        word_ids[i, :n] = torch.from_numpy(rng.integers(1, vocab_size, n))
    return word_ids, lengths, counts


def record_callers(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, log: Path) -> None:
    """Replace `owner.name` by a wrapper that appends the calling process's pid to `log` before each call: forked
    workers inherit the wrapper, so `log` tells which calls ran in workers and which here."""
    wrapped = getattr(owner, name)

    def logged(*args: Any) -> Any:
        with log.open("a") as file:
            file.write(f"{os.getpid()}\n")
        return wrapped(*args)

    monkeypatch.setattr(owner, name, logged)


def write_csv(path: Path, rows: list[dict[str, str]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def corpus_rows() -> list[dict[str, str]]:
    return make_corpus(240)


@pytest.fixture(scope="session")
def corpus_csv(tmp_path_factory: pytest.TempPathFactory, corpus_rows: list[dict[str, str]]) -> Path:
    return write_csv(tmp_path_factory.mktemp("corpus") / "corpus.csv", corpus_rows)


@pytest.fixture(scope="session")
def tiny_overrides(corpus_csv: Path) -> list[str]:
    """Overrides that point configs/tiny.yaml at the synthetic corpus."""
    return [f"data.source={corpus_csv}", "data.split_column=split", "train.max_epochs=4", "train.threads=1"]


@pytest.fixture(scope="session")
def tiny_config(tiny_overrides: list[str]):
    from han.config import load_config

    return load_config(TINY_CONFIG, tiny_overrides)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_config) -> Path:
    """A run directory that went through every stage once (shared by read-only tests)."""
    from han.workflows.run import run_all

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    run_all(tiny_config, run_dir)
    return run_dir


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A private copy of `trained_run`, for tests that change, remove or damage its files."""
    target = tmp_path / "run"
    shutil.copytree(trained_run, target)
    return target


def invoke(*args: object, input: str | None = None, check: bool = False) -> Result:
    """Run `han ARGS` in this process (typer's CliRunner) and return click's `Result`.

    Each argument goes through `str()`, so paths and numbers pass as they are; `input` is standard input
    (empty when None). `check`: assert the command succeeded, showing its output (and any exception) if not.
    """
    from typer.testing import CliRunner

    from pipelines.cli import app

    result = CliRunner().invoke(app, [str(arg) for arg in args], input=input)
    if check:
        assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}{result.exception!r}"
    return result


class Outcome(Protocol):
    """What `one_line_error` reads: click's `Result`, or a child process's outcome with the same fields."""

    exit_code: int
    output: str  # everything the command wrote, standard output and standard error
    stderr: str
    exception: BaseException | None  # None, or the SystemExit that carried the exit code, unless it crashed


PROGRESS_BAR_CHARACTERS = set("━╸╺")  # rich's progress bars, drawn on stderr


def one_line_error(outcome: Outcome, code: int, *fragments: str, progress: bool = False) -> str:
    """Assert `outcome` is han's refusal: exit `code`, no crash and no traceback, exactly one non-empty stderr
    line, holding every fragment. Return that line.

    `progress`: the command ran a while first, so its progress bars (lines drawn with ━ ╸ ╺) may precede the line.
    """
    assert outcome.exit_code == code, f"exit {outcome.exit_code}: {outcome.output}{outcome.exception!r}"
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), repr(outcome.exception)
    assert "Traceback" not in outcome.output + outcome.stderr, outcome.output
    bars = PROGRESS_BAR_CHARACTERS if progress else set()
    lines = [line for line in outcome.stderr.splitlines() if line.strip() and not bars & set(line)]
    assert len(lines) == 1, outcome.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def run_until_then_sigterm(command: list[str], ready: Path, timeout: float = 180) -> str:
    """Run `python -m pipelines COMMAND`, send SIGTERM once a checkpoint exists in the folder `ready`, and
    return its stderr after checking it stopped gracefully (exit 143, a message naming --resume, no traceback)."""
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline and not any(ready.glob("*.safetensors")):
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    return stderr
