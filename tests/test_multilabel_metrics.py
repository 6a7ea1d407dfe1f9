"""Multi-label metrics (han.evaluation.metrics.multilabel_metrics) and thresholds (han.evaluation.thresholds): the figures
agree with scikit-learn, tuned thresholds beat 0.5 where the sigmoid outputs are not calibrated, and the
saved thresholds file is checked when read back."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    hamming_loss,
    label_ranking_average_precision_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)

from han.errors import RunDirError
from han.evaluation.metrics import classification_metrics, multilabel_metrics, split_metrics
from han.evaluation.thresholds import (
    THRESHOLD_GRID,
    Thresholds,
    _grid_bins,
    choose_thresholds,
    load_thresholds,
    predict_label_sets,
    save_thresholds,
)

NAMES = ["arts", "business", "climate", "health", "politics", "science", "sport"]


def random_split(seed: int, documents: int = 80, labels: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels (one label never present, some documents with none) and probabilities loosely tied to them."""
    rng = np.random.default_rng(seed)
    truth = (rng.random((documents, labels)) < 0.3).astype(np.int8)
    truth[:, 3] = 0  # a label absent from the split
    truth[:5] = 0  # documents with no label
    probabilities = np.clip(0.25 * truth + 0.75 * rng.random((documents, labels)), 0.0, 1.0)
    return truth, probabilities


# --- multilabel_metrics against scikit-learn ----------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_metrics_match_sklearn(seed):
    truth, probabilities = random_split(seed)
    thresholds = np.array([0.5, 0.4, 0.6, 0.5, 0.3, 0.7, 0.55])
    metrics = multilabel_metrics(truth, probabilities, NAMES, thresholds)
    predicted = (probabilities >= thresholds).astype(np.int8)
    assert predicted.any() and not predicted.all()

    def same(key: str, expected: float) -> None:
        assert metrics[key] == pytest.approx(expected, abs=1e-12), key

    assert metrics["documents"] == len(truth)
    same("exact_match", accuracy_score(truth, predicted))
    same("accuracy", accuracy_score(truth, predicted))
    for average in ("micro", "macro", "weighted", "samples"):
        same(f"{average}_f1", f1_score(truth, predicted, average=average, zero_division=0))
    for average in ("micro", "macro"):
        same(f"{average}_precision", precision_score(truth, predicted, average=average, zero_division=0))
        same(f"{average}_recall", recall_score(truth, predicted, average=average, zero_division=0))
    same("hamming_loss", hamming_loss(truth, predicted))
    with_labels = truth.any(axis=1)
    same(
        "label_ranking_average_precision",
        label_ranking_average_precision_score(truth[with_labels], probabilities[with_labels]),
    )
    # The absent label counts 0 in the macro average over every label, and is left out of macro_f1_present.
    per_f1 = f1_score(truth, predicted, average=None, zero_division=0)
    same("macro_f1_present", per_f1[truth.any(axis=0)].mean())
    assert metrics["macro_f1_present"] > metrics["macro_f1"]
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    assert list(metrics["per_label"]) == NAMES
    for i, name in enumerate(NAMES):
        row = metrics["per_label"][name]
        assert row == pytest.approx(
            {
                "precision": precision[i],
                "recall": recall[i],
                "f1": f1[i],
                "support": support[i],
                "threshold": thresholds[i],
            }
        )
        assert isinstance(row["support"], int)
    assert metrics["per_label"]["health"]["support"] == 0
    assert metrics["labels_per_document"] == pytest.approx(
        {"true": truth.sum(axis=1).mean(), "predicted": predicted.sum(axis=1).mean()}
    )
    json.dumps(metrics, allow_nan=False)  # plain JSON values only


def test_precision_at_k_and_ranking_precision_by_hand():
    truth = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=np.int8)
    probabilities = np.array([[0.9, 0.8, 0.1, 0.2], [0.1, 0.2, 0.3, 0.4], [0.6, 0.1, 0.2, 0.3]])
    metrics = multilabel_metrics(truth, probabilities, NAMES[:4], np.full(4, 0.5))
    # Document 0: the top label (0.9) is wrong; the top three are labels 0, 1, 3, one of them true.
    # Document 1: the top label (0.4) is right; one true label among the top three.
    # Document 2 has no true label and is skipped; k = 5 is above the 4 labels and left out.
    assert metrics["precision_at_k"] == pytest.approx({"1": 0.5, "3": 1 / 3})
    # Ranking precision: document 0 ranks its true labels 2nd (1 of 2 above) and 4th (2 of 4), document 1 first.
    assert metrics["label_ranking_average_precision"] == pytest.approx((0.5 * (1 / 2 + 2 / 4) + 1.0) / 2)
    assert label_ranking_average_precision_score(truth, probabilities) == pytest.approx((0.5 + 1 + 1) / 3)


