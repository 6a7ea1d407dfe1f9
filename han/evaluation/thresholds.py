"""Decision thresholds of a multi-label model: chosen on the validation split, saved with the run.

A multi-label model scores each label with its own sigmoid, and those outputs are not calibrated at 0.5:
a rare label's positives often score 0.2 or 0.3 because the loss saw many more negatives than positives,
so a fixed 0.5 predicts it almost never. The thresholds are therefore chosen on the validation split
(never on test) from `THRESHOLD_GRID`, either one global threshold (best micro-F1) or one per label (best
F1 of that label; a label with too few validation positives keeps the global one), and saved in the run
directory so that evaluate and predict apply exactly the thresholds training chose.

A label is predicted when its probability is >= its threshold (compared in float64, everywhere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from han.data.rows import names_text
from han.errors import RunDirError
from han.util.atomic import read_json, write_json_atomic

THRESHOLD_GRID: np.ndarray = np.round(np.arange(1, 20) * 0.05, 2)
"""Candidate thresholds: 0.05, 0.10, ..., 0.95 (0.5 exactly among them), ascending."""

THRESHOLD_MODES = ("global", "per_label")

_GRID_STEPS = 20  # THRESHOLD_GRID[j] is the double nearest to (j + 1) / _GRID_STEPS
_CHUNK_ELEMENTS = 4_000_000  # probabilities binned at a time (rows * labels), to bound memory


@dataclass
class Thresholds:
    """Chosen thresholds: one per label, how they were chosen, and which labels fell back to the global one."""

    values: np.ndarray  # (C,) float64, the threshold of each label
    mode: str  # "global" or "per_label"
    global_threshold: float  # the grid value with the best micro-F1 over every label
    fallback_labels: list[int] = field(default_factory=list)  # labels given the global threshold (too few positives)

    def as_dict(self, label_names: list[str]) -> dict[str, Any]:
        """The JSON form: {"mode", "global", "per_label": {name: threshold}, "fallback": [names]}."""
        if len(label_names) != len(self.values):
            raise ValueError(f"{len(label_names)} label names for {len(self.values)} thresholds")
        return {
            "mode": self.mode,
            "global": float(self.global_threshold),
            "per_label": {name: float(value) for name, value in zip(label_names, self.values, strict=True)},
            "fallback": [label_names[i] for i in self.fallback_labels],
        }


def as_label_matrix(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """`labels` as a boolean (N, C) matrix, after checking it is 0/1 and has the shape of `probabilities`.

    Raises ValueError naming what is wrong: not 2-D, shapes that differ, no document or label, a value not 0/1.
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities)
    if labels.ndim != 2 or probabilities.ndim != 2:
        raise ValueError(
            f"labels and probabilities must have shape (documents, labels), got {labels.shape} and {probabilities.shape}"
        )
    if labels.shape != probabilities.shape:
        raise ValueError(f"labels {labels.shape} and probabilities {probabilities.shape} must have the same shape")
    if labels.shape[0] == 0 or labels.shape[1] == 0:
        raise ValueError(f"need at least one document and one label, got shape {labels.shape}")
    if labels.dtype == np.bool_:
        return labels
    if np.issubdtype(labels.dtype, np.integer):
        binary = bool(labels.min() >= 0 and labels.max() <= 1)
    else:
        binary = bool(((labels == 0) | (labels == 1)).all())
    if not binary:
        raise ValueError("labels must be boolean or 0/1 (whether each document has each label)")
    return labels.astype(bool)


def _check_thresholds(thresholds: np.ndarray, labels: int) -> np.ndarray:
    values = np.asarray(thresholds, dtype=np.float64)
    if values.shape != (labels,):
        raise ValueError(f"thresholds must have shape ({labels},), one per label, got {values.shape}")
    return values


