"""Paired significance tests for comparing two models on the same documents.

Both are paired bootstraps over documents: the resampling unit is the document, so whatever the two models
share on a document stays together in each resample. `paired_bootstrap` compares accuracies over seeds (seed s
of one model paired with seed s of the other; `han compare`); `paired_metric_bootstrap` compares one
prediction of each on any metric training selects on (training's test of an epoch against the linear start).
"""

from __future__ import annotations

import numpy as np

from han.evaluation.thresholds import as_label_matrix, predict_label_sets

SIGNIFICANCE_LEVEL = 0.05
"""Two-sided level of the paired document bootstrap (documents resampled, seeds kept together and paired)."""

_CHUNK = 1_000  # resamples drawn at a time
# paired_metric_bootstrap draws a multinomial over the distinct document descriptions while there are at most
# 1 / _INDEX_DRAWS_ABOVE as many of them as documents (the draw's cost grows with them), else document indices
_INDEX_DRAWS_ABOVE = 4
_DRAWN_AT_ONCE = 4_000_000  # ... this many document indices at a time


def _as_correct(name: str, values: np.ndarray) -> np.ndarray:
    """`values` as a 2-D int8 array (seeds, documents) of 0/1; a 1-D array is one seed."""
    array = np.asarray(values)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (seeds, documents), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}): need at least one seed and one document")
    if array.dtype != np.bool_ and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must be boolean or 0/1 (whether each document was classified correctly)")
    return array.astype(np.int8)


