"""Class weights of a single-label training (`train.class_weight`), from the training split's label counts.

balanced is scikit-learn's `compute_class_weight("balanced")`: N / (C * n_c) for a class with n_c of the N
training documents, C the classes training has. Its mean over the training documents is exactly 1, so the
loss keeps its scale and the learning rate its meaning; sqrt, sqrt(N / (C * n_c)), is scaled to the same
mean of 1. A class no training document has weighs 0 (no training term carries it; the weight is recorded
as it was used). Measured effect on clothing: docs/results/class-weights.md.
"""

from __future__ import annotations

import numpy as np


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray | None:
    """(num_classes,) float64 weight of each class id in the cross-entropy; None for mode "none".

    `labels` (N,) are the training split's class ids."""
    if mode == "none":
        return None
    if mode not in ("balanced", "sqrt"):
        raise ValueError(f"unknown class weighting {mode!r}; expected none, balanced or sqrt")
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)  # (C,)
    present = counts > 0
    weights = np.zeros(num_classes, dtype=np.float64)
    weights[present] = counts.sum() / (present.sum() * counts[present])  # scikit-learn's balanced
    if mode == "sqrt":
        weights = np.sqrt(weights)
        weights /= (weights * counts).sum() / counts.sum()  # mean weight over the training documents: 1
    return weights


def named_class_weights(weights: np.ndarray | None, label_names: list[str]) -> dict[str, float] | None:
    """The weights by class name, rounded for the manifest; None when the run has none."""
    if weights is None:
        return None
    return {name: round(float(weight), 6) for name, weight in zip(label_names, weights, strict=True)}
