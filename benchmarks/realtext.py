"""Whole commands on real text, as a user runs them: medians of >= 3 runs, quiet or beside busy processes.

    python -m benchmarks.realtext imdb                  # the IMDB-sized stand-in: run, evaluate, predict
    python -m benchmarks.realtext imdb_network          # ... the network alone (model.wide=false)
    python -m benchmarks.realtext imdb --busy 1         # ... and each again beside 1 CPU-bound process
    python -m benchmarks.realtext x10                   # han preprocess on the clothing reviews x10
    python -m benchmarks.realtext clothing r8           # the shipped configs

Corpora (benchmarks/standin.py builds the stand-ins from ../shared/data):
- imdb: clothing reviews joined into 25k train / 25k test documents of IMDB length, caps 30 x 50,
  the clothing config as shipped (the default model, n-gram channel included);
- imdb_network: the same without the n-gram channel (model.wide=false), as the figures before the channel;
- x10: the clothing reviews ten times over (226k documents), preprocessing only;
- clothing (short reviews), r8 (news articles): configs/*.yaml as shipped.

For each corpus: `han run` (wall seconds, stage seconds and peak memory, training docs/s, test accuracy), then
`han evaluate RUN --split test` and `han predict RUN TEST_TEXTS -o OUT` (docs/s of the whole command,
start-up included), and for the stand-ins where that time goes (benchmarks.scoring_time). `--busy N` repeats training (one epoch, `han train --overwrite
train.max_epochs=1`), evaluate, predict and preprocessing with N competing `while True: pass`
processes and reports each as a share of its quiet figure measured in the same invocation. One
JSON line per measurement: median, min, max over `--reps` runs and the load average before each.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import emit
from benchmarks.standin import write_copies, write_imdb

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def han(*args: str) -> float:
    """Run `han ARGS` (python -m pipelines) from the project root; return its wall seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


