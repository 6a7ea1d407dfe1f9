"""Peak memory of `han preprocess` as the data grows: the clothing reviews and N-fold copies of them.

    python -m benchmarks.preprocess_memory [--copies 1 10 30]

Each size runs in a fresh process that samples its anonymous resident memory (RssAnon in
/proc/self/status; pages of memory-mapped files are left out, the kernel can drop them) every
20 ms while preprocessing with random embeddings and one worker. Copies get " Copy i." appended
so they are distinct documents. One JSON line per size. Needs ../shared/data/clothing_reviews.csv.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import emit, load_average
from benchmarks.standin import write_copies

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "clothing_reviews.csv"


def child(source: str, run_dir: str) -> None:
    peak = {"anon": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("RssAnon"):
                        peak["anon"] = max(peak["anon"], int(line.split()[1]))
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    from han.config import load_config
    from han.text.preprocess import preprocess

    overrides = [f"data.source={source}", "embeddings.source=random", "preprocess.workers=1"]
    start = time.perf_counter()
    summary = preprocess(load_config(ROOT / "configs" / "clothing.yaml", overrides), Path(run_dir))
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    print(
        json.dumps(
            {
                "documents": sum(summary.documents.values()),
                "tokens": sum(summary.words.values()),
                "seconds": seconds,
                "docs_per_s": summary.docs_per_second,
                "peak_anon_mb": peak["anon"] / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument("--child", nargs=2, metavar=("SOURCE", "RUN_DIR"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if not SOURCE.exists():
        emit({"bench": "preprocess_memory", "skipped": f"{SOURCE} missing"})
        return
    with tempfile.TemporaryDirectory() as tmp:
        for copies in args.copies:
            source = Path(tmp) / f"clothing_x{copies}.csv"
            write_copies(source, copies)
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.preprocess_memory",
                    "--child",
                    str(source),
                    str(Path(tmp) / f"run{copies}"),
                ],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            )
            record = json.loads(result.stdout.strip().splitlines()[-1])
            emit(
                {
                    "bench": "preprocess_memory",
                    "copies": copies,
                    "csv_mb": source.stat().st_size / 1e6,
                    **record,
                    "load_avg_1m": load_average(),
                }
            )
            source.unlink()


if __name__ == "__main__":
    main()
