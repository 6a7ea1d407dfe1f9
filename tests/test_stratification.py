"""Multi-label carving: iterative stratification (Sechidis et al. 2011) with every label kept in train."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from han.data.carving import carve_multilabel
from han.data.rows import RawSplit
from han.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
MODAPTE = ROOT.parent / "shared" / "data" / "reuters_modapte_train.csv"


def synthetic(n: int = 3000, n_labels: int = 40, seed: int = 7) -> RawSplit:
    """Zipf-like label frequencies, 1-4 labels per document, ~5% unlabelled, plus a 1-document and a 2-document label."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, n_labels + 1) ** 1.1
    weights /= weights.sum()
    labels: list[tuple[str, ...]] = []
    for _ in range(n):
        if rng.random() < 0.05:
            labels.append(())
            continue
        k = int(rng.integers(1, 5))
        labels.append(tuple(sorted(f"L{j:02d}" for j in rng.choice(n_labels, size=k, replace=False, p=weights))))
    labels[10] = tuple(sorted((*labels[10], "solo")))
    labels[20] = tuple(sorted((*labels[20], "pair")))
    labels[30] = tuple(sorted((*labels[30], "pair")))
    for i in (40, 50, 60):
        labels[i] = tuple(sorted((*labels[i], "trio")))
    return RawSplit(texts=[f"document {i}" for i in range(n)], labels=labels, rows=list(range(1, n + 1)))


def label_counts(split: RawSplit) -> Counter[str]:
    return Counter(label for labels in split.labels for label in labels)


def carved_fraction_deviation(split: RawSplit, carved: RawSplit, fraction: float, minimum: int = 10) -> float:
    """Mean absolute deviation from `fraction` of each label's share in `carved`, over labels with >= `minimum` documents."""
    total, part = label_counts(split), label_counts(carved)
    return float(np.mean([abs(part[label] / count - fraction) for label, count in total.items() if count >= minimum]))


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5, 0.8])
def test_every_label_stays_in_train_and_sizes_are_exact(fraction):
    split = synthetic()
    counts = label_counts(split)
    assert counts["solo"] == 1 and counts["pair"] == 2 and sum(1 for labels in split.labels if not labels) > 50
    train, carved = carve_multilabel(split, fraction, seed=0)
    assert len(carved) == round(fraction * len(split)) and len(train) == len(split) - len(carved)
    in_train, in_carved = label_counts(train), label_counts(carved)
    assert set(in_train) == set(counts)  # every label, the 1-document one included
    assert in_train["solo"] == 1 and in_carved["solo"] == 0
    assert in_train["pair"] == 1 and in_carved["pair"] == 1  # a 2-document label reaches both sides
    assert in_carved["trio"] >= 1
    assert set(in_carved) == set(counts) - {"solo"}


def test_disjoint_and_complete():
    split = synthetic()
    train, carved = carve_multilabel(split, 0.25, seed=3)
    assert not set(train.rows) & set(carved.rows)
    assert sorted(train.rows + carved.rows) == split.rows
    assert train.rows == sorted(train.rows) and carved.rows == sorted(carved.rows)
    for part in (train, carved):
        for row, text, labels in zip(part.rows, part.texts, part.labels, strict=True):
            assert text == split.texts[row - 1] and labels == split.labels[row - 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_label_proportions_beat_a_random_split(seed):
    split, fraction = synthetic(), 0.2
    _, carved = carve_multilabel(split, fraction, seed=seed)
    rng = np.random.default_rng(seed)
    plain = split.subset(sorted(rng.permutation(len(split))[: len(carved)].tolist()))
    stratified, random = (carved_fraction_deviation(split, c, fraction) for c in (carved, plain))
    assert stratified < random
    assert stratified < 0.02


def test_seeded():
    split = synthetic()
    first, again, other = (carve_multilabel(split, 0.2, seed=s)[1].rows for s in (5, 5, 6))
    assert first == again
    assert first != other


def test_warns_about_labels_the_carved_split_lacks(caplog):
    split = synthetic()
    with caplog.at_level(logging.WARNING, logger="han.data.carving"):
        carve_multilabel(split, 0.2, seed=0, where="corpus", name="validation")
    assert any("validation" in r.getMessage() and "'solo'" in r.getMessage() for r in caplog.records)


def test_warning_lists_at_most_20_labels(caplog):
    labels = [("common",)] * 40 + [(f"only{i:02d}", "common") for i in range(25)]
    split = RawSplit(texts=["x"] * len(labels), labels=labels, rows=list(range(1, len(labels) + 1)))
    with caplog.at_level(logging.WARNING, logger="han.data.carving"):
        train, _ = carve_multilabel(split, 0.2, seed=0)
    assert set(label_counts(train)) == set(label_counts(split))
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "'only19'" in message and "'only20'" not in message and "and 5 more" in message


def test_too_few_documents():
    one = RawSplit(texts=["x"], labels=[("a",)], rows=[1])
    with pytest.raises(DataError):
        carve_multilabel(one, 0.2, seed=0)


def test_small_splits_keep_labels_in_train():
    two = RawSplit(texts=["x", "y"], labels=[("a",), ("a", "b")], rows=[1, 2])
    train, carved = carve_multilabel(two, 0.5, seed=0)
    assert train.labels == [("a", "b")] and carved.labels == [("a",)]
    # more labels than train can hold one document of: the carved split shrinks, never to nothing
    five = RawSplit(texts=["x"] * 5, labels=[(c,) for c in "abcde"], rows=list(range(1, 6)))
    train, carved = carve_multilabel(five, 0.4, seed=0)
    assert len(carved) == 1 and len(train) == 4


def test_unlabelled_documents_are_shared_out():
    labels = [()] * 50 + [("a",)] * 50
    split = RawSplit(texts=["x"] * 100, labels=labels, rows=list(range(1, 101)))
    _, carved = carve_multilabel(split, 0.2, seed=0)
    assert len(carved) == 20
    assert Counter(carved.labels) == {(): 10, ("a",): 10}


def test_reuters_modapte_keeps_every_topic_in_train():
    if not MODAPTE.exists():
        pytest.skip(f"{MODAPTE} is absent")
    with MODAPTE.open(newline="", encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    labels = [tuple(sorted(t for t in r["topics"].split(";") if t)) for r in records]
    split = RawSplit(texts=[r["text"] for r in records], labels=labels, rows=list(range(1, len(records) + 1)))
    train, carved = carve_multilabel(split, 0.2, seed=0)
    counts, in_train, in_carved = label_counts(split), label_counts(train), label_counts(carved)
    assert len(carved) == round(0.2 * len(split))
    assert all(in_train[label] >= 1 for label, count in counts.items() if count >= 2)
    assert all(in_train[label] == 1 for label, count in counts.items() if count == 1)
    assert all(in_carved[label] >= 1 for label, count in counts.items() if count >= 2)