def test_precision_at_k_counts_the_k_most_probable_labels():
    rng = np.random.default_rng(5)
    truth = (rng.random((50, 12)) < 0.25).astype(np.int8)
    probabilities = rng.random((50, 12))
    metrics = multilabel_metrics(truth, probabilities, [f"l{i}" for i in range(12)], np.full(12, 0.5))
    keep = truth.any(axis=1)
    order = np.argsort(-probabilities, axis=1)
    for k in (1, 3, 5):
        expected = np.mean([truth[i, order[i, :k]].sum() / k for i in np.flatnonzero(keep)])
        assert metrics["precision_at_k"][str(k)] == pytest.approx(expected)


def test_without_any_true_label_ranking_figures_are_null():
    truth = np.zeros((3, 2), dtype=np.int8)
    metrics = multilabel_metrics(truth, np.full((3, 2), 0.2), ["a", "b"], np.full(2, 0.5))
    assert metrics["label_ranking_average_precision"] is None
    assert metrics["precision_at_k"] == {"1": None}
    assert metrics["macro_f1_present"] is None
    assert metrics["exact_match"] == 1.0 and metrics["hamming_loss"] == 0.0


def test_loss_is_the_mean_over_documents_of_the_summed_binary_cross_entropy():
    truth = np.array([[1, 0], [0, 1]], dtype=bool)
    probabilities = np.array([[0.8, 0.3], [1.0, 0.0]])  # document 1 is certain and wrong: clipped at 1e-7
    metrics = multilabel_metrics(truth, probabilities, ["a", "b"], np.full(2, 0.5))
    first = -math.log(0.8) - math.log(0.7)
    second = -2 * math.log(1e-7)
    assert metrics["loss"] == pytest.approx((first + second) / 2, rel=1e-6)


def test_shapes_are_checked():
    truth, probabilities = random_split(0)
    thresholds = np.full(7, 0.5)
    with pytest.raises(ValueError, match="same shape"):
        multilabel_metrics(truth, probabilities[:, :6], NAMES, thresholds)
    with pytest.raises(ValueError, match="label names"):
        multilabel_metrics(truth, probabilities, NAMES[:6], thresholds)
    with pytest.raises(ValueError, match="thresholds must have shape"):
        multilabel_metrics(truth, probabilities, NAMES, thresholds[:6])
    with pytest.raises(ValueError, match="documents, labels"):
        multilabel_metrics(truth[:, 0], probabilities[:, 0], NAMES, thresholds)
    with pytest.raises(ValueError, match="0/1"):
        multilabel_metrics(truth * 2, probabilities, NAMES, thresholds)
    with pytest.raises(ValueError, match="at least one document"):
        multilabel_metrics(truth[:0], probabilities[:0], NAMES, thresholds)


# --- prediction ---------------------------------------------------------------------------------------


def test_a_label_is_predicted_at_its_threshold():
    predicted = predict_label_sets(np.array([[0.5, 0.3, 0.29999]]), np.array([0.5, 0.3, 0.3]))
    assert predicted.tolist() == [[True, True, False]]


