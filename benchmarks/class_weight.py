"""What `train.class_weight` buys on the clothing reviews (configs/clothing.yaml), over seeds (docs/results/class-weights.md).

    python -m benchmarks.class_weight [--seeds 0 1 2] [--jobs 2] [--out DIR] [--data CSV]

Each setting (none, balanced, sqrt) is the shipped config run end to end (`han run`) once per seed, each
run a process of its own with one torch thread and one word2vec worker (`--jobs` of them side by side).
One JSON line per setting: validation and test macro-F1 and accuracy, mean and sample standard deviation
over the seeds, and each class's recall, mean over the seeds. Settings are compared on validation.
The runs are kept under --out (default: a new folder under /tmp).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import emit

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "clothing.yaml"
DATA = ROOT.parent / "shared" / "data" / "clothing_reviews.csv"
SETTINGS = ("none", "balanced", "sqrt")
ONE_CORE = ["train.threads=1", "embeddings.workers=1", "preprocess.workers=1"]


def run_one(out: Path, data: Path, setting: str, seed: int) -> Path:
    """`han run` of the clothing config with one setting and seed; its run directory."""
    run_dir = out / f"{setting}-seed{seed}"
    overrides = [f"data.source={data}", f"seed={seed}", f"train.class_weight={setting}", *ONE_CORE]
    command = [sys.executable, "-m", "pipelines", "run", str(CONFIG), *overrides, "--run-dir", str(run_dir)]
    with open(out / f"{setting}-seed{seed}.log", "w") as log:
        subprocess.run(command, cwd=ROOT, check=True, stdout=log, stderr=subprocess.STDOUT)
    return run_dir


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarise(setting: str, run_dirs: list[Path]) -> dict[str, Any]:
    """One setting's figures over its runs (their metrics.json)."""
    metrics = [json.loads((run_dir / "metrics.json").read_text()) for run_dir in run_dirs]
    record: dict[str, Any] = {"benchmark": "class_weight", "class_weight": setting, "seeds": len(run_dirs)}
    for split in ("validation", "test"):
        for name in ("macro_f1", "accuracy"):
            figures = mean_std([m[split][name] for m in metrics])
            record[f"{split}_{name}"] = round(figures["mean"], 4)
            record[f"{split}_{name}_std"] = round(figures["std"], 4)
        classes = metrics[0][split]["per_class"]
        record[f"{split}_recall"] = {
            name: round(statistics.mean(m[split]["per_class"][name]["recall"] for m in metrics), 3) for name in classes
        }
    weights = json.loads((run_dirs[0] / "manifest.json").read_text())["train"].get("class_weights")
    record["class_weights"] = {name: round(w, 3) for name, w in weights.items()} if weights else None
    return record


def main() -> None:
    """Every setting at every seed, then one line per setting."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="han-class-weight-"))
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(setting, seed) for setting in SETTINGS for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(lambda job: run_one(out, args.data.resolve(), *job), jobs))
    for setting in SETTINGS:
        emit(summarise(setting, [run for (name, _), run in zip(jobs, runs, strict=True) if name == setting]))


if __name__ == "__main__":
    main()
