"""The classification metrics reported for a split: accuracy, macro-F1, log loss, per class, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, log loss, per-class precision/recall/F1/support and the confusion matrix."""
    classes = list(range(len(label_names)))
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=classes, zero_division=0)
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "documents": len(labels),
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)),
        "loss": float(-np.mean(np.log(np.clip(picked, 1e-12, None)))),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": {
            "labels": label_names,
            "rows_true_columns_predicted": confusion_matrix(labels, predicted, labels=classes).tolist(),
        },
    }
