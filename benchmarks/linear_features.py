"""Which TF-IDF features serve the linear kind (and the n-gram channel, which reads the same): a grid on
preprocessed runs.

    python -m benchmarks.linear_features RUN_DIR [RUN_DIR ...]
    python -m benchmarks.linear_features --c-only RUN_DIR [RUN_DIR ...]   # each C at the run's own features

Each RUN_DIR is a run after `han preprocess` (its encoded splits and vocabulary). For every combination of
`linear_sublinear_tf`, `linear_tokens`, `linear_min_df` and `linear_c` the linear kind's features and
classifier are fitted on the training split as `han train` fits them (han.training.fit_linear) and scored on
validation and test. One JSON line per (run, setting); validation decides, test is reported beside it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from han.evaluation.metrics import split_metrics
from han.evaluation.scoring import predict_probabilities
from han.models.linear import TfidfLinearModel
from han.store.encoded import EncodedSplit
from han.store.rundir import RunDir
from han.training.fit_linear import fit_ngram_classifier, ngram_table

GRID: dict[str, list[object]] = {
    "linear_sublinear_tf": [False, True],
    "linear_tokens": ["all", "words"],
    "linear_min_df": [1, 2],
    "linear_c": [0.3, 1.0, 3.0],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--c-only", action="store_true", help="vary linear_c alone, the run's other settings kept")
    args = parser.parse_args()
    grid = {"linear_c": GRID["linear_c"]} if args.c_only else GRID
    for root in args.runs:
        run = RunDir(root)
        config, vocab, labels = run.load_config(), run.load_vocab(), run.load_labels()
        splits = {name: EncodedSplit.load(run.data_path(name)) for name in ("train", "validation", "test")}
        for values in itertools.product(*grid.values()):
            setting = dict(zip(grid, values, strict=True))
            model_config = config.model.model_copy(update={"kind": "linear", **setting})
            run_config = config.model_copy(update={"model": model_config})
            start = time.perf_counter()
            table = ngram_table(splits["train"], vocab, model_config)
            model = TfidfLinearModel(len(vocab), len(labels), model_config)
            zeros = torch.zeros(len(labels), table.keys.numel())
            model.set_fitted(table.keep, table.keys, table.idf, zeros, torch.zeros(len(labels)))
            weight, bias, _ = fit_ngram_classifier(model, splits["train"], len(labels), run_config, run)
            model.set_fitted(table.keep, table.keys, table.idf, weight, bias)
            seconds = time.perf_counter() - start
            row: dict[str, object] = {"run": root.name, **setting, "features": table.keys.numel()}
            for name in ("validation", "test"):
                split = splits[name]
                metrics = split_metrics(split.labels, predict_probabilities(model, split, 256, "fp32"), labels)
                row[f"{name}_accuracy"] = round(metrics["accuracy"], 4)
                row[f"{name}_macro_f1"] = round(metrics["macro_f1"], 4)
            row["seconds"] = round(seconds, 2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
