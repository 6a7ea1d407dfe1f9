"""The n-gram channel's cost (model.wide): its set-up and one training epoch with and without it, on the
IMDB-sized stand-in (benchmarks/standin.py imdb, read as benchmarks/realtext.py reads it).

    python -m benchmarks.ngram_channel --dir /tmp/ngram-bench               # medians of 3
    python -m benchmarks.ngram_channel --dir /tmp/ngram-bench --source OTHER_CHECKOUT  # another tree's han

The stand-in is written and preprocessed once into DIR (reused when there). Then, `--reps` times each:
- `setup`: fitting the channel's n-gram table on the training split (han.training.fit_linear.ngram_table) in a
  fresh process: seconds, features, and the process's peak RSS before and after;
- `train`: `han train CONFIG OVERRIDES model.wide=true|false train.max_epochs=1 --run-dir DIR/run --overwrite`,
  alternating with and without the channel: wall seconds and peak RSS of the whole command, and the epoch's
  docs/s from its train log.
One JSON line per measurement (median, min, max), then the epoch speed with the channel as a share of without.
`--source` runs the han of another checkout (its `python -m pipelines`, same interpreter): the before figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import emit
from benchmarks.standin import ROOT, write_imdb

CONFIG = ["configs/clothing.yaml", "data.text_column=text", "preprocess.max_sentences=30"]

SETUP = """
import json, resource, sys, time
from pathlib import Path
from han.config import load_config
from han.store.encoded import EncodedSplit
from han.store.rundir import RunDir
from han.training.fit_linear import ngram_table
run = RunDir(Path(sys.argv[1]))
train, vocab = EncodedSplit.load(run.data_path("train")), run.load_vocab()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
table = ngram_table(train, vocab, load_config(run.config_path).model)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "features": int(table.keys.numel()), "rss_before": before, "rss_after": after}))
"""


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measured(command: list[str], cwd: Path) -> tuple[float, float, str]:
    """Run `command`; (wall seconds, its peak RSS in MB, its stdout)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)  # the rusage of this child alone
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            err.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read().decode()[-2000:]}")
        out.seek(0)
        return seconds, usage.ru_maxrss / 1024, out.read().decode()


def han(source: Path, *args: str) -> tuple[float, float]:
    """`han ARGS` from the checkout `source`: (wall seconds, peak RSS MB)."""
    seconds, peak, _ = measured([sys.executable, "-m", "pipelines", *args], source)
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the stand-in and its run are kept")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout whose han runs (default: this one)")
    args = parser.parse_args()
    work, source = args.dir.resolve(), args.source.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data, run = work / "imdb.csv", work / "run"
    config = [str(ROOT / CONFIG[0]), f"data.source={data}", *CONFIG[1:]]
    if not data.exists():
        write_imdb(data)
    if not (run / "data").exists():
        han(source, "preprocess", *config, "--run-dir", str(run))
    setups: list[dict[str, Any]] = []
    for _ in range(args.reps):
        _, peak, out = measured([sys.executable, "-c", SETUP, str(run)], source)
        setups.append({**json.loads(out), "peak": peak})
    emit(
        {
            "bench": "ngram_channel_setup",
            "source": str(source),
            "features": setups[0]["features"],
            "seconds": summary([s["seconds"] for s in setups]),
            "rss_before_mb": summary([s["rss_before"] for s in setups]),
            "rss_after_mb": summary([s["rss_after"] for s in setups]),
        }
    )
    figures: dict[bool, dict[str, list[float]]] = {w: {"seconds": [], "peak": [], "docs": []} for w in (True, False)}
    for _ in range(args.reps):
        for wide in (True, False):
            command = [*config, f"model.wide={str(wide).lower()}", "train.max_epochs=1", "--run-dir", str(run)]
            seconds, peak = han(source, "train", *command, "--overwrite")
            epoch = json.loads((run / "train_log.jsonl").read_text().splitlines()[0])
            for name, value in (("seconds", seconds), ("peak", peak), ("docs", epoch["docs_per_s"])):
                figures[wide][name].append(value)
    for wide in (True, False):
        emit(
            {
                "bench": "ngram_channel_train",
                "source": str(source),
                "wide": wide,
                "command": f"han train {' '.join(config)} model.wide={str(wide).lower()} train.max_epochs=1 "
                "--run-dir RUN --overwrite",
                "seconds": summary(figures[wide]["seconds"]),
                "peak_rss_mb": summary(figures[wide]["peak"]),
                "epoch_docs_per_s": summary(figures[wide]["docs"]),
                "load_average": os.getloadavg()[0],
            }
        )
    share = statistics.median(figures[True]["docs"]) / statistics.median(figures[False]["docs"])
    emit({"bench": "ngram_channel_epoch_share", "source": str(source), "with_over_without": share})


if __name__ == "__main__":
    main()
