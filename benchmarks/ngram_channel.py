"""The n-gram channel's cost (model.wide): its set-up and one training epoch with and without it, on the
IMDB-sized stand-in (benchmarks/standin.py imdb, read as benchmarks/realtext.py reads it).

    python -m benchmarks.ngram_channel --dir /tmp/ngram-bench               # medians of 3
    python -m benchmarks.ngram_channel --dir /tmp/ngram-bench --source OTHER_CHECKOUT  # another tree's han

The stand-in is written and preprocessed once into DIR (reused when there). Then, `--reps` times each:
- `setup`: fitting the channel's n-gram table on the training split (han.training.fit_linear.ngram_table) in a
  fresh process: seconds, features, and the process's peak RSS before and after; with `--weights fitted` (the
  default model) also, in the same process, all that `han train` does before its first step
  (`fitted_seconds`: the network built, the table again, the training rows, the linear classifier the channel
  holds with C chosen on validation, and the training documents' channel scores; `fitted_cpu_seconds`: the user
  and system time all that took, in the process and its forked workers);
- `train`: `han train CONFIG OVERRIDES model.wide_weights=W|model.wide=false train.max_epochs=1 --run-dir DIR/run
  --overwrite` (W: `--weights`, the clothing config's learnt unless given),
  alternating with and without the channel: wall seconds and peak RSS of the whole command, and the epoch's
  docs/s from its train log.
`--linear-c C` sets model.linear_c (default auto: three fits, C chosen on validation) for the set-up and both
commands; `--setup-only` stops after the set-up.
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
def cpu_seconds():  # user and system time of this process and of its workers that have ended
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime
train, vocab = EncodedSplit.load(run.data_path("train")), run.load_vocab()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
config = load_config(run.config_path)
table = ngram_table(train, vocab, config.model)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
figures = {"seconds": seconds, "features": int(table.keys.numel()), "rss_before": before, "rss_after": after}
if sys.argv[2] == "fitted":  # the default model: all that training does before its first step, table included
    from han.training import initial_model, wide_entries
    linear_c = sys.argv[3] if sys.argv[3] == "auto" else float(sys.argv[3])
    update = {"wide": True, "wide_weights": "fitted", "linear_c": linear_c}
    config = config.model_copy(update={"model": config.model.model_copy(update=update)})
    start, cpu_start = time.perf_counter(), cpu_seconds()
    validation = EncodedSplit.load(run.data_path("validation"))
    if hasattr(initial_model, "build_training_start"):
        made = initial_model.build_training_start(config, run, train_split=train, validation_split=validation)
        entries = wide_entries.training_entries(made.model, train, made.training_rows)
        wide_entries.training_wide_scores(config, run, made.model, train, entries, made.fitted_c)
    else:  # a checkout from before the set-up handed its rows on
        model = initial_model.build_initial_model(config, run, train_split=train, validation_split=validation)
        wide_entries.training_entries(model, train)
    figures["fitted_seconds"] = time.perf_counter() - start
    figures["fitted_cpu_seconds"] = cpu_seconds() - cpu_start
    figures["rss_after_fitted"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(figures))
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


def linear_c(value: str) -> str:
    """`--linear-c`: auto or a positive number, as model.linear_c takes it."""
    try:
        if value == "auto" or float(value) > 0:
            return value
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{value!r}: give auto or a positive number")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the stand-in and its run are kept")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--linear-c", type=linear_c, default="auto", help="the set-up's model.linear_c (fitted weights): auto or a C"
    )
    parser.add_argument("--setup-only", action="store_true", help="measure the set-up, not the train commands")
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout whose han runs (default: this one)")
    parser.add_argument(
        "--weights", choices=["learnt", "fitted"], default="learnt", help="the channel's model.wide_weights"
    )
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
        _, peak, out = measured([sys.executable, "-c", SETUP, str(run), args.weights, args.linear_c], source)
        setups.append({**json.loads(out), "peak": peak})
    setup = {
        "bench": "ngram_channel_setup",
        "source": str(source),
        "features": setups[0]["features"],
        "linear_c": args.linear_c,
        "seconds": summary([s["seconds"] for s in setups]),
        "rss_before_mb": summary([s["rss_before"] for s in setups]),
        "rss_after_mb": summary([s["rss_after"] for s in setups]),
    }
    if args.weights == "fitted":
        setup["fitted_seconds"] = summary([s["fitted_seconds"] for s in setups])
        setup["fitted_cpu_seconds"] = summary([s["fitted_cpu_seconds"] for s in setups])
        setup["rss_after_fitted_mb"] = summary([s["rss_after_fitted"] for s in setups])
    emit(setup)
    if args.setup_only:
        return
    c = [f"model.linear_c={args.linear_c}"]  # the fitted weights' C and the linear baseline's
    variants = {
        "with": ["model.wide=true", f"model.wide_weights={args.weights}", *c],
        "without": ["model.wide=false", *c],
    }
    figures: dict[str, dict[str, list[float]]] = {name: {"seconds": [], "peak": [], "docs": []} for name in variants}
    for _ in range(args.reps):
        for name, overrides in variants.items():
            command = [*config, *overrides, "train.max_epochs=1", "--run-dir", str(run)]
            seconds, peak = han(source, "train", *command, "--overwrite")
            epoch = next(
                json.loads(line)
                for line in (run / "train_log.jsonl").read_text().splitlines()
                if json.loads(line)["epoch"] == 1
            )  # epoch 0, when fitted, is the linear kind alone
            for key, value in (("seconds", seconds), ("peak", peak), ("docs", epoch["docs_per_s"])):
                figures[name][key].append(value)
    for name, overrides in variants.items():
        emit(
            {
                "bench": "ngram_channel_train",
                "source": str(source),
                "wide": name == "with",
                "command": f"han train {' '.join(config)} {' '.join(overrides)} train.max_epochs=1 "
                "--run-dir RUN --overwrite",
                "seconds": summary(figures[name]["seconds"]),
                "peak_rss_mb": summary(figures[name]["peak"]),
                "epoch_docs_per_s": summary(figures[name]["docs"]),
                "load_average": os.getloadavg()[0],
            }
        )
    share = statistics.median(figures["with"]["docs"]) / statistics.median(figures["without"]["docs"])
    emit({"bench": "ngram_channel_epoch_share", "source": str(source), "with_over_without": share})


if __name__ == "__main__":
    main()
