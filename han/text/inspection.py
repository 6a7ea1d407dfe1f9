"""`han data inspect`: the numbers a user needs to choose caps, before preprocessing.

Loads and splits the data exactly like preprocess (bad rows are counted and dropped rather than
stopping the report), tokenises every split without caps, then reports rows per split, the label
distribution, percentiles of sentences per document and words per sentence, the share of sentences
and words that the configured caps cut, and the out-of-vocabulary rate of each split under the
configured vocabulary settings (vocabulary counted on the capped training split, as preprocess does).
It warns when the training split's labels are skewed (`label_imbalance`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from han.config import Config
from han.data.splits import load_data
from han.progress import Progress
from han.store.vocab import UNK_ID
from han.text.corpus import build_corpus
from han.text.segment_datasets import drop_tokenless, segment_loaded

PERCENTILES = (50, 90, 95, 99)
# Warn when the training split's most frequent label has at least this many times the documents of the rarest:
# at 15x (clothing's 5 stars vs 1 star) an unweighted run rarely predicts the rare classes (docs/results/class-weights.md).
IMBALANCE_RATIO = 10.0


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": 0.0, **{f"p{p}": 0.0 for p in PERCENTILES}, "max": 0.0}
    return {
        "mean": round(float(values.mean()), 2),
        **{f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES},
        "max": float(values.max()),
    }


@dataclass
class DataReport:
    """Statistics of a configured dataset (see the module docstring)."""

    source: str
    rows: dict[str, int]  # documents per split, after dropping bad rows
    label_names: list[str]
    label_counts: dict[str, dict[str, int]]  # split -> label -> documents
    rows_in: int
    rows_dropped: dict[str, int]  # by reason
    sentences_per_document: dict[str, float]  # percentiles over all splits, before caps
    words_per_sentence: dict[str, float]
    words_per_document: dict[str, float]
    caps: dict[str, Any]  # the caps and what they cut
    vocab_size: int
    oov_rate: dict[str, float]  # split -> share of (capped) tokens outside the vocabulary
    documents_per_second: float
    seconds: float
    warnings: list[str] = field(default_factory=list)  # one line each: what to look at before training

    def as_dict(self) -> dict[str, Any]:
        """The report's fields as a dict (a shallow copy)."""
        return self.__dict__.copy()


def inspect_data(config: Config, progress: Progress | None = None) -> DataReport:
    """Load, split and tokenise the configured data and measure it (nothing is written)."""
    begin = time.perf_counter()
    counting = config.model_copy(
        update={"data": config.data.model_copy(update={"bad_rows": "drop", "unseen_labels": "drop"})}
    )
    loaded = load_data(counting.data, counting.seed, config.multilabel)
    tokenised = segment_loaded(loaded, counting, progress, capped=False)
    drop_tokenless(loaded, tokenised, counting)
    splits = tokenised.splits
    max_sentences, max_words = config.preprocess.max_sentences, config.preprocess.max_words

    sentence_counts = np.concatenate([s.sentence_counts for s in splits.values()])
    sentence_lengths = np.concatenate([s.sentence_lengths for s in splits.values()])
    document_lengths = np.concatenate([s.document_lengths for s in splits.values()])
    capped = {name: split.capped(max_sentences, max_words) for name, split in splits.items()}
    total_sentences = int(sentence_counts.sum())
    kept_sentences = int(np.minimum(sentence_counts, max_sentences).sum())
    total_words = int(sentence_lengths.sum())
    kept_words = sum(len(s.ids) for s in capped.values())
    # words that max_words cuts from sentences that max_sentences keeps
    words_in_kept_sentences = sum(
        int(split.sentence_lengths[_kept_sentence_mask(split, max_sentences)].sum()) for split in splits.values()
    )
    caps = {
        "max_sentences": max_sentences,
        "documents_over_max_sentences": _share(int((sentence_counts > max_sentences).sum()), len(sentence_counts)),
        "sentences_cut": _share(total_sentences - kept_sentences, total_sentences),
        "max_words": max_words,
        "sentences_over_max_words": _share(int((sentence_lengths > max_words).sum()), len(sentence_lengths)),
        "words_cut_by_max_words": _share(words_in_kept_sentences - kept_words, total_words),
        "words_cut_in_all": _share(total_words - kept_words, total_words),
    }
    corpus = build_corpus(tokenised.words, splits, config.preprocess)
    oov = {}
    for name, split in corpus.splits.items():
        ids = corpus.lookup[split.ids]
        oov[name] = _share(int((ids == UNK_ID).sum()), len(ids))
    rows = loaded.counts.as_dict()
    label_counts = {name: _label_counts(split.labels, loaded.label_names) for name, split in loaded.splits.items()}
    skew = label_imbalance(label_counts.get("train", {}), config.multilabel)
    return DataReport(
        source=str(config.data.source),
        rows={name: len(split) for name, split in loaded.splits.items()},
        label_names=loaded.label_names,
        label_counts=label_counts,
        rows_in=rows["rows_in"],
        rows_dropped=rows["rows_dropped"],
        sentences_per_document=_percentiles(sentence_counts),
        words_per_sentence=_percentiles(sentence_lengths),
        words_per_document=_percentiles(document_lengths),
        caps=caps,
        vocab_size=len(corpus.vocab),
        oov_rate=oov,
        documents_per_second=round(tokenised.documents / max(tokenised.seconds, 1e-9), 1),
        seconds=round(time.perf_counter() - begin, 2),
        warnings=[skew] if skew else [],
    )


def label_imbalance(train_counts: dict[str, int], multilabel: bool = False) -> str | None:
    """A one-line warning when the most frequent training label has `IMBALANCE_RATIO` times the documents of
    the rarest (or a label has none), naming the rare labels and the setting that weights them; else None."""
    if len(train_counts) < 2:
        return None
    largest_name = max(train_counts, key=lambda name: train_counts[name])
    largest = train_counts[largest_name]
    rare = sorted(
        (name for name, n in train_counts.items() if n * IMBALANCE_RATIO <= largest),
        key=lambda name: train_counts[name],
    )
    if not rare or largest == 0:
        return None
    total = max(1, sum(train_counts.values()))
    smallest = train_counts[rare[0]]
    ratio = f"{largest / smallest:.1f}x its rarest" if smallest else "while a label has none"
    listed = ", ".join(f"{name!r} {train_counts[name]} ({train_counts[name] / total:.1%})" for name in rare[:5])
    more = f" and {len(rare) - 5} more" if len(rare) > 5 else ""
    advice = (
        "train.positive_weight weights each label's positives, at some cost in micro-F1 (docs/results/multilabel.md)"
        if multilabel
        else "consider train.class_weight=balanced (docs/guides/imbalance.md)"
    )
    return (
        f"skewed labels: the training split's most frequent label {largest_name!r} has {largest} documents, "
        f"{ratio} (warned from {IMBALANCE_RATIO:g}x); rarest: {listed}{more}; {advice}"
    )


def _label_counts(labels: list, label_names: list[str]) -> dict[str, int]:
    """Documents per label: a document with a label set counts once for each of its labels."""
    counts = Counter(name for label in labels for name in ((label,) if isinstance(label, str) else label))
    return {name: counts[name] for name in label_names}


def _kept_sentence_mask(split, max_sentences: int) -> np.ndarray:
    offsets = split.document_offsets
    rank = np.arange(len(split.sentence_lengths)) - np.repeat(offsets[:-1], split.sentence_counts)
    return rank < max_sentences


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0
