"""Corpus attention statistics of a split: per class the words with the highest mean attention, attention
over sentence positions, and the weight distributions of chosen words (Yang et al. 2016, Fig. 3/4),
with the faithfulness check on a sample of the documents.

Multi-label runs (task: multilabel): the statistics are grouped by each label, and a document counts in the
group of every label it has (its true label set with group_by true, its predicted set, at the run's
thresholds, with group_by predicted). A document with two labels counts in both groups; a document with
no label counts in none (and is counted in `unlabelled_documents`). "accuracy" is then exact match.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from han.config import CorpusReportConfig
from han.errors import DataError
from han.evaluation.scoring import score_split
from han.progress import Progress
from han.reports.documents import read_documents, round6
from han.reports.faithfulness import Faithfulness, faithfulness_check, split_structure, top_sentences
from han.serving.trained import TrainedRun
from han.store.encoded import EncodedSplit
from han.store.vocab import PAD_ID, UNK_ID

log = logging.getLogger(__name__)


@dataclass
class WordAttention:
    """A word's mean attention weight over its `count` occurrences in the documents of one class."""

    word: str
    mean: float  # mean word weight over its occurrences
    count: int


@dataclass
class WeightDistribution:
    """The weights one word received in the documents of one class."""

    count: int
    mean: float | None
    median: float | None
    histogram: list[int]  # counts per bin of [0, 1]


@dataclass
class CorpusStatistics:
    """Attention over a split, per class (true or predicted)."""

    label_names: list[str]
    group_by: str
    source: str
    run: str
    documents: int
    class_documents: list[int]
    accuracy: float | None
    top_words: list[list[WordAttention]]  # per class
    positions: int
    position_mean: list[list[float | None]]  # per class, per position: mean sentence weight
    position_documents: list[list[int]]  # per class, per position: documents with a sentence there
    top_position_share: list[list[float]]  # per class, per position: share of documents whose top sentence is there
    bins: int
    chosen_words: dict[str, list[WeightDistribution] | None]  # None: not in the vocabulary
    faithfulness: Faithfulness | None
    options: CorpusReportConfig = field(default_factory=CorpusReportConfig)
    multilabel: bool = False  # groups are labels; a document counts in each label it has
    unlabelled_documents: int = 0  # multi-label: documents in no group (an empty label set)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        names = self.label_names
        task: dict[str, Any] = (
            {"task": "multilabel", "documents_without_label": self.unlabelled_documents} if self.multilabel else {}
        )
        return {
            "run": self.run,
            "source": self.source,
            "group_by": self.group_by,
            "documents": self.documents,
            **task,
            "accuracy": None if self.accuracy is None else round6(self.accuracy),
            "classes": {
                name: {
                    "documents": self.class_documents[c],
                    "top_words": [
                        {"word": w.word, "mean": round6(w.mean), "count": w.count} for w in self.top_words[c]
                    ],
                    "position_mean": [None if m is None else round6(m) for m in self.position_mean[c]],
                    "position_documents": self.position_documents[c],
                    "top_position_share": [round6(s) for s in self.top_position_share[c]],
                }
                for c, name in enumerate(names)
            },
            "positions": self.positions,
            "chosen_words": {
                word: None
                if dists is None
                else {
                    name: {
                        "count": d.count,
                        "mean": None if d.mean is None else round6(d.mean),
                        "median": None if d.median is None else round6(d.median),
                        "histogram": d.histogram,
                    }
                    for name, d in zip(names, dists, strict=True)
                }
                for word, dists in self.chosen_words.items()
            },
            "faithfulness": None if self.faithfulness is None else self.faithfulness.summary(),
        }


def load_split_for_corpus(trained: TrainedRun, source: Path | None, split: str) -> tuple[EncodedSplit, str]:
    """The run's preprocessed split, or the documents of `source` encoded like it."""
    trained.require_attention("han corpus-report")  # before any input is read
    if source is None:
        return trained.run.load_split(split), f"{trained.run.root} [{split}]"
    documents = read_documents(trained, source, None)
    if not documents.texts:
        raise DataError(f"{source}: the input holds no documents")
    return trained.encode(documents.texts, documents.labels), documents.source


