"""Prediction memory is flat in the input size: peak RSS of `predict_file` on 10k vs 1M documents.

    python -m benchmarks.predict_memory [--small 10000] [--large 1000000]

Builds a run directory with the paper-sized model (random weights: memory and speed do not depend
on them), writes JSON Lines inputs of short synthetic reviews, and predicts each input in a fresh
process, reporting its peak RSS and documents/s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import emit, load_average, peak_rss_mb


def build_run_dir(root: Path) -> Path:
    import torch

    from benchmarks.synthetic import words_for
    from han.config import config_from_dict
    from han.models.build import build_model
    from han.store.rundir import RunDir
    from han.store.vocab import PAD, UNK, Vocab
    from han.store.weights import save_weights
    from han.util.atomic import write_json_atomic

    run = RunDir(root / "run")
    config = config_from_dict({"data": {"source": "synthetic"}, "train": {"threads": 2}})
    run.root.mkdir(parents=True)
    run.save_config(config)
    vocab = Vocab([PAD, UNK, *words_for(50_000 - 2)])
    vocab.save(run.vocab_path)
    write_json_atomic(run.labels_path, {"labels": ["1", "2", "3", "4", "5"]})
    torch.manual_seed(0)
    save_weights(build_model(config.model, len(vocab), config.embeddings.dim, 5), run.best_weights_path)
    run.record_artifacts(run.config_path, run.vocab_path, run.labels_path, run.best_weights_path)
    return run.root


def write_inputs(path: Path, count: int) -> None:
    from benchmarks.synthetic import words_for

    words = np.array(words_for(5_000), dtype=object)
    rng = np.random.default_rng(0)
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, count, 10_000):
            n = min(10_000, count - start)
            for length in rng.integers(4, 20, size=n):
                sentence = " ".join(words[rng.integers(0, len(words), size=length)])
                handle.write(json.dumps({"text": sentence.capitalize() + ". Good one."}) + "\n")


def child(run_dir: str, input_path: str, output_path: str) -> None:
    from han.serving.inference import predict_file
    from han.serving.trained import load_trained_run

    trained = load_trained_run(Path(run_dir))
    start = time.perf_counter()
    count = predict_file(trained, Path(input_path), Path(output_path))
    print(json.dumps({"docs": count, "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=3, metavar=("RUN_DIR", "INPUT", "OUTPUT"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir = build_run_dir(root)
        results = {}
        for count in (args.small, args.large):
            input_path = root / f"input_{count}.jsonl"
            write_inputs(input_path, count)
            output = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.predict_memory",
                    "--child",
                    str(run_dir),
                    str(input_path),
                    str(root / "out.jsonl"),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[count] = json.loads(output.strip().splitlines()[-1])
            input_path.unlink()
        small, large = results[args.small], results[args.large]
        emit(
            {
                "bench": "predict_memory",
                "small_docs": args.small,
                "large_docs": args.large,
                "small_peak_rss_mb": small["peak_rss_mb"],
                "large_peak_rss_mb": large["peak_rss_mb"],
                "rss_growth": large["peak_rss_mb"] / small["peak_rss_mb"] - 1,
                "docs_per_s": large["docs"] / large["seconds"],
                "load_avg_1m": load_average(),
            }
        )


if __name__ == "__main__":
    main()