@contextmanager
def busy(processes: int):
    """`processes` CPU-bound competitors for the duration of the block."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        time.sleep(1.0 if processes else 0.0)
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def repeated(reps: int, command: list[str], before: Any = None) -> tuple[list[float], list[float]]:
    """Wall seconds and load averages of `reps` runs of `han command` (calling `before()` ahead of each)."""
    seconds, loads = [], []
    for _ in range(reps):
        if before is not None:
            before()
        loads.append(os.getloadavg()[0])
        seconds.append(han(*command))
    return seconds, loads


class Corpus:
    """A config, its overrides, and the test texts `han predict` reads."""

    def __init__(self, name: str, config: str, overrides: list[str], test_texts: Path, test_docs: int) -> None:
        self.name, self.config, self.overrides = name, config, overrides
        self.test_texts, self.test_docs = test_texts, test_docs


def test_texts_of(source: Path, target: Path, columns: list[str]) -> int:
    """Write the test split's texts (the config's text columns) to `target`; return their count."""
    with open(source, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def corpus(name: str, work: Path) -> Corpus:
    if name in ("imdb", "imdb_network"):
        source = work / "imdb.csv"
        if not source.exists():
            write_imdb(source)
        count = test_texts_of(source, work / "imdb_test.csv", ["text"])
        overrides = [f"data.source={source}", "data.text_column=text", "preprocess.max_sentences=30"]
        overrides += ["model.wide=false"] if name == "imdb_network" else []
        return Corpus(name, "configs/clothing.yaml", overrides, work / "imdb_test.csv", count)
    if name in ("clothing", "r8"):
        source = DATA / ("clothing_reviews.csv" if name == "clothing" else "reuters_r8.csv")
        count = test_texts_of(source, work / f"{name}_test.csv", ["title", "text"])
        config = "configs/clothing.yaml" if name == "clothing" else "configs/reuters_r8.yaml"
        return Corpus(name, config, [], work / f"{name}_test.csv", count)
    raise SystemExit(f"unknown corpus {name!r}")


def bench_corpus(c: Corpus, work: Path, reps: int, busy_processes: list[int]) -> None:
    runs = [work / f"{c.name}-run{i}" for i in range(reps)]
    seconds, loads = [], []
    for run in runs:
        loads.append(os.getloadavg()[0])
        seconds.append(han("run", c.config, *c.overrides, "--run-dir", str(run)))
    manifests = [json.loads((run / "manifest.json").read_text()) for run in runs]
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    emit(
        {
            "bench": f"{c.name}_run",
            "command": f"han run {c.config} {' '.join(c.overrides)} --run-dir RUN",
            "seconds": summary(seconds),
            "preprocess_s": summary([m["stage_seconds"]["preprocess"] for m in manifests]),
            "train_s": summary([m["stage_seconds"]["train"] for m in manifests]),
            "train_docs_per_s": summary([m["train"]["docs_per_second"] for m in manifests]),
            "peak_mb_by_stage": {
                stage: summary([m["stage_peak_memory"][stage]["peak_rss_bytes"] / 2**20 for m in manifests])
                for stage in ("preprocess", "train", "evaluate")
            },
            "epochs": [m["train"]["epochs_run"] for m in manifests],
            "test_accuracy": [mt["test"]["accuracy"] for mt in metrics],
            "load_before": loads,
        }
    )
    run = runs[0]
    prediction = work / f"{c.name}-predictions.csv"

    def fresh_predictions() -> None:
        prediction.unlink(missing_ok=True)

    quiet: dict[str, float] = {}
    for competitors in [0, *busy_processes]:
        with busy(competitors):
            evaluate = repeated(reps, ["evaluate", str(run), "--split", "test"])
            predict = repeated(reps, ["predict", str(run), str(c.test_texts), "-o", str(prediction)], fresh_predictions)
            train = [0.0] * reps
            if competitors:  # one epoch: training throughput without preprocessing
                for i in range(reps):
                    han("train", c.config, *c.overrides, "train.max_epochs=1", "--run-dir", str(run), "--overwrite")
                    train[i] = json.loads((run / "train_log.jsonl").read_text().splitlines()[0])["docs_per_s"]
        figures = {
            "evaluate_docs_per_s": summary([c.test_docs / s for s in evaluate[0]]),
            "predict_docs_per_s": summary([c.test_docs / s for s in predict[0]]),
        }
        if competitors:
            figures["train_docs_per_s"] = summary(train)
        else:  # quiet one-epoch figure from the runs above (their first epochs)
            first_epochs = [json.loads((r / "train_log.jsonl").read_text().splitlines()[0])["docs_per_s"] for r in runs]
            figures["train_docs_per_s"] = summary(first_epochs)
        record: dict[str, Any] = {"bench": f"{c.name}_commands", "competing_processes": competitors, **figures}
        record["load_before"] = evaluate[1] + predict[1]
        if competitors:
            record["share_of_quiet"] = {k: v["median"] / quiet[k] for k, v in figures.items()}
        else:
            quiet = {k: v["median"] for k, v in figures.items()}
        emit(record)
        if not competitors and c.name.startswith("imdb"):  # where that time goes: one line of its own
            where = ["benchmarks.scoring_time", str(run), str(c.test_texts), "--corpus-docs", str(c.test_docs)]
            subprocess.run([sys.executable, "-m", *where, "--reps", str(reps)], check=True, cwd=ROOT)


def bench_x10(work: Path, reps: int, busy_processes: list[int]) -> None:
    source = work / "clothing_x10.csv"
    write_copies(source, 10)
    quiet = 0.0
    target = work / "x10-run"
    for competitors in [0, *busy_processes]:
        with busy(competitors):
            seconds, loads = repeated(
                reps,
                ["preprocess", "configs/clothing.yaml", f"data.source={source}", "--run-dir", str(target)],
                lambda: shutil.rmtree(target, ignore_errors=True),
            )
        manifest = json.loads((target / "manifest.json").read_text())
        record: dict[str, Any] = {
            "bench": "clothing_x10_preprocess",
            "competing_processes": competitors,
            "seconds": summary(seconds),
            "steps_s": manifest["preprocess"]["seconds"],
            "load_before": loads,
        }
        if competitors:
            record["share_of_quiet"] = quiet / statistics.median(seconds)
        else:
            quiet = statistics.median(seconds)
        emit(record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=["imdb", "imdb_network", "x10", "clothing", "r8"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--busy", type=int, nargs="*", default=[], help="also measure beside N competing processes")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in args.names:
            if name == "x10":
                bench_x10(work, args.reps, args.busy)
            else:
                bench_corpus(corpus(name, work), work, args.reps, args.busy)


if __name__ == "__main__":
    main()
