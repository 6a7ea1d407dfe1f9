"""The paired bootstrap of a split's metric (han.evaluation.significance), which training uses to test an epoch
against the linear start."""

from __future__ import annotations

import numpy as np
import pytest

from han.evaluation.metrics import split_metrics
from han.evaluation.significance import document_statistics, metric_from_sums, paired_metric_bootstrap

METRICS = ("accuracy", "macro_f1", "micro_f1", "loss")


def single_label(rng: np.random.Generator, documents: int = 400, classes: int = 5) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, classes, documents)
    labels[:classes] = np.arange(classes)  # every class present
    return labels, rng.dirichlet(np.ones(classes), documents).astype(np.float32)


def sharpened(labels: np.ndarray, probabilities: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """`probabilities` with the true class pushed up on a random `share` of the documents: a better model."""
    better = probabilities.copy()
    chosen = rng.random(len(labels)) < share
    better[chosen, labels[chosen]] += 3.0
    return better / better.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("metric", METRICS)
def test_summed_document_statistics_give_the_splits_own_metric(metric):
    rng = np.random.default_rng(0)
    labels, probabilities = single_label(rng)
    names = [f"c{i}" for i in range(probabilities.shape[1])]
    sums = document_statistics(labels, probabilities, metric).sum(axis=0)[None, :]
    expected = split_metrics(labels, probabilities, names)[metric]
    assert metric_from_sums(sums, metric, len(labels))[0] == pytest.approx(expected, rel=1e-6)
    truth = rng.random((300, 4)) < 0.3  # multi-label, scored at 0.5 as validation is
    scores = rng.random((300, 4)).astype(np.float32)
    sums = document_statistics(truth, scores, metric).sum(axis=0)[None, :]
    expected = split_metrics(truth.astype(np.int8), scores, names[:4])[metric]
    assert metric_from_sums(sums, metric, len(truth))[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("documents", [400, 3_000])
@pytest.mark.parametrize("metric", METRICS)
def test_a_clearly_better_model_is_ahead_beyond_chance_and_a_copy_is_not(metric, documents):
    rng = np.random.default_rng(1)
    labels, weaker = single_label(rng, documents)
    stronger = sharpened(labels, weaker, 0.5, rng)
    gain, p_value = paired_metric_bootstrap(labels, stronger, weaker, metric)
    assert gain > 0 and p_value < 0.01  # for the loss too: the gain is the fall in loss
    assert gain == pytest.approx(paired_metric_bootstrap(labels, stronger, weaker, metric, resamples=1)[0])
    backwards, p_backwards = paired_metric_bootstrap(labels, weaker, stronger, metric)
    assert backwards == pytest.approx(-gain) and p_backwards == p_value
    assert paired_metric_bootstrap(labels, weaker, weaker.copy(), metric) == (0.0, 1.0)


def test_a_lead_of_a_few_documents_on_a_small_split_is_within_chance():
    labels = np.repeat(np.arange(4), 45)  # 180 documents, BBC's validation size
    start = np.eye(4, dtype=np.float32)[labels] * 0.9 + 0.025
    wrong = np.arange(0, 180, 30)  # the start gets 6 documents wrong ...
    start[wrong] = np.roll(start[wrong], 1, axis=1)
    network = start.copy()
    network[wrong[:2]] = np.eye(4, dtype=np.float32)[labels[wrong[:2]]]  # ... the network 4 of them
    gain, p_value = paired_metric_bootstrap(labels, network, start, "macro_f1")
    assert gain > 0 and p_value > 0.05
    assert paired_metric_bootstrap(labels, network, start, "macro_f1", seed=3)[0] == gain  # the gain is the split's


def test_the_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(2)
    labels, weaker = single_label(rng, documents=150)
    stronger = sharpened(labels, weaker, 0.1, rng)
    first = paired_metric_bootstrap(labels, stronger, weaker, "macro_f1", seed=7)
    assert paired_metric_bootstrap(labels, stronger, weaker, "macro_f1", seed=7) == first


def test_an_unknown_metric_is_refused():
    labels, probabilities = single_label(np.random.default_rng(3))
    with pytest.raises(ValueError, match="metric must be"):
        document_statistics(labels, probabilities, "weighted_f1")


def test_drawing_document_indices_resamples_as_the_multinomial_does(monkeypatch):
    """With nearly as many distinct documents as documents the draw is of indices; both give one distribution."""
    from han.evaluation import significance

    rng = np.random.default_rng(4)
    labels, weaker = single_label(rng, documents=2_000)
    jittered = weaker * np.exp(rng.normal(0, 0.05, weaker.shape))  # a difference chance can reverse
    jittered /= jittered.sum(axis=1, keepdims=True)
    by_index = paired_metric_bootstrap(labels, jittered, weaker, "loss", resamples=4_000)
    monkeypatch.setattr(significance, "_INDEX_DRAWS_ABOVE", 0)  # always the multinomial
    by_multinomial = paired_metric_bootstrap(labels, jittered, weaker, "loss", resamples=4_000)
    assert by_index[0] == by_multinomial[0] and 0.02 < by_multinomial[1] < 0.98
    assert abs(by_index[1] - by_multinomial[1]) < 0.05
