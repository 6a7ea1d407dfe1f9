"""First vs cached `han preprocess` on a real dataset, as the CLI runs it (separate processes).

    .venv/bin/python benchmarks/preprocess_cache.py [--config configs/clothing.yaml] [--repeat 3]

Each round: remove the run directory, run `han preprocess` (builds), then run it again (reuses the
cache); reports the median wall time of each and their ratio, and checks the second run said
"reused cached preprocessing". The first run's wall time includes word2vec training.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/clothing.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    han = str(Path(sys.executable).with_name("han"))
    run_dir = Path(tempfile.mkdtemp(prefix="han-cache-bench-")) / "run"
    command = [han, "preprocess", args.config, "--run-dir", str(run_dir)]
    first, second = [], []
    for _ in range(args.repeat):
        shutil.rmtree(run_dir, ignore_errors=True)
        seconds, output = timed(command)
        assert "reused" not in output, output
        first.append(seconds)
        seconds, output = timed(command)
        assert "reused cached preprocessing" in output, output
        second.append(seconds)
    shutil.rmtree(run_dir.parent, ignore_errors=True)
    a, b = statistics.median(first), statistics.median(second)
    print(f"{args.config}: first preprocess median {a:.2f}s {sorted(round(x, 2) for x in first)}")
    print(f"{args.config}: cached preprocess median {b:.2f}s {sorted(round(x, 2) for x in second)}")
    print(f"ratio {a / b:.1f}x")


if __name__ == "__main__":
    main()
