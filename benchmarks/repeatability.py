"""Are fresh-process trainings of one seed bit-identical? N `han train` processes on copies of one run.

    python -m benchmarks.repeatability RUN_DIR CONFIG [--runs 20] [--threads 2] [key=value ...]

RUN_DIR is a preprocessed run directory made with CONFIG (e.g. `han preprocess configs/reuters_r8.yaml
embeddings.workers=1 --run-dir runs/r8`); each run trains a copy of it in a fresh process with
`train.threads` fixed and prints one JSON line: the runs, how many distinct last-weights files they made,
the thread counts the manifests recorded, and the median seconds of a training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COPIED = ("config.json", "labels.json", "vocab.json", "embeddings.safetensors", "manifest.json", "data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("config")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    digests, threads, seconds = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(args.runs):
            copy = Path(scratch) / f"run{index}"
            copy.mkdir()
            for name in COPIED:
                source = args.run_dir / name
                (shutil.copytree if source.is_dir() else shutil.copy2)(source, copy / name)
            command = [sys.executable, "-m", "pipelines", "train", args.config, *args.overrides]
            command += [f"train.threads={args.threads}", "--run-dir", str(copy)]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            seconds.append(time.perf_counter() - start)
            digests.append(hashlib.sha256((copy / "model" / "last.safetensors").read_bytes()).hexdigest()[:16])
            threads.append(json.loads((copy / "manifest.json").read_text())["train"]["threads"]["used"])
    print(
        json.dumps(
            {
                "benchmark": "repeatability",
                "runs": args.runs,
                "threads": args.threads,
                "distinct_weights": len(set(digests)),
                "threads_used": sorted({tuple(t) for t in threads}),
                "median_train_s": round(statistics.median(seconds), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
