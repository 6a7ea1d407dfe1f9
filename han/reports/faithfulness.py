"""The faithfulness check of attention: does removing the most-attended sentence change the prediction more
than removing a random other sentence?

Multiclass: the drop is the fall in the probability of the class predicted on the full document, and a flip
is a change of the predicted class. Multi-label (a run's thresholds given): the drop is the mean, over the
labels predicted on the full document (at the run's thresholds), of the fall in their probabilities, and a
flip is any change of the predicted label set; documents predicted with no label have no drop to measure
and are not eligible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from han.evaluation.scoring import SplitScores, predict_probabilities
from han.evaluation.thresholds import predict_label_sets
from han.reports.documents import round6
from han.store.encoded import EncodedSplit


@dataclass
class Faithfulness:
    """Change in the predicted class probability when one sentence is removed (positive: the model got less sure).

    Multi-label: the mean change over the labels predicted on the full document; a flip is a changed label set.
    """

    documents: int  # documents checked (those with at least two sentences, sampled)
    eligible: int  # documents with at least two sentences (multi-label: and at least one predicted label)
    top_drop: np.ndarray  # removing the most-attended sentence
    random_drop: np.ndarray  # removing a random other sentence
    top_flips: int  # predictions that changed
    random_flips: int
    top_larger: int  # documents where removing the top sentence lowered the probability more
    multilabel: bool = False

    def summary(self) -> dict[str, Any]:
        """The figures as a dict: mean, median, p10, p90 and flips of both drops, and the top-drop-larger share."""

        def describe(drops: np.ndarray, flips: int) -> dict[str, float]:
            return {
                "mean": round6(drops.mean()),
                "median": round6(np.median(drops)),
                "p10": round6(np.quantile(drops, 0.1)),
                "p90": round6(np.quantile(drops, 0.9)),
                "flip_share": round6(flips / len(drops)),
                "flips": flips,
            }

        return {
            "documents": self.documents,
            "eligible": self.eligible,
            "top_sentence_removed": describe(self.top_drop, self.top_flips),
            "random_sentence_removed": describe(self.random_drop, self.random_flips),
            "top_drop_larger_share": round6(self.top_larger / self.documents),
        }


def split_structure(split: EncodedSplit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Document of each sentence, position of each sentence in its document, sentence of each token."""
    counts = split.sentence_counts
    document_of_sentence = np.repeat(np.arange(len(split)), counts)
    position = np.arange(len(document_of_sentence)) - split.document_offsets[document_of_sentence]
    sentence_of_token = np.repeat(np.arange(len(document_of_sentence)), np.diff(split.sentence_offsets))
    return document_of_sentence, position, sentence_of_token


def top_sentences(split: EncodedSplit, sentence_weights: np.ndarray, document_of_sentence: np.ndarray) -> np.ndarray:
    """Global id of the most-attended sentence of every document (the first one on ties)."""
    order = np.lexsort((np.arange(len(sentence_weights)), -sentence_weights, document_of_sentence))
    return order[split.document_offsets[:-1]]


def faithfulness_check(
    model: torch.nn.Module,
    split: EncodedSplit,
    attention: SplitScores,
    documents: int,
    seed: int,
    batch_size: int,
    precision: str = "fp32",
    thresholds: np.ndarray | None = None,
    at_least_one: bool = False,
) -> Faithfulness | None:
    """Remove the most-attended sentence, or a random other one, from sampled documents; measure the change.

    Only documents with at least two sentences are eligible (removing a sole sentence leaves nothing).
    The change is the drop in the probability of the class predicted on the full document.

    With `thresholds` (a multi-label run's (C,) thresholds, applied with `at_least_one` as `han predict`
    does), the change is the mean, over the labels predicted on the full document, of the drop in each
    one's probability; a flip is any change of the predicted label set. Documents predicted with no label
    are not eligible (there is no predicted label whose probability could drop).
    """
    rng = np.random.default_rng(seed)
    counts = split.sentence_counts
    multilabel = thresholds is not None
    predicted_sets = None
    if thresholds is not None:
        predicted_sets = predict_label_sets(attention.probabilities, thresholds, at_least_one)
        eligible = np.flatnonzero((counts >= 2) & predicted_sets.any(axis=1))
    else:
        eligible = np.flatnonzero(counts >= 2)
    if len(eligible) == 0 or documents == 0:
        return None
    sample = np.sort(rng.choice(eligible, size=min(documents, len(eligible)), replace=False))
    document_of_sentence, _, _ = split_structure(split)
    assert attention.sentence_weights is not None, "score the split with attention=True"
    top = top_sentences(split, attention.sentence_weights, document_of_sentence)[sample]
    first = split.document_offsets[sample]
    # A random sentence other than the top one: draw among count-1 positions and skip over the top.
    top_position = top - first
    random_position = rng.integers(0, counts[sample] - 1)
    random_position = random_position + (random_position >= top_position)
    random = first + random_position

    def without(removed: np.ndarray) -> EncodedSplit:
        documents_left: list[list[Any]] = []
        for d, gone in zip(sample, removed, strict=True):
            documents_left.append(
                [
                    split.tokens[split.sentence_offsets[s] : split.sentence_offsets[s + 1]]
                    for s in range(split.document_offsets[d], split.document_offsets[d + 1])
                    if s != gone
                ]
            )
        return EncodedSplit.from_documents(documents_left, split.labels[sample])

    before = attention.probabilities[sample]  # (n, C)
    after_top = predict_probabilities(model, without(top), batch_size, precision)
    after_random = predict_probabilities(model, without(random), batch_size, precision)
    if predicted_sets is not None and thresholds is not None:
        chosen = predicted_sets[sample]  # (n, C) bool, at least one label per row

        def mean_drop(after: np.ndarray) -> np.ndarray:
            return np.where(chosen, before - after, 0.0).sum(axis=1) / chosen.sum(axis=1)

        def set_flips(after: np.ndarray) -> int:
            return int((predict_label_sets(after, thresholds, at_least_one) != chosen).any(axis=1).sum())

        top_drop, random_drop = mean_drop(after_top), mean_drop(after_random)
        return Faithfulness(
            documents=len(sample),
            eligible=len(eligible),
            top_drop=top_drop,
            random_drop=random_drop,
            top_flips=set_flips(after_top),
            random_flips=set_flips(after_random),
            top_larger=int((top_drop > random_drop).sum()),
            multilabel=multilabel,
        )
    predicted = before.argmax(axis=1)
    rows = np.arange(len(sample))
    top_drop = before[rows, predicted] - after_top[rows, predicted]
    random_drop = before[rows, predicted] - after_random[rows, predicted]
    return Faithfulness(
        documents=len(sample),
        eligible=len(eligible),
        top_drop=top_drop,
        random_drop=random_drop,
        top_flips=int((after_top.argmax(axis=1) != predicted).sum()),
        random_flips=int((after_random.argmax(axis=1) != predicted).sum()),
        top_larger=int((top_drop > random_drop).sum()),
    )
