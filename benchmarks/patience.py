"""What a shorter early-stopping patience would have kept, read from runs trained with a longer one.

    python -m benchmarks.patience DIR [DIR ...] [--patience 1 2 3]

Every train_log.jsonl under the DIRs (e.g. an ablation's cells) is one run. Training up to any epoch does not
depend on the patience (the learning-rate schedule follows train.max_epochs), so a run trained with patience P
shows exactly where each patience p <= P would have stopped and which epoch it would have kept: the best
validation value of the run's early-stopping metric (the manifest's train.early_stopping_metric), epoch 0
included when the run has one, stopping once p network epochs in a row do not beat the best network epoch.
Prints, per patience, the runs whose kept epoch differs from the run's own, the mean validation value of the
kept epochs, and the epochs trained.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from han.training.train import is_better_epoch, replaces_kept_epoch


def kept_epoch(records: list[dict], metric: str, patience: int) -> tuple[int, int]:
    """(epoch kept, network epochs trained) under `patience`, for one run's epoch records in order, by training's
    own rules (han.training.train: `replaces_kept_epoch`, patience counted on the network's epochs)."""
    best: dict | None = None  # the best epoch, epoch 0 included
    best_network: dict | None = None  # the best of the network's own epochs so far
    stale = trained = 0
    for record in records:
        if replaces_kept_epoch(record, best, metric):
            best = record
        if record["epoch"] == 0:
            continue
        trained += 1
        if is_better_epoch(record, best_network, metric):
            best_network, stale = record, 0
        else:
            stale += 1
            if stale >= patience:
                break
    assert best is not None
    return best["epoch"], trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--patience", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    runs = []
    for log in sorted(p for d in args.dirs for p in d.rglob("train_log.jsonl")):
        train = json.loads((log.parent / "config.json").read_text())["train"]
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        records = [r for r in records if "epoch" in r and r.get("validation_loss") is not None]
        metric, own = train["early_stopping_metric"], train["early_stopping_patience"]
        manifest = json.loads((log.parent / "manifest.json").read_text())
        if "train" not in manifest:
            continue  # still training
        recorded = manifest["train"]["best_epoch"]
        if kept_epoch(records, metric, own)[0] != recorded:  # the reading must give what training kept
            raise SystemExit(
                f"{log.parent}: this reading keeps epoch {kept_epoch(records, metric, own)[0]}, "
                f"training kept {recorded}"
            )
        runs.append((log.parent, records, metric, own))
    for patience in args.patience:
        differ, values, epochs = [], [], []
        for run, records, metric, own in runs:
            if patience > own:
                continue  # a longer patience than the run's own cannot be read from it
            epoch, trained = kept_epoch(records, metric, patience)
            own_epoch, _ = kept_epoch(records, metric, own)
            if epoch != own_epoch:
                differ.append(f"{run}: epoch {epoch} instead of {own_epoch}")
            values.append(next(r for r in records if r["epoch"] == epoch)[f"validation_{metric}"])
            epochs.append(trained)
        if not values:
            continue
        print(
            f"patience {patience}: {len(values)} runs, mean validation value kept {statistics.mean(values):.4f}, "
            f"network epochs trained {sum(epochs)}, kept epoch differs in {len(differ)}"
        )
        for line in differ:
            print(f"  {line}")


if __name__ == "__main__":
    main()