def _is_word(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def corpus_statistics(
    trained: TrainedRun,
    split: EncodedSplit,
    options: CorpusReportConfig,
    source: str = "",
    progress: Progress | None = None,
) -> CorpusStatistics:
    """Per-class attention statistics of an encoded split, and the faithfulness check on a sample of it.

    Multi-label runs: per label, over the documents that have it (true or predicted set, see the module doc).
    """
    trained.require_attention("han corpus-report")
    label_names = trained.label_names
    num_classes = len(label_names)
    attention = score_split(
        trained.model, split, trained.config.train.eval_batch_size, trained.config.precision, True, progress
    )
    assert attention.sentence_weights is not None and attention.word_weights is not None
    multilabel = trained.multilabel
    predicted = attention.probabilities.argmax(axis=1)
    predicted_sets = trained.predicted_sets(attention.probabilities) if multilabel else None
    # An input without labels is encoded with -1 labels (one per document, or a row of them when multi-label).
    has_labels = bool(len(split)) and bool((split.labels >= 0).all()) and (split.labels.ndim == 2) == multilabel
    if options.group_by == "true" and not has_labels:
        log.info("the documents have no true labels; grouping by the predicted class")
    group_by = options.group_by if has_labels else "predicted"
    # membership[d, c]: document d is in the group of class c (one class per document unless multi-label)
    if predicted_sets is not None:
        membership = split.labels.astype(bool) if group_by == "true" else predicted_sets
    else:
        document_class = split.labels if group_by == "true" else predicted
        membership = document_class[:, None] == np.arange(num_classes)[None, :]
    document_of_sentence, position, sentence_of_token = split_structure(split)
    document_of_token = document_of_sentence[sentence_of_token]
    vocab_words = trained.vocab.words
    vocab_size = len(vocab_words)
    listable = np.array([_is_word(w) for w in vocab_words], dtype=bool)
    listable[[PAD_ID, UNK_ID]] = False

    def tokens_in(c: int) -> np.ndarray:
        return membership[:, c][document_of_token]

    top_words: list[list[WordAttention]] = []
    for c in range(num_classes):
        mask = tokens_in(c)
        counts = np.bincount(split.tokens[mask], minlength=vocab_size)
        sums = np.bincount(split.tokens[mask], weights=attention.word_weights[mask], minlength=vocab_size)
        means = np.divide(sums, counts, out=np.zeros(vocab_size), where=counts > 0)
        candidates = np.flatnonzero(listable & (counts >= options.min_word_count))
        best = candidates[np.lexsort((candidates, -means[candidates]))][: options.top_words]
        top_words.append([WordAttention(vocab_words[i], float(means[i]), int(counts[i])) for i in best])

    positions = options.positions
    clipped = np.minimum(position, positions - 1)
    top = top_sentences(split, attention.sentence_weights, document_of_sentence)
    position_mean, position_documents, top_position_share = [], [], []
    for c in range(num_classes):
        mask = membership[:, c][document_of_sentence] & (position < positions)
        n = np.bincount(position[mask], minlength=positions)
        sums = np.bincount(position[mask], weights=attention.sentence_weights[mask], minlength=positions)
        position_mean.append([float(s / k) if k else None for s, k in zip(sums, n, strict=True)])
        position_documents.append(n.tolist())
        in_class = membership[:, c]
        top_counts = np.bincount(clipped[top[in_class]], minlength=positions)
        total = int(in_class.sum())
        top_position_share.append([float(k / total) if total else 0.0 for k in top_counts])

    words = list(options.words)
    if not words:
        for c in (0, num_classes - 1):
            if top_words[c] and top_words[c][0].word not in words:
                words.append(top_words[c][0].word)
    edges = np.linspace(0.0, 1.0, options.bins + 1)
    chosen: dict[str, list[WeightDistribution] | None] = {}
    for word in words:
        key = word.lower() if trained.config.preprocess.lowercase else word
        word_id = trained.vocab.index.get(key)
        if word_id is None or word_id in (PAD_ID, UNK_ID):
            chosen[word] = None
            continue
        occurrences = split.tokens == word_id
        distributions = []
        for c in range(num_classes):
            values = attention.word_weights[occurrences & tokens_in(c)]
            histogram, _ = np.histogram(values, bins=edges)
            distributions.append(
                WeightDistribution(
                    count=len(values),
                    mean=float(values.mean()) if len(values) else None,
                    median=float(np.median(values)) if len(values) else None,
                    histogram=histogram.tolist(),
                )
            )
        chosen[word] = distributions

    faithfulness = faithfulness_check(
        trained.model,
        split,
        attention,
        options.faithfulness_documents,
        options.seed,
        trained.config.train.eval_batch_size,
        trained.config.precision,
        thresholds=trained.thresholds,
        at_least_one=trained.config.predict.at_least_one,
    )
    if not has_labels:
        accuracy = None
    elif predicted_sets is not None:  # exact match: the predicted set is the true set
        accuracy = float((predicted_sets == split.labels.astype(bool)).all(axis=1).mean())
    else:
        accuracy = float((predicted == split.labels).mean())
    return CorpusStatistics(
        label_names=label_names,
        group_by=group_by,
        source=source,
        run=str(trained.run.root),
        documents=len(split),
        class_documents=[int(k) for k in membership.sum(axis=0)],
        accuracy=accuracy,
        top_words=top_words,
        positions=positions,
        position_mean=position_mean,
        position_documents=position_documents,
        top_position_share=top_position_share,
        bins=options.bins,
        chosen_words=chosen,
        faithfulness=faithfulness,
        options=options,
        multilabel=multilabel,
        unlabelled_documents=int((~membership.any(axis=1)).sum()) if multilabel else 0,
    )
