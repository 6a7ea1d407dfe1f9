"""Multi-label Reuters (configs/reuters_modapte.yaml): han against TF-IDF + one-vs-rest LinearSVC on identical splits.

    python -m benchmarks.multilabel_reference [--seeds 0 1 2] [--set train.max_epochs=12 ...]

For each seed, han carves test (20%) and validation (10% of the rest) from the ModApte training
documents by iterative stratification (the seed is the config's, so each seed is its own split) and
runs the shipped config. On exactly those documents, scikit-learn's `TfidfVectorizer(ngram_range=(1, 2))`
+ `OneVsRestClassifier(LinearSVC())` (the reference of ../shared/data/README.md: micro-F1 0.854 on a
random 80/20 split) is fitted on the raw text of train + validation (the 80% han also sees: han uses
validation for early stopping and thresholds) and, for a like-for-like view, on train alone. Both are
scored by han's own metric function (`han.evaluation.metrics.multilabel_metrics`), the baseline at its
decision margin 0. One JSON line per seed, then one with means and standard deviations.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import emit
from han.config import Config, load_config
from han.data.label_sets import label_matrix
from han.data.splits import load_data
from han.evaluation.metrics import multilabel_metrics
from han.workflows.run import run_all

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "reuters_modapte.yaml"
REPORTED = ("micro_f1", "macro_f1", "macro_f1_present", "samples_f1", "exact_match")


def tfidf_one_vs_rest(config: Config, fit_on: tuple[str, ...]) -> dict[str, Any]:
    """TfidfVectorizer(1-2) + OneVsRest(LinearSVC) on the raw text of han's splits `fit_on`, scored on han's test."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    data = load_data(config.data, config.seed, multilabel=True)
    names = data.label_names
    texts = [text for split in fit_on for text in data.splits[split].texts]
    labels = np.concatenate([label_matrix(data.splits[split].labels, names) for split in fit_on])
    present = labels.sum(axis=0) > 0  # OneVsRest needs each label column to hold a positive
    vectorizer = TfidfVectorizer(ngram_range=(1, 2))
    classifier = OneVsRestClassifier(LinearSVC()).fit(vectorizer.fit_transform(texts), labels[:, present])
    test = data.splits["test"]
    predicted = np.zeros((len(test), len(names)), dtype=np.float32)
    predicted[:, present] = classifier.predict(vectorizer.transform(list(test.texts)))
    truth = label_matrix(test.labels, names)
    return multilabel_metrics(truth, predicted, names, np.full(len(names), 0.5))


def han_run(config: Config) -> dict[str, Any]:
    """The shipped config end to end in a temporary run directory: its test metrics and threshold entry."""
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        run_all(config, run_dir)
        test = json.loads((run_dir / "metrics.json").read_text())["test"]
        manifest = json.loads((run_dir / "manifest.json").read_text())
    return {
        **{key: test[key] for key in REPORTED},
        "thresholds": manifest["thresholds"],
        "documents": test["documents"],
    }


def main() -> None:
    """Measure every seed, then the means."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. train.max_epochs=12")
    arguments = parser.parse_args()
    rows = []
    for seed in arguments.seeds:
        config = load_config(CONFIG, [f"seed={seed}", *arguments.set])
        ours = han_run(config)
        train_validation = tfidf_one_vs_rest(config, ("train", "validation"))
        train_only = tfidf_one_vs_rest(config, ("train",))
        row = {
            "benchmark": "multilabel_reference",
            "seed": seed,
            "overrides": arguments.set,
            "test_documents": ours["documents"],
            **{f"han_{key}": ours[key] for key in REPORTED},
            **{f"tfidf_svm_train_validation_{key}": train_validation[key] for key in REPORTED},
            **{f"tfidf_svm_train_{key}": train_only[key] for key in REPORTED},
            "han_thresholds": ours["thresholds"],
        }
        rows.append(row)
        emit(row)
    if len(rows) > 1:
        keys = [k for k in rows[0] if k.startswith(("han_", "tfidf_")) and isinstance(rows[0][k], float)]
        emit(
            {
                "benchmark": "multilabel_reference",
                "seeds": arguments.seeds,
                **{
                    key: {"mean": statistics.mean(r[key] for r in rows), "std": statistics.stdev(r[key] for r in rows)}
                    for key in keys
                },
            }
        )


if __name__ == "__main__":
    main()
