"""Paired significance test for comparing two models on the same test documents.

The test is a paired bootstrap over documents: the resampling unit is the test document, so the
correlation between a model's seeds (all evaluated on the same documents) is kept inside each
resample, and seed s of one model is paired with seed s of the other.
"""

from __future__ import annotations

import numpy as np

SIGNIFICANCE_LEVEL = 0.05
"""Two-sided level of the paired document bootstrap (documents resampled, seeds kept together and paired)."""

_CHUNK = 1_000  # resamples drawn at a time


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
