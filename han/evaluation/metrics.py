"""The classification metrics reported for a split: accuracy, macro-F1, log loss, per class, confusion matrix.

`classification_metrics` is for single-label tasks (one class per document, softmax probabilities);
`multilabel_metrics` for multi-label tasks (a set of labels per document, sigmoid probabilities and
the thresholds of `han.evaluation.thresholds`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from han.evaluation.thresholds import as_label_matrix, predict_label_sets

PRECISION_AT = (1, 3, 5)  # the k of precision@k in multilabel_metrics (a k above the number of labels is left out)
_BCE_CLIP = 1e-7


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """Accuracy, micro- and macro-F1, log loss, per-class precision/recall/F1/support and the confusion matrix.

    Computed from the confusion matrix in numpy with scikit-learn's definitions (zero_division=0;
    tests/test_evaluation.py holds them equal), so scoring a split never imports scikit-learn.
    """
    num_classes = len(label_names)
    predicted = probabilities.argmax(axis=1)
    confusion = np.bincount(
        np.asarray(labels, dtype=np.int64) * num_classes + predicted, minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)  # (C, C): rows true, columns predicted
    hits = np.diag(confusion).astype(np.float64)
    support, predicted_count = confusion.sum(axis=1), confusion.sum(axis=0)
    precision = _ratio(hits, predicted_count)
    recall = _ratio(hits, support)
    f1 = _ratio(2 * hits, support + predicted_count)  # 2tp / (2tp + fp + fn)
    accuracy = float(hits.sum() / max(len(labels), 1))
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "documents": len(labels),
        "accuracy": accuracy,
        "micro_f1": accuracy,  # one true and one predicted class per document: micro-F1 is accuracy
        "macro_f1": float(f1.mean()),
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
            "rows_true_columns_predicted": confusion.tolist(),
        },
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def precision_at_k(truth: np.ndarray, probabilities: np.ndarray, ks: tuple[int, ...] = PRECISION_AT) -> dict[str, Any]:
    """Precision@k for each k in `ks` not above the number of labels: the mean, over documents with at least
    one true label, of (true labels among the k most probable) / k; None when no document has a true label.

    `truth` is the (N, C) boolean label matrix. Among the k most probable, a tie in probability at the
    k-th place (exactly equal probabilities) is broken in a fixed but unspecified way.
    """
    classes = truth.shape[1]
    usable = [k for k in ks if 1 <= k <= classes]
    keep = truth.any(axis=1)
    if not usable:
        return {}
    if not keep.any():
        return {str(k): None for k in usable}
    truth, scores = truth[keep], np.asarray(probabilities)[keep]
    deepest = max(usable)
    if deepest < classes:  # the `deepest` most probable labels, unordered, then ordered among themselves
        top = np.argpartition(-scores, deepest - 1, axis=1)[:, :deepest]
        order = np.lexsort((top, -np.take_along_axis(scores, top, axis=1)), axis=1)
        top = np.take_along_axis(top, order, axis=1)
    else:
        top = np.argsort(-scores, axis=1, kind="stable")
    hits = np.cumsum(np.take_along_axis(truth, top, axis=1), axis=1)  # true labels among the first k
    return {str(k): float(np.mean(hits[:, k - 1] / k)) for k in usable}


def multilabel_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    label_names: list[str],
    thresholds: np.ndarray,
    at_least_one: bool = False,
) -> dict[str, Any]:
    """The metrics of a multi-label split, as plain JSON-ready values.

    `labels` (N, C) is 0/1 (or boolean), `probabilities` (N, C) the sigmoid outputs, `thresholds` (C,);
    a label is predicted when its probability is >= its threshold (`han.evaluation.thresholds.predict_label_sets`,
    with `at_least_one` giving an empty document its most probable label).

    Every figure comes from scikit-learn with zero_division=0: a label never predicted has precision 0, a
    label never true has recall 0 and F1 0. "accuracy" and "exact_match" are both the subset accuracy
    (every label of the document right). Macro averages are over all C labels, labels absent from this
    split included (each scores 0); "macro_f1_present" is the macro-F1 over the labels with support > 0
    (None when there are none). "samples_f1" averages the F1 of each document (0 for a document with no
    true and no predicted label). "label_ranking_average_precision" skips documents with no true label
    (scikit-learn would count each as 1.0) and is None when every document is skipped; "precision_at_k"
    likewise (see `precision_at_k`). "loss" is the mean over documents of the sum over labels of the
    binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7].
    """
    from scipy import sparse
    from sklearn.metrics import (  # imported here: single-label scoring does without scikit-learn
        accuracy_score,
        f1_score,
        hamming_loss,
        label_ranking_average_precision_score,
        precision_recall_fscore_support,
        precision_score,
        recall_score,
    )

    probabilities = np.asarray(probabilities)
    truth = as_label_matrix(labels, probabilities)
    documents, classes = truth.shape
    if len(label_names) != classes:
        raise ValueError(f"{len(label_names)} label names for {classes} label columns")
    if np.shape(thresholds) != (classes,):
        raise ValueError(f"thresholds must have shape ({classes},), one per label, got {np.shape(thresholds)}")
    predicted = predict_label_sets(probabilities, thresholds, at_least_one=at_least_one)
    # Sparse indicator matrices: the same figures from scikit-learn, some 20 times faster than dense ones
    y_true, y_pred = sparse.csr_matrix(truth, dtype=np.int8), sparse.csr_matrix(predicted, dtype=np.int8)
    columns = list(range(classes))

    def f1(average: str) -> float:
        return float(f1_score(y_true, y_pred, labels=columns, average=average, zero_division=0))

    precision, recall, per_f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=columns, average=None, zero_division=0
    )
    present = support > 0
    ranked = truth.any(axis=1)
    lrap = float(label_ranking_average_precision_score(y_true[ranked], probabilities[ranked])) if ranked.any() else None
    clipped = np.clip(probabilities.astype(np.float64), _BCE_CLIP, 1 - _BCE_CLIP)
    cross_entropy = -np.where(truth, np.log(clipped), np.log1p(-clipped)).sum(axis=1)
    values = np.asarray(thresholds, dtype=np.float64)
    exact = float(accuracy_score(y_true, y_pred))
    return {
        "documents": int(documents),
        "accuracy": exact,
        "exact_match": exact,
        "micro_f1": f1("micro"),
        "macro_f1": f1("macro"),
        "macro_f1_present": float(per_f1[present].mean()) if present.any() else None,
        "weighted_f1": f1("weighted"),
        "samples_f1": f1("samples"),
        "micro_precision": float(precision_score(y_true, y_pred, labels=columns, average="micro", zero_division=0)),
        "micro_recall": float(recall_score(y_true, y_pred, labels=columns, average="micro", zero_division=0)),
        "macro_precision": float(precision_score(y_true, y_pred, labels=columns, average="macro", zero_division=0)),
        "macro_recall": float(recall_score(y_true, y_pred, labels=columns, average="macro", zero_division=0)),
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
        "label_ranking_average_precision": lrap,
        "precision_at_k": precision_at_k(truth, probabilities),
        "loss": float(cross_entropy.mean()),
        "labels_per_document": {
            "true": float(truth.sum(axis=1).mean()),
            "predicted": float(predicted.sum(axis=1).mean()),
        },
        "per_label": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(per_f1[i]),
                "support": int(support[i]),
                "threshold": float(values[i]),
            }
            for i, name in enumerate(label_names)
        },
    }


def split_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    label_names: list[str],
    thresholds: np.ndarray | None = None,
    at_least_one: bool = False,
) -> dict[str, Any]:
    """The metrics of a split, single- or multi-label by the shape of `labels`.

    Labels of shape (N,) (class indices): `classification_metrics`; `thresholds` and `at_least_one` are
    ignored. Labels of shape (N, C) (0/1): `multilabel_metrics` at `thresholds`, 0.5 for every label when None.
    """
    if np.ndim(labels) == 1:
        return classification_metrics(np.asarray(labels), np.asarray(probabilities), label_names)
    if thresholds is None:
        thresholds = np.full(len(label_names), 0.5)
    return multilabel_metrics(labels, probabilities, label_names, thresholds, at_least_one)