def paired_bootstrap(
    correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Mean accuracy of A minus that of B, and the two-sided p-value of a paired bootstrap over documents.

    `correct_a` and `correct_b` have shape (seeds, documents): whether model A / B classified each test
    document correctly with each seed (same documents in the same order; seed s of A paired with seed s
    of B). Each resample draws the documents with replacement (numpy `default_rng(seed)`) and takes the
    mean of a - b over the seeds and the drawn documents; p = min(1, 2 * min(share <= 0, share >= 0)).
    Identical inputs give (0.0, 1.0). Deterministic for a fixed `seed`.

    Drawing N documents with replacement means drawing how often each document is taken, a multinomial
    over the documents; documents with the same per-document difference are interchangeable, so the
    counts are drawn per distinct difference (at most 2 * seeds + 1 of them), in chunks of resamples.
    The resampled differences are exact integer sums, so their sign is never blurred by rounding.
    """
    a = _as_correct("correct_a", correct_a)
    b = _as_correct("correct_b", correct_b)
    if a.shape != b.shape:
        raise ValueError(
            f"correct_a and correct_b must have the same shape (seeds, documents), got {a.shape} and {b.shape}"
        )
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    seeds, documents = a.shape
    # d: per-document sum over seeds of (a - b), an integer in [-seeds, seeds]
    d = (a.astype(np.int64) - b).sum(axis=0)
    difference = float(d.sum()) / (seeds * documents)
    if not d.any():  # every resample is exactly 0 (identical inputs, among others)
        return 0.0, 1.0
    values, counts = np.unique(d, return_counts=True)
    shares = counts / documents
    rng = np.random.default_rng(seed)
    at_most_zero = at_least_zero = 0
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        drawn = rng.multinomial(documents, shares, size=size)  # (size, distinct values)
        sums = drawn @ values  # resampled sum of d; the mean is sums / (seeds * documents)
        at_most_zero += int((sums <= 0).sum())
        at_least_zero += int((sums >= 0).sum())
    p_value = min(1.0, 2.0 * min(at_most_zero, at_least_zero) / resamples)
    return difference, p_value


def document_statistics(labels: np.ndarray, probabilities: np.ndarray, metric: str) -> np.ndarray:
    """(N, K) per-document counts whose sums over documents give `metric` (`metric_from_sums`), as
    `han.evaluation.metrics.split_metrics` computes it (a multi-label split at threshold 0.5, as validation is).

    accuracy: [correct] (multi-label: every label right); loss: [the document's loss]; micro_f1 of a
    multi-label split: [true positives, predicted, true]; macro_f1: those per class, (N, 3C). A single-label
    split's micro_f1 is its accuracy.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.ndim == 1:
        predicted = probabilities.argmax(axis=1)
        correct = predicted == labels
        if metric in ("accuracy", "micro_f1"):
            return correct[:, None].astype(np.float64)
        if metric == "loss":
            picked = probabilities[np.arange(len(labels)), labels]
            return -np.log(np.clip(picked, 1e-12, None))[:, None]
        classes = np.eye(probabilities.shape[1])
        truth, guess = classes[labels], classes[predicted]
    else:
        truth = as_label_matrix(labels, probabilities).astype(np.float64)
        guess = predict_label_sets(probabilities, np.full(probabilities.shape[1], 0.5)).astype(np.float64)
        if metric == "accuracy":
            return (truth == guess).all(axis=1)[:, None].astype(np.float64)
        if metric == "loss":
            clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
            return -np.where(truth > 0, np.log(clipped), np.log1p(-clipped)).sum(axis=1)[:, None]
    hits = truth * guess
    if metric == "micro_f1":
        return np.stack([hits.sum(axis=1), guess.sum(axis=1), truth.sum(axis=1)], axis=1)
    if metric != "macro_f1":
        raise ValueError(f"metric must be accuracy, macro_f1, micro_f1 or loss, got {metric!r}")
    return np.concatenate([hits, guess, truth], axis=1)


def metric_from_sums(sums: np.ndarray, metric: str, documents: int) -> np.ndarray:
    """`metric` from (R, K) sums over documents of `document_statistics`: (R,), one value per row."""
    if metric in ("accuracy", "loss") or sums.shape[1] == 1:  # a single-label split's micro_f1 is its accuracy
        return sums[:, 0] / documents
    hits, guess, truth = np.split(sums, 3, axis=1)  # (R, C) each; micro_f1: C = 1
    both = guess + truth
    f1 = np.divide(2 * hits, both, out=np.zeros_like(both), where=both > 0)  # 2tp / (2tp + fp + fn), 0 when 0 / 0
    return f1.mean(axis=1)


def paired_metric_bootstrap(
    labels: np.ndarray,
    probabilities_a: np.ndarray,
    probabilities_b: np.ndarray,
    metric: str,
    resamples: int = 2_000,
    seed: int = 0,
) -> tuple[float, float]:
    """How much better model A is than model B on `metric` over the same documents (positive: A is better; for
    the loss, B's minus A's), and the two-sided p-value of a paired bootstrap over the documents.

    Each resample draws the documents with replacement and recomputes both models' `metric` on the same draw.
    A document is described by its `document_statistics` under both models; documents described alike are
    interchangeable, so the draw is a multinomial over the distinct descriptions (a few dozen for a single-label
    split's F1), or of document indices where nearly every document is described differently (the loss).
    p = min(1, 2 * min(share of gains <= 0, share >= 0)); identical predictions give (0.0, 1.0). Deterministic for
    a fixed `seed`."""
    a = document_statistics(labels, probabilities_a, metric)
    b = document_statistics(labels, probabilities_b, metric)
    documents, width = a.shape
    if documents == 0:
        raise ValueError("no documents to compare")
    sign = -1.0 if metric == "loss" else 1.0

    def gains(sums: np.ndarray) -> np.ndarray:
        return sign * (
            metric_from_sums(sums[:, :width], metric, documents) - metric_from_sums(sums[:, width:], metric, documents)
        )

    if np.array_equal(a, b):
        return 0.0, 1.0
    paired = np.concatenate([a, b], axis=1)  # (N, 2K)
    labels = np.asarray(labels)
    if labels.ndim == 1 and metric != "loss":
        # A document's counts follow from (label, A's class, B's class): group by that key first, so the rows
        # compared below are a few dozen, not one per document.
        classes = np.asarray(probabilities_a).shape[1]
        key = (labels * classes + np.argmax(probabilities_a, axis=1)) * classes + np.argmax(probabilities_b, axis=1)
        _, first, by_key, per_key = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
        described, merged = np.unique(paired[first], axis=0, return_inverse=True)
        merged = merged.reshape(-1)
        which, counts = merged[by_key.reshape(-1)], np.bincount(merged, weights=per_key).astype(np.int64)
    else:
        described, which, counts = np.unique(paired, axis=0, return_inverse=True, return_counts=True)
    which = which.reshape(-1)  # (N,) each document's description, in [0, U)
    gain = float(gains((counts @ described)[None, :])[0])
    rng = np.random.default_rng(seed)
    at_most_zero = at_least_zero = 0
    # Nearly as many distinct descriptions as documents (the loss): draw document indices instead
    multinomial = len(counts) * _INDEX_DRAWS_ABOVE <= documents
    chunk = _CHUNK if multinomial else max(1, _DRAWN_AT_ONCE // documents)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        if multinomial:
            drawn = rng.multinomial(documents, counts / documents, size=size)  # (size, U)
        else:
            picks = which[rng.integers(0, documents, size=(size, documents))]  # (size, N)
            rows = np.arange(size)[:, None] * len(counts)
            drawn = np.bincount((rows + picks).ravel(), minlength=size * len(counts)).reshape(size, -1)
        resampled = gains(drawn @ described)  # (size,)
        at_most_zero += int((resampled <= 0).sum())
        at_least_zero += int((resampled >= 0).sum())
    return gain, min(1.0, 2.0 * min(at_most_zero, at_least_zero) / resamples)
