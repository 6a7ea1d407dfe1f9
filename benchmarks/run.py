"""Run the benchmarks and print one JSON object per line.

    python -m benchmarks.run                 # all of them (about 15 minutes on 2 cores)
    python -m benchmarks.run train infer     # a selection
    python -m benchmarks.run --quick         # small sizes, a smoke check of the scripts

Each measurement runs in its own process (so peak RSS is its own) and reports medians of >= 3
passes after a warm-up. `train` runs han's fused path, han's nn.GRU path and the straightforward
padded reference one after another in the same invocation and reports their ratios.
Names: train, infer, tail, preprocess, word2vec, predict_memory, preprocess_memory, clothing, distributed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import emit

ROOT = Path(__file__).resolve().parents[1]
ALL = [
    "train",
    "infer",
    "tail",
    "preprocess",
    "word2vec",
    "predict_memory",
    "preprocess_memory",
    "clothing",
    "distributed",
]


def run_module(module: str, *args: str) -> list[dict[str, Any]]:
    """Run `python -m module args` from the project root; return the JSON lines it printed (echoed too)."""
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, check=True, capture_output=True, text=True)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    for record in records:
        print(json.dumps(record), flush=True)
    return records


def bench_train(quick: bool) -> None:
    docs, reps = ("256", "3") if quick else ("1280", "3")
    fused = run_module("benchmarks.train", "--variant", "fused", "--docs", docs, "--reps", reps)[0]
    torch_path = run_module("benchmarks.train", "--variant", "torch", "--docs", docs, "--reps", reps)[0]
    reference = run_module("benchmarks.train", "--variant", "reference", "--docs", str(int(docs) // 2), "--reps", reps)[
        0
    ]
    emit(
        {
            "bench": "train_summary",
            "docs_per_s": fused["docs_per_s"],
            "tokens_per_s": fused["tokens_per_s"],
            "ref_docs_per_s": reference["docs_per_s"],
            "torch_docs_per_s": torch_path["docs_per_s"],
            "speedup_vs_reference": fused["docs_per_s"] / reference["docs_per_s"],
            "speedup_vs_torch_path": fused["docs_per_s"] / torch_path["docs_per_s"],
            "peak_rss_mb": fused["peak_rss_mb"],
        }
    )


def bench_infer(quick: bool) -> None:
    docs = "512" if quick else "2560"
    run_module("benchmarks.train", "--variant", "fused", "--infer", "--docs", docs, "--reps", "3")


def bench_tail(quick: bool) -> None:
    """Cost tracks real tokens: 1% of 10x longer documents should barely change tokens/s."""
    docs = "512" if quick else "1280"
    base = run_module("benchmarks.train", "--variant", "fused", "--docs", docs, "--reps", "3")[0]
    tail = run_module("benchmarks.train", "--variant", "fused", "--docs", docs, "--reps", "3", "--long-share", "0.01")[
        0
    ]
    emit(
        {
            "bench": "tail_summary",
            "tokens_per_s": base["tokens_per_s"],
            "tokens_per_s_with_long_docs": tail["tokens_per_s"],
            "change": tail["tokens_per_s"] / base["tokens_per_s"] - 1,
        }
    )


def bench_preprocess(quick: bool) -> None:
    run_module("benchmarks.preprocess", "--docs", "400" if quick else "4000")


def bench_word2vec(quick: bool) -> None:
    run_module("benchmarks.word2vec", "--docs", "800" if quick else "8000")


def bench_predict_memory(quick: bool) -> None:
    sizes = ["--small", "1000", "--large", "20000"] if quick else ["--small", "10000", "--large", "1000000"]
    run_module("benchmarks.predict_memory", *sizes)


def bench_preprocess_memory(quick: bool) -> None:
    """Peak anonymous memory of preprocess on the clothing reviews and copies of them (bounded per token)."""
    run_module("benchmarks.preprocess_memory", "--copies", *(["1", "2"] if quick else ["1", "10", "30"]))


def bench_clothing(quick: bool) -> None:
    """End-to-end wall time per stage of `han run configs/clothing.yaml` (needs ../shared/data)."""
    if quick or not (ROOT.parent / "shared" / "data" / "clothing_reviews.csv").exists():
        emit({"bench": "clothing", "skipped": "quick mode or ../shared/data/clothing_reviews.csv missing"})
        return
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "clothing"
        subprocess.run(
            [sys.executable, "-m", "pipelines", "run", "configs/clothing.yaml", "--run-dir", str(run_dir)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        manifest = json.loads((run_dir / "manifest.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
        emit(
            {
                "bench": "clothing",
                "stage_seconds": manifest["stage_seconds"],
                "preprocess_seconds": manifest["preprocess"]["seconds"],
                "train_docs_per_s": manifest["train"]["docs_per_second"],
                "epochs": manifest["train"]["epochs_run"],
                "test_accuracy": metrics["test"]["accuracy"],
                "test_macro_f1": metrics["test"]["macro_f1"],
            }
        )


def bench_distributed(quick: bool) -> None:
    """`han train --nproc 2` (1 thread each) vs one process (2 threads, 1 thread): docs/s and weight agreement."""
    run_module("benchmarks.distributed", "--docs", "256" if quick else "1280", "--epochs", "2" if quick else "4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=[*ALL, []], default=[])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the scripts run, not the targets")
    args = parser.parse_args()
    for name in args.names or ALL:
        globals()[f"bench_{name}"](args.quick)


if __name__ == "__main__":
    main()
