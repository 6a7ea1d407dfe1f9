"""What `train.beat_linear_start: significantly` keeps, replayed on an ablation's runs trained with `at_all`.

    python -m benchmarks.beat_start --dir DIR --corpora bbc,r8,clothing,reuters_time,reuters_rare,imdb \
        [--setting shipped+wide_fitted] [--linear linear]

Reads DIR/<corpus>/<setting>/runs/han-seed<S> (runs that start from the fitted channel, as `benchmarks.ablation`
writes them) and DIR/<corpus>/<linear>/runs/linear-seed<S> (the linear kind on the same preprocessing, which is
the runs' epoch 0: checked against each run's logged epoch 0). The patience and the epochs trained do not depend
on the setting, only which weights are kept, so each run's best network epoch (its saved best weights) is tested
against its linear kind on its own validation split by training's own test
(`han.training.initial_model.compared_with_start`, on the run's early-stopping metric). Where it passes the
run is unchanged; where it does not, the run is counted as keeping epoch 0, the linear kind (a lesser epoch that
passes would be kept instead; its weights were not saved). Prints one line per run and, per corpus, mean ± sample
std of validation and test accuracy and macro-F1 for the linear kind, `at_all` and `significantly`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from han.evaluation.scoring import predict_probabilities
from han.serving.trained import load_trained_run
from han.training.initial_model import compared_with_start

KEYS = ("validation_accuracy", "validation_macro_f1", "test_accuracy", "test_macro_f1")


def validation_probabilities(run_dir: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The run's kept model's validation probabilities, the validation labels and the early-stopping metric."""
    trained = load_trained_run(run_dir)
    split = trained.run.load_split("validation")
    probabilities = predict_probabilities(trained.model, split, trained.config.train.eval_batch_size)
    return probabilities, split.labels, trained.config.train.early_stopping_metric


def figures(results: Path) -> dict[str, float]:
    """KEYS of one run, from the ablation's results/<model>-seed<S>.json."""
    data = json.loads(results.read_text())
    return {key: float(data[key]) for key in KEYS}


def replay_run(cell: Path, linear_cell: Path, seed: int) -> dict[str, Any]:
    """One run: its best epoch, the test against the linear kind, and KEYS under each rule."""
    run_dir = cell / "runs" / f"han-seed{seed}"
    history = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    best_epoch = int(manifest["train"]["best_epoch"])
    network = figures(cell / "results" / f"han-seed{seed}.json")
    linear = figures(linear_cell / "results" / f"linear-seed{seed}.json")
    start = next(r for r in history if r["epoch"] == 0)
    for key in ("validation_accuracy", "validation_macro_f1"):  # the linear kind is the run's epoch 0
        if abs(start[key] - linear[key]) > 1e-9:
            raise SystemExit(f"{run_dir}: epoch 0's {key} {start[key]} is not the linear kind's {linear[key]}")
    outcome: dict[str, Any] = {"run": str(run_dir), "best_epoch": best_epoch, "at_all": network}
    if best_epoch == 0:
        return outcome | {"gain": 0.0, "p_value": 1.0, "significantly": network}
    best, labels, metric = validation_probabilities(run_dir)
    linear_probabilities, linear_labels, _ = validation_probabilities(linear_cell / "runs" / f"linear-seed{seed}")
    if not np.array_equal(labels, linear_labels):
        raise SystemExit(f"{run_dir}: its validation split is not the linear kind's")
    test = compared_with_start(labels, best, linear_probabilities, metric)  # training's own test
    kept = network if test["beats_start"] else linear
    return outcome | {"gain": test["gain_over_start"], "p_value": test["p_over_start"], "significantly": kept}


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--corpora", default="bbc,r8,clothing,reuters_time,reuters_rare,imdb")
    parser.add_argument("--setting", default="shipped+wide_fitted")
    parser.add_argument("--linear", default="linear")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    table = ["| corpus | rule | " + " | ".join(k.replace("_", " ") for k in KEYS) + " |", "|---|---|" + "---:|" * 4]
    for corpus in args.corpora.split(","):
        cell, linear_cell = args.dir / corpus / args.setting, args.dir / corpus / args.linear
        runs = [replay_run(cell, linear_cell, seed) for seed in seeds]
        for run in runs:
            kept = (
                "epoch 0 already"
                if run["best_epoch"] == 0
                else "network"
                if run["significantly"] is run["at_all"]
                else "epoch 0"
            )
            print(
                f"{run['run']}: best epoch {run['best_epoch']}, gain {run['gain']:+.4f}, p {run['p_value']:.4f}: {kept}"
            )
        linear = [figures(linear_cell / "results" / f"linear-seed{seed}.json") for seed in seeds]
        for name, rows in (("linear kind", linear), ("at_all", [r["at_all"] for r in runs])):
            table.append(f"| {corpus} | {name} | " + " | ".join(mean_std([r[k] for r in rows]) for k in KEYS) + " |")
        rows = [r["significantly"] for r in runs]
        table.append(f"| {corpus} | significantly | " + " | ".join(mean_std([r[k] for r in rows]) for k in KEYS) + " |")
    print("\n".join(table))


if __name__ == "__main__":
    main()
