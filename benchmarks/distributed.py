"""Data-parallel training throughput: N torchrun processes vs one process, through `han train`.

    python -m benchmarks.distributed [--docs 1280] [--epochs 4] [--nproc 2] [--threads 2]

Builds a run directory of synthetic IMDB-like documents (benchmarks/synthetic.py; paper sizes:
vocabulary 50k, embedding 200, GRU 50, attention 100, batch 64, 5 classes), then trains it with
`han train` three ways, each in fresh processes, one after another:
  single       1 process, --threads threads (all the cores)
  single_1t    1 process, 1 thread
  ddp          `han train --nproc N`, threads/N threads per process (gloo on CPU)
Throughput is training docs/s per epoch from train_log.jsonl (validation excluded), median over the
epochs after the first (warm-up). Also reports the largest weight difference between the single
and the data-parallel run (same seed and global batch: equal up to summation order).
Prints one JSON line per way and a summary line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from benchmarks.common import emit, load_average
from benchmarks.synthetic import encoded_split, id_documents
from han.config import config_from_dict
from han.store.rundir import RunDir
from han.store.vocab import PAD, UNK, Vocab
from han.util.atomic import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
VOCAB, EMBEDDING, HIDDEN, ATTENTION, CLASSES, BATCH = 50_000, 200, 50, 100, 5, 64


def make_config(epochs: int, threads: int) -> dict:
    return {
        "seed": 0,
        "device": "cpu",
        "data": {"source": "synthetic"},
        "embeddings": {"source": "random", "dim": EMBEDDING},
        "model": {"word_hidden": HIDDEN, "sentence_hidden": HIDDEN, "attention_dim": ATTENTION, "dropout": 0.0},
        "train": {
            "batch_size": BATCH,
            "max_epochs": epochs,
            "threads": threads,
            "early_stopping_patience": epochs,
            "early_stopping_metric": "loss",
        },
    }


def build_run(root: Path, docs: int, epochs: int) -> None:
    """A preprocessed run directory of synthetic documents."""
    run = RunDir(root)
    root.mkdir(parents=True, exist_ok=True)
    config = config_from_dict(make_config(epochs, 1))
    run.save_config(config)
    Vocab([PAD, UNK, *(f"w{i}" for i in range(2, VOCAB))]).save(run.vocab_path)
    write_json_atomic(run.labels_path, {"labels": [f"c{i}" for i in range(CLASSES)]})
    vectors = np.random.default_rng(0).normal(0, 0.1, (VOCAB, EMBEDDING)).astype(np.float32)
    save_file({"embeddings": vectors}, str(run.embeddings_path))
    encoded_split(id_documents(docs, VOCAB, seed=0), CLASSES, seed=0).save(run.data_path("train"))
    encoded_split(id_documents(max(64, docs // 20), VOCAB, seed=1), CLASSES, seed=1).save(run.data_path("validation"))
    run.record_artifacts(  # stages verify what they load against the manifest
        run.config_path,
        run.vocab_path,
        run.labels_path,
        run.embeddings_path,
        *map(run.data_path, ("train", "validation")),
    )


def train_once(template: Path, target: Path, config_file: Path, threads: int, nproc: int) -> dict:
    import shutil

    shutil.copytree(template, target)
    command = [sys.executable, "-m", "pipelines", "train", str(config_file), f"train.threads={threads}"]
    command += ["--run-dir", str(target), "--nproc", str(nproc)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    log = [json.loads(line) for line in (target / "train_log.jsonl").read_text().splitlines()]
    rates = [record["docs_per_s"] for record in log[1:]] or [log[0]["docs_per_s"]]
    world_size = json.loads((target / "manifest.json").read_text())["train"]["world_size"]
    return {
        "world_size": world_size,
        "docs_per_s": statistics.median(rates),
        "docs_per_s_min": min(rates),
        "docs_per_s_max": max(rates),
        "final_train_loss": log[-1]["train_loss"],
    }


def max_abs_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(a[key] - b[key]).max()) for key in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1280)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=2, help="threads of the single process; ddp gets threads/nproc each"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template = root / "template"
        build_run(template, args.docs, args.epochs)
        config_file = root / "config.json"
        config_file.write_text((template / "config.json").read_text())
        ways = {
            "single": (args.threads, 1),
            "single_1t": (1, 1),
            "ddp": (max(1, args.threads // args.nproc), args.nproc),
        }
        results = {}
        for name, (threads, nproc) in ways.items():
            results[name] = train_once(template, root / name, config_file, threads, nproc)
            emit(
                {
                    "bench": "distributed_train",
                    "way": name,
                    "processes": nproc,
                    "threads_per_process": threads,
                    "docs": args.docs,
                    "epochs": args.epochs,
                    **results[name],
                    "load_avg_1m": load_average(),
                }
            )
        single, single_1t, ddp = (load_file(str(root / way / "model" / "last.safetensors")) for way in ways)
        emit(
            {
                "bench": "distributed_summary",
                "nproc": args.nproc,
                "ddp_vs_single": results["ddp"]["docs_per_s"] / results["single"]["docs_per_s"],
                "ddp_vs_single_1t": results["ddp"]["docs_per_s"] / results["single_1t"]["docs_per_s"],
                # strings: emit() rounds floats to 3 decimals
                "max_abs_weight_diff_ddp_vs_single": f"{max_abs_difference(single, ddp):.3g}",
                "max_abs_weight_diff_ddp_vs_single_1t": f"{max_abs_difference(single_1t, ddp):.3g}",
            }
        )


if __name__ == "__main__":
    main()
