"""Corpus attention statistics of a split: per class the words with the highest mean attention, attention
over sentence positions, and the weight distributions of chosen words (Yang et al. 2016, Fig. 3/4),
with the faithfulness check on a sample of the documents.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from han.config import CorpusReportConfig
from han.encoded import EncodedSplit
from han.errors import DataError
from han.progress import Progress
from han.reports.documents import read_documents, round6
from han.reports.faithfulness import Faithfulness, faithfulness_check, split_structure, top_sentences
from han.scoring import score_split
from han.trained import TrainedRun
from han.vocab import PAD_ID, UNK_ID

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

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        names = self.label_names
        return {
            "run": self.run,
            "source": self.source,
            "group_by": self.group_by,
            "documents": self.documents,
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
    """Per-class attention statistics of an encoded split, and the faithfulness check on a sample of it."""
    trained.require_attention("han corpus-report")
    label_names = trained.label_names
    num_classes = len(label_names)
    attention = score_split(
        trained.model, split, trained.config.train.eval_batch_size, trained.config.precision, True, progress
    )
    assert attention.sentence_weights is not None and attention.word_weights is not None
    predicted = attention.probabilities.argmax(axis=1)
    has_labels = bool(len(split)) and bool((split.labels >= 0).all())
    if options.group_by == "true" and not has_labels:
        log.info("the documents have no true labels; grouping by the predicted class")
    group_by = options.group_by if has_labels else "predicted"
    document_class = split.labels if group_by == "true" else predicted
    document_of_sentence, position, sentence_of_token = split_structure(split)
    sentence_class = document_class[document_of_sentence]
    token_class = sentence_class[sentence_of_token]
    vocab_words = trained.vocab.words
    vocab_size = len(vocab_words)
    listable = np.array([_is_word(w) for w in vocab_words], dtype=bool)
    listable[[PAD_ID, UNK_ID]] = False

    top_words: list[list[WordAttention]] = []
    for c in range(num_classes):
        mask = token_class == c
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
        mask = (sentence_class == c) & (position < positions)
        n = np.bincount(position[mask], minlength=positions)
        sums = np.bincount(position[mask], weights=attention.sentence_weights[mask], minlength=positions)
        position_mean.append([float(s / k) if k else None for s, k in zip(sums, n, strict=True)])
        position_documents.append(n.tolist())
        in_class = document_class == c
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
            values = attention.word_weights[occurrences & (token_class == c)]
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
    )
    return CorpusStatistics(
        label_names=label_names,
        group_by=group_by,
        source=source,
        run=str(trained.run.root),
        documents=len(split),
        class_documents=np.bincount(document_class, minlength=num_classes).tolist(),
        accuracy=float((predicted == split.labels).mean()) if has_labels else None,
        top_words=top_words,
        positions=positions,
        position_mean=position_mean,
        position_documents=position_documents,
        top_position_share=top_position_share,
        bins=options.bins,
        chosen_words=chosen,
        faithfulness=faithfulness,
        options=options,
    )
