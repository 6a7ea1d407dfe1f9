"""What each multi-label setting buys on ModApte (configs/reuters_modapte.yaml), one seed (docs/results/multilabel.md).

    python -m benchmarks.multilabel_ablation [--seed 0]

Each variant is the shipped config with overrides, run end to end in a temporary directory; one JSON
line each with validation micro-F1 at 0.5 and at the chosen thresholds (how the variants are compared)
and test micro-/macro-F1 at the chosen thresholds and at 0.5. "zero bias start" trains with the
classifier biases at PyTorch's default initialisation instead of the labels' log-odds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import han.training.train as training
from benchmarks.common import emit
from han.config import load_config
from han.evaluation.metrics import split_metrics
from han.evaluation.scoring import predict_probabilities
from han.serving.trained import load_trained_run
from han.workflows.run import run_all

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "reuters_modapte.yaml"
VARIANTS: dict[str, list[str]] = {
    "shipped (lr 0.004)": [],
    "lr 0.002": ["train.lr=0.002"],
    "lr 0.006": ["train.lr=0.006"],
    "zero bias start": [],
    "one global threshold": ["train.thresholds=global"],
    "positive_weight sqrt": ["train.positive_weight=sqrt"],
    "dropout 0.4": ["model.dropout=0.4"],
    "15 epochs": ["train.max_epochs=15"],
    "batch size 16": ["train.batch_size=16"],
}


def measure(overrides: list[str], zero_bias: bool) -> dict[str, Any]:
    """One variant end to end: validation and test figures."""
    config = load_config(CONFIG, overrides)
    original = training.build_training_start
    if zero_bias:  # the same start without the labels' base rates
        training.build_training_start = lambda config, run, sparse, rates, *splits: original(
            config, run, sparse, None, *splits
        )  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as folder:
            run_dir = Path(folder) / "run"
            run_all(config, run_dir)
            thresholds = json.loads((run_dir / "manifest.json").read_text())["thresholds"]
            test = json.loads((run_dir / "metrics.json").read_text())["test"]
            trained = load_trained_run(run_dir)
            split = trained.run.load_split("test")
            probabilities = predict_probabilities(trained.model, split, config.train.eval_batch_size)
            at_half = split_metrics(split.labels, probabilities, trained.label_names)
    finally:
        training.build_training_start = original
    return {
        "validation_micro_f1_at_half": thresholds["validation_micro_f1_at_half"],
        "validation_micro_f1": thresholds["validation_micro_f1"],
        "test_micro_f1": round(test["micro_f1"], 4),
        "test_macro_f1": round(test["macro_f1"], 4),
        "test_micro_f1_at_half": round(at_half["micro_f1"], 4),
    }


def main() -> None:
    """Every variant at one seed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    seed = parser.parse_args().seed
    for name, overrides in VARIANTS.items():
        figures = measure([f"seed={seed}", *overrides], zero_bias=name == "zero bias start")
        emit({"benchmark": "multilabel_ablation", "seed": seed, "variant": name, **figures})


if __name__ == "__main__":
    main()