def test_at_least_one_gives_every_document_its_most_probable_label():
    probabilities = np.array([[0.1, 0.4, 0.2], [0.7, 0.9, 0.1], [0.3, 0.05, 0.45], [0.0, 0.0, 0.0]])
    thresholds = np.full(3, 0.5)
    plain = predict_label_sets(probabilities, thresholds)
    assert plain.sum(axis=1).tolist() == [0, 2, 0, 0]
    forced = predict_label_sets(probabilities, thresholds, at_least_one=True)
    assert forced.tolist() == [[False, True, False], [True, True, False], [False, False, True], [True, False, False]]
    truth = np.array([[0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    assert multilabel_metrics(truth, probabilities, ["a", "b", "c"], thresholds)["exact_match"] == 0.25
    metrics = multilabel_metrics(truth, probabilities, ["a", "b", "c"], thresholds, at_least_one=True)
    assert metrics["exact_match"] == 1.0 and metrics["labels_per_document"]["predicted"] == 1.25


# --- choosing thresholds ------------------------------------------------------------------------------


def uncalibrated(seed: int, documents: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Two labels the model scores on different scales: label 0's positives around 0.3 (negatives around
    0.1), label 1's positives around 0.8 (negatives around 0.5)."""
    rng = np.random.default_rng(seed)
    truth = rng.random((documents, 2)) < 0.3
    centre = np.where(truth, [0.3, 0.8], [0.1, 0.5])
    return truth.astype(np.int8), np.clip(centre + rng.normal(0, 0.03, truth.shape), 0, 1)


def test_thresholds_tuned_on_validation_beat_one_half_on_held_out_data():
    validation, held_out = uncalibrated(seed=0), uncalibrated(seed=1)
    chosen = choose_thresholds(*validation)
    assert chosen.mode == "per_label" and chosen.fallback_labels == []
    assert 0.15 <= chosen.values[0] <= 0.25 and 0.6 <= chosen.values[1] <= 0.7  # one scale each
    truth, probabilities = held_out
    fixed = f1_score(truth, predict_label_sets(probabilities, np.full(2, 0.5)), average=None, zero_division=0)
    tuned = f1_score(truth, predict_label_sets(probabilities, chosen.values), average=None, zero_division=0)
    assert fixed[0] == 0.0  # 0.5 never predicts label 0
    assert tuned.min() > 0.95
    by_name = multilabel_metrics(truth, probabilities, ["low", "high"], chosen.values)
    assert (
        by_name["micro_f1"]
        > 0.95
        > multilabel_metrics(truth, probabilities, ["low", "high"], np.full(2, 0.5))["micro_f1"]
    )
    one = choose_thresholds(*validation, mode="global")
    assert one.values.tolist() == [one.global_threshold] * 2 and one.global_threshold in THRESHOLD_GRID
    assert one.global_threshold == chosen.global_threshold


def test_a_label_with_too_few_positives_keeps_the_global_threshold():
    truth, probabilities = uncalibrated(seed=2)
    rare = np.zeros((len(truth), 1), dtype=np.int8)
    rare[:3] = 1  # three positives, scored low: alone it would pick the lowest threshold
    truth = np.hstack([truth, rare])
    probabilities = np.hstack([probabilities, np.where(rare == 1, 0.07, 0.01)])
    chosen = choose_thresholds(truth, probabilities, min_positives=5)
    assert chosen.fallback_labels == [2] and chosen.values[2] == chosen.global_threshold
    assert chosen.as_dict(["low", "high", "rare"])["fallback"] == ["rare"]
    assert choose_thresholds(truth, probabilities, min_positives=3).values[2] == 0.05


def test_ties_go_to_one_half_then_to_the_global_threshold():
    truth = np.array([[1, 0]] * 10 + [[0, 1]] * 10 + [[0, 0]] * 10, dtype=np.int8)
    # Label 0 is separated by any threshold in 0.05 .. 0.90, label 1 only by 0.05 .. 0.20.
    probabilities = np.where(truth == 1, [0.9, 0.2], 0.01)
    chosen = choose_thresholds(truth, probabilities, min_positives=1)
    assert chosen.global_threshold == 0.2  # best micro-F1 (1.0) from 0.05 to 0.20: the one closest to 0.5
    assert chosen.values.tolist() == [0.2, 0.2]  # label 0's tie goes to the global threshold, not to 0.5
    separated = np.where(truth == 1, 0.9, 0.01)
    assert choose_thresholds(truth, separated).global_threshold == 0.5


def brute_force(truth: np.ndarray, probabilities: np.ndarray, min_positives: int) -> tuple[float, list[float]]:
    """The global and per-label thresholds by scikit-learn F1 at each grid value, ties as documented."""
    grid = list(THRESHOLD_GRID)

    def pick(scores: list[float], target: int) -> int:
        best = max(scores)
        return min((i for i, s in enumerate(scores) if s == best), key=lambda i: (abs(i - target), i))

    micro = [f1_score(truth, probabilities >= t, average="micro", zero_division=0) for t in grid]
    middle = grid.index(0.5)
    best_global = pick(micro, middle)
    values = []
    for label in range(truth.shape[1]):
        if truth[:, label].sum() < min_positives:
            values.append(grid[best_global])
            continue
        scores = [f1_score(truth[:, label], probabilities[:, label] >= t, zero_division=0) for t in grid]
        values.append(grid[pick(scores, best_global)])
    return grid[best_global], values


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_choose_thresholds_matches_a_brute_force_search(dtype):
    rng = np.random.default_rng(7)
    truth = (rng.random((300, 9)) < 0.2).astype(np.int8)
    truth[:, 8] = 0
    truth[:2, 8] = 1  # too few positives at min_positives=3
    # Probabilities on a 0.01 grid: many land exactly on a threshold, where >= must decide.
    probabilities = (np.round(rng.random((300, 9)) * 100) / 100 * 0.7 + 0.3 * truth).round(2).astype(dtype)
    chosen = choose_thresholds(truth, probabilities, min_positives=3)
    global_threshold, values = brute_force(truth, probabilities.astype(np.float64), min_positives=3)
    assert chosen.global_threshold == global_threshold
    assert chosen.values.tolist() == values
    assert chosen.fallback_labels == [8]


def test_grid_bins_agree_with_exact_comparisons_at_the_boundaries():
    for dtype in (np.float64, np.float32):
        base = np.concatenate([THRESHOLD_GRID, [0.0, 1.0, -0.5, 3.0, 1e-30]]).astype(dtype)
        values = np.concatenate([base, np.nextafter(base, dtype(-1)), np.nextafter(base, dtype(2))])
        expected = (values.astype(np.float64)[:, None] >= THRESHOLD_GRID).sum(axis=1)
        np.testing.assert_array_equal(_grid_bins(values), expected)


def test_choose_thresholds_refuses_bad_input():
    truth, probabilities = uncalibrated(seed=0, documents=20)
    with pytest.raises(ValueError, match="mode"):
        choose_thresholds(truth, probabilities, mode="per_class")
    with pytest.raises(ValueError, match="finite"):
        choose_thresholds(truth, np.where(truth == 1, np.nan, probabilities))
    with pytest.raises(ValueError, match="same shape"):
        choose_thresholds(truth, probabilities[:10])


# --- the thresholds file ------------------------------------------------------------------------------


def test_thresholds_file_round_trip(tmp_path):
    path = tmp_path / "thresholds.json"
    thresholds = Thresholds(np.array([0.25, 0.5, 0.05]), "per_label", 0.5, [1])
    save_thresholds(path, thresholds, ["a", "b", "c"])
    assert json.loads(path.read_text()) == {
        "mode": "per_label",
        "global": 0.5,
        "per_label": {"a": 0.25, "b": 0.5, "c": 0.05},
        "fallback": ["b"],
    }
    assert load_thresholds(path, ["a", "b", "c"]).tolist() == [0.25, 0.5, 0.05]
    assert load_thresholds(path, ["c", "a", "b"]).tolist() == [0.05, 0.25, 0.5]  # in the order asked for


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"per_label": {"a": 0.3}}, "no threshold for label 'b'"),
        ({"per_label": {"a": 0.3, "b": 1.5}}, "'b' is not a number in \\[0, 1\\]"),
        ({"per_label": {"a": 0.3, "b": -0.1}}, "not a number in"),
        ({"per_label": {"a": 0.3, "b": "0.5"}}, "not a number in"),
        ({"per_label": {"a": 0.3, "b": True}}, "not a number in"),
        ({"per_label": {"a": 0.3, "b": None}}, "not a number in"),
        ({"per_label": {"a": 0.3, "b": 0.5, "z": 0.5}}, "unknown label 'z'"),
        ({"per_label": [0.3, 0.5]}, "not a thresholds file"),
        ([0.3, 0.5], "not a thresholds file"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_thresholds_file_is_refused_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "thresholds.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(RunDirError, match=reason) as raised:
        load_thresholds(path, ["a", "b"])
    message = str(raised.value)
    assert str(path) in message and "\n" not in message


def test_a_missing_thresholds_file_is_refused(tmp_path):
    with pytest.raises(RunDirError, match="missing"):
        load_thresholds(tmp_path / "thresholds.json", ["a"])


# --- single-label metrics -----------------------------------------------------------------------------


def test_single_label_micro_f1_is_accuracy():
    labels = np.array([0, 1, 2, 2, 1, 0, 2])
    probabilities = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.1, 0.3, 0.6],
            [0.2, 0.2, 0.6],
            [0.5, 0.1, 0.4],
            [0.1, 0.8, 0.1],
            [0.6, 0.3, 0.1],
            [0.3, 0.3, 0.4],
        ]
    )
    metrics = classification_metrics(labels, probabilities, ["x", "y", "z"])
    assert metrics["accuracy"] == pytest.approx(5 / 7)
    assert metrics["micro_f1"] == pytest.approx(metrics["accuracy"])
    assert metrics["micro_f1"] != pytest.approx(metrics["macro_f1"])


def test_split_metrics_picks_the_task_by_the_shape_of_the_labels():
    labels = np.array([0, 1, 1])
    probabilities = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert split_metrics(labels, probabilities, ["x", "y"]) == classification_metrics(labels, probabilities, ["x", "y"])
    truth = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.int8)
    at_half = split_metrics(truth, probabilities, ["x", "y"])
    assert at_half == multilabel_metrics(truth, probabilities, ["x", "y"], np.full(2, 0.5))
    tuned = split_metrics(truth, probabilities, ["x", "y"], np.array([0.5, 0.35]))
    assert tuned["exact_match"] == 1.0 and at_half["exact_match"] == pytest.approx(2 / 3)
    forced = split_metrics(truth, probabilities, ["x", "y"], np.full(2, 0.95), at_least_one=True)
    assert forced["labels_per_document"]["predicted"] == 1.0
