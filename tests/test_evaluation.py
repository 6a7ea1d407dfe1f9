"""Single-label metrics (han/evaluation/metrics.py) against scikit-learn's definitions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from han.evaluation.metrics import classification_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_label_metrics_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    classes = 6
    labels = rng.integers(0, classes - 1, size=500)  # class 5 never true
    probabilities = rng.dirichlet(np.ones(classes), size=500)
    probabilities[:, 4] = 0.0  # class 4 never predicted
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    names = [f"c{i}" for i in range(classes)]
    metrics = classification_metrics(labels, probabilities, names)
    predicted = probabilities.argmax(axis=1)
    every = list(range(classes))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=every, zero_division=0)
    assert metrics["accuracy"] == accuracy_score(labels, predicted)
    assert metrics["micro_f1"] == pytest.approx(f1_score(labels, predicted, labels=every, average="micro"), abs=1e-15)
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(labels, predicted, labels=every, average="macro", zero_division=0), abs=1e-15
    )
    for i, name in enumerate(names):
        row = metrics["per_class"][name]
        assert row["precision"] == pytest.approx(precision[i], abs=1e-15)
        assert row["recall"] == pytest.approx(recall[i], abs=1e-15)
        assert row["f1"] == pytest.approx(f1[i], abs=1e-15)
        assert row["support"] == support[i]
    assert metrics["per_class"]["c4"]["precision"] == 0.0 and metrics["per_class"]["c5"]["recall"] == 0.0
    assert (
        metrics["confusion_matrix"]["rows_true_columns_predicted"]
        == confusion_matrix(labels, predicted, labels=every).tolist()
    )
    picked = probabilities[np.arange(500), labels]
    assert metrics["loss"] == pytest.approx(-np.mean(np.log(np.clip(picked, 1e-12, None))))


def test_scoring_an_encoded_split_imports_neither_scikit_learn_nor_datasets_nor_spacy():
    code = (
        "import sys, han.serving.inference, han.serving.trained, han.evaluation.scoring, han.evaluation.metrics\n"
        "print(sorted(m for m in ('sklearn', 'datasets', 'spacy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