def predict_label_sets(probabilities: np.ndarray, thresholds: np.ndarray, at_least_one: bool = False) -> np.ndarray:
    """The predicted labels, an (N, C) boolean matrix: probability >= the label's threshold.

    With `at_least_one`, a document with no label at or above its threshold gets its single most
    probable label (the first one on a tie).
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must have shape (documents, labels), got {probabilities.shape}")
    values = _check_thresholds(thresholds, probabilities.shape[1])
    predicted = probabilities >= values  # float64 comparison: thresholds are float64
    if at_least_one and predicted.shape[1] > 0:
        empty = np.flatnonzero(~predicted.any(axis=1))
        predicted[empty, probabilities[empty].argmax(axis=1)] = True
    return predicted


def _grid_bins(block: np.ndarray) -> np.ndarray:
    """For each probability of `block` (float32 or float64), how many grid values are <= it (0 .. G).

    Equal to `np.searchsorted(THRESHOLD_GRID, block, side="right")` (float64 comparisons), several times
    faster: the grid is evenly spaced, so the bin is floor(p * 20), except within rounding reach of a grid
    value (or outside [0, 1]), where the exact comparison decides.
    """
    scaled = block * block.dtype.type(_GRID_STEPS)
    np.clip(scaled, -1, _GRID_STEPS, out=scaled)  # outside [0, 1] lands on -1 or 20: "near", compared exactly
    bins = scaled.astype(np.int8)  # truncation: floor for scaled >= 0
    fraction = scaled - bins
    near = (fraction < 1e-4) | (fraction > 1 - 1e-4)  # float32 rounding of p * 20 is below 2e-6
    if near.any():
        bins[near] = np.searchsorted(THRESHOLD_GRID, block[near].astype(np.float64), side="right")
    return bins


def _grid_counts(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per grid value and label (G, C): documents predicted (p >= threshold), and true positives among them."""
    documents, classes = labels.shape
    width = len(THRESHOLD_GRID) + 1  # bins 0 .. G per label
    offsets = np.arange(classes, dtype=np.intp) * width
    predicted = np.zeros(classes * width, dtype=np.int64)
    true_positive = np.zeros(classes * width, dtype=np.int64)
    rows = max(1, _CHUNK_ELEMENTS // classes)
    for start in range(0, documents, rows):
        block = probabilities[start : start + rows]
        if block.dtype != np.float32:
            block = block.astype(np.float64)
        keys = _grid_bins(block) + offsets
        predicted += np.bincount(keys.ravel(), minlength=classes * width)
        true_positive += np.bincount(keys[labels[start : start + rows]], minlength=classes * width)

    def at_or_above(counts: np.ndarray) -> np.ndarray:
        # bins >= j + 1 are the probabilities >= THRESHOLD_GRID[j]
        per_bin = counts.reshape(classes, width)
        return np.cumsum(per_bin[:, ::-1], axis=1)[:, ::-1][:, 1:].T

    return at_or_above(predicted), at_or_above(true_positive)


def _f1(true_positive: np.ndarray, predicted: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """F1 = 2 TP / (predicted + positives), 0 where both are 0 (scikit-learn's zero_division=0)."""
    denominator = predicted + positives
    return np.divide(2 * true_positive, denominator, out=np.zeros(denominator.shape), where=denominator > 0)


def _closest_best(f1: np.ndarray, target: int) -> np.ndarray:
    """Per column of `f1` (G, ...): the grid index with the best F1, ties to the one closest to index
    `target`, then to the lower one."""
    index = np.arange(len(THRESHOLD_GRID)).reshape((-1,) + (1,) * (f1.ndim - 1))
    key = np.where(f1 == f1.max(axis=0), np.abs(index - target), len(THRESHOLD_GRID))
    return np.asarray(key.argmin(axis=0))  # argmin: the first, lower, index of two as close


def choose_thresholds(
    labels: np.ndarray, probabilities: np.ndarray, mode: str = "per_label", min_positives: int = 5
) -> Thresholds:
    """Thresholds from `THRESHOLD_GRID` chosen on (validation) `labels` (N, C) 0/1 and `probabilities` (N, C).

    The global threshold is the grid value with the best micro-F1 over the whole matrix (ties: the one
    closest to 0.5). Mode "global" gives it to every label. Mode "per_label" gives each label with at least
    `min_positives` positive documents the grid value with its best F1 (ties: the one closest to the global
    threshold), and every other label the global threshold (listed in `fallback_labels`; empty in mode
    "global"). Of two candidates as close, the lower wins. F1 is 0 where a label is never true nor predicted.
    """
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"threshold mode must be one of {', '.join(THRESHOLD_MODES)}, got {mode!r}")
    if min_positives < 0:
        raise ValueError(f"min_positives must be at least 0, got {min_positives}")
    probabilities = np.asarray(probabilities)
    truth = as_label_matrix(labels, probabilities)
    if not np.isfinite(probabilities).all():
        raise ValueError("probabilities must be finite to choose thresholds (NaN or infinite outputs)")
    predicted, true_positive = _grid_counts(truth, probabilities)
    positives = truth.sum(axis=0)
    middle = int(np.flatnonzero(THRESHOLD_GRID == 0.5)[0])
    micro = _f1(true_positive.sum(axis=1), predicted.sum(axis=1), np.full(len(THRESHOLD_GRID), positives.sum()))
    best_global = int(_closest_best(micro, middle))
    global_threshold = float(THRESHOLD_GRID[best_global])
    classes = truth.shape[1]
    if mode == "global":
        return Thresholds(np.full(classes, global_threshold), mode, global_threshold, [])
    chosen = _closest_best(_f1(true_positive, predicted, positives), best_global)
    fallback = positives < min_positives
    chosen[fallback] = best_global
    return Thresholds(
        THRESHOLD_GRID[chosen].astype(np.float64), mode, global_threshold, np.flatnonzero(fallback).tolist()
    )


def save_thresholds(path: Path, thresholds: Thresholds, label_names: list[str]) -> None:
    """Write `thresholds` to `path` as JSON (see `Thresholds.as_dict`), atomically."""
    write_json_atomic(path, thresholds.as_dict(label_names))


def _is_probability(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def load_thresholds(path: Path, label_names: list[str]) -> np.ndarray:
    """The per-label thresholds saved at `path`, in the order of `label_names` ((C,) float64).

    The file must be a JSON object whose "per_label" maps exactly the run's label names to numbers in
    [0, 1]; anything else (missing file, not JSON, a missing or unknown label, a bad value) raises
    `RunDirError` with a one-line message naming the file.
    """
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("per_label"), dict):
        raise RunDirError(f"{path}: not a thresholds file (expected a JSON object with a 'per_label' mapping)")
    per_label: dict[str, Any] = data["per_label"]
    missing = [name for name in label_names if name not in per_label]
    if missing:
        raise RunDirError(f"{path}: no threshold for label {names_text(missing, 5)}; the file does not match this run")
    known = set(label_names)
    unknown = [name for name in per_label if name not in known]
    if unknown:
        raise RunDirError(
            f"{path}: threshold for unknown label {names_text(unknown, 5)}; the file does not match this run"
        )
    bad = [name for name in label_names if not _is_probability(per_label[name])]
    if bad:
        raise RunDirError(f"{path}: threshold of label {names_text(bad, 5)} is not a number in [0, 1]")
    return np.array([float(per_label[name]) for name in label_names], dtype=np.float64)
