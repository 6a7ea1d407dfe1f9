"""Attention-weight reports: what the model read, what it attended to, and how far to trust it.

Three products, all computed from a trained run:
- per-document views: every sentence and token of the raw text (including those the caps cut off),
  the sentence weights, the word weights, the prediction and the true label when known;
- corpus statistics of a split: per class the words with the highest mean attention, attention over
  sentence positions, and the weight distributions of chosen words (Yang et al. 2016, Fig. 3/4);
- a faithfulness check: the change in the predicted class probability when the most-attended
  sentence is removed, against removing a random other sentence.

Weights are held in flat arrays aligned with an `EncodedSplit` (one per sentence, one per token).
HTML rendering lives in `han.report_html`; this module never writes markup.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from spacy.language import Language

from han.artifacts import write_text_atomic
from han.batching import EncodedSplit, bucketed_batches, collate
from han.config import CorpusReportConfig, DataConfig, DocumentReportConfig, PreprocessConfig
from han.data import load_data, load_labelled_file, load_source
from han.errors import ConfigError, DataError, RunDirError
from han.evaluation import predict_probabilities
from han.inference import TrainedRun, iter_input_texts
from han.model import HierarchicalAttentionNetwork
from han.progress import Progress
from han.vocab import PAD_ID, UNK_ID

log = logging.getLogger(__name__)


# --- attention of a whole split ----------------------------------------------------------------
@dataclass
class SplitAttention:
    """Predictions and attention weights of every document of a split, in split order."""

    probabilities: np.ndarray  # (N_doc, C)
    sentence_weights: np.ndarray  # (N_sent,) aligned with the split's sentences; each document's sum to 1
    word_weights: np.ndarray  # (T,) aligned with the split's tokens; each sentence's sum to 1


def sentence_ids_of(split: EncodedSplit, indices: np.ndarray) -> np.ndarray:
    """Ids of the sentences of documents `indices`, in the order `collate` puts them in a batch."""
    first, last = split.document_offsets[indices], split.document_offsets[indices + 1]
    return np.concatenate([np.arange(a, b) for a, b in zip(first, last)])


@torch.no_grad()
def attend(
    model: HierarchicalAttentionNetwork, split: EncodedSplit, batch_size: int, progress: Progress | None = None
) -> SplitAttention:
    """Run the model over `split` and keep its probabilities and both levels of attention weights."""
    progress = progress or Progress()
    was_training = model.training
    model.eval()
    probabilities = np.zeros((len(split), model.classifier.out_features), dtype=np.float32)
    sentence_weights = np.zeros(len(split.sentence_offsets) - 1, dtype=np.float32)
    word_weights = np.zeros(len(split.tokens), dtype=np.float32)
    progress.start("attention", len(split))
    for indices in bucketed_batches(split, batch_size, rng=None):
        batch = collate(split, indices)
        output = model(batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
        probabilities[indices] = torch.softmax(output.logits, dim=-1).numpy()
        # Real sentences of the (B, S) grid, row-major: the same order as the batch's sentences.
        sentence_mask = torch.arange(output.sentence_attention.size(1)) < batch.sentence_counts[:, None]  # (B, S)
        sentence_ids = sentence_ids_of(split, indices)  # (N_s,)
        sentence_weights[sentence_ids] = output.sentence_attention[sentence_mask].numpy()
        width = batch.word_ids.size(1)
        per_sentence = output.word_attention[sentence_mask][:, :width].numpy()  # (N_s, W)
        columns = np.arange(width)
        lengths = batch.sentence_lengths.numpy()
        valid = columns[None, :] < lengths[:, None]  # (N_s, W)
        starts = split.sentence_offsets[sentence_ids]
        word_weights[(starts[:, None] + columns[None, :])[valid]] = per_sentence[valid]
        progress.advance(len(indices))
    progress.stop()
    model.train(was_training)
    return SplitAttention(probabilities, sentence_weights, word_weights)


# --- documents as read: raw tokens, caps, model tokens -----------------------------------------
@dataclass
class SentenceView:
    """One sentence of the raw text. Tokens past `len(word_weights)` were cut by max_words."""

    tokens: list[str]  # the text of every token, as written
    spaces: list[bool]  # whether whitespace follows each token in the text
    word_weights: list[float]  # weights of the tokens the model read (a prefix of `tokens`)
    unknown: list[bool]  # per read token: not in the vocabulary (the model saw <unk>)
    weight: float | None  # sentence weight; None when max_sentences cut the whole sentence

    @property
    def cut(self) -> bool:
        return self.weight is None

    @property
    def words_cut(self) -> int:
        return len(self.tokens) - len(self.word_weights)


@dataclass
class DocumentView:
    """One document: every sentence as written, the weights, the prediction and (when known) the true label."""

    row: int  # 1-based position in the input
    sentences: list[SentenceView]
    probabilities: list[float]  # per class
    true_label: int | None

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def confidence(self) -> float:
        return float(max(self.probabilities))

    @property
    def correct(self) -> bool | None:
        return None if self.true_label is None else self.predicted == self.true_label

    @property
    def sentences_cut(self) -> int:
        return sum(s.cut for s in self.sentences)


RawSentence = list[tuple[str, str, bool]]  # (text as written, token the model reads, whitespace follows)


def segment_uncapped(nlp: Language, texts: list[str], config: PreprocessConfig) -> Iterator[list[RawSentence]]:
    """Every sentence and token of each text, without caps, split exactly like `han.segment.segment`.

    Capping the result (first max_sentences sentences, first max_words tokens of each, model tokens)
    gives what `segment` yields; a test holds the two together.
    """
    for doc in nlp.pipe(texts, batch_size=config.pipe_batch_size):
        sentences = []
        last = len(doc) - 1
        for sent in doc.sents:
            # A token is followed by whitespace when it carries some, or when a whitespace token (a line break) follows.
            tokens = [
                (
                    t.text,
                    t.lower_ if config.lowercase else t.text,
                    bool(t.whitespace_) or (t.i < last and doc[t.i + 1].is_space),
                )
                for t in sent
                if not t.is_space
            ]
            if tokens:
                sentences.append(tokens)
        yield sentences


def capped(sentences: list[RawSentence], config: PreprocessConfig) -> list[list[str]]:
    """The model tokens of a document as the caps leave them."""
    return [[model for _, model, _ in sentence[: config.max_words]] for sentence in sentences[: config.max_sentences]]


@dataclass
class InputDocuments:
    """Texts to report on (a document's `row` is its 1-based position here) and their true labels (class ids) when known."""

    texts: list[str]
    labels: list[int] | None
    source: str


def _label_ids(names: list[str], label_names: list[str], where: str) -> list[int]:
    index = {name: i for i, name in enumerate(label_names)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise DataError(
            f"{where}: label(s) {', '.join(map(repr, unknown))} unknown to the model; known: {', '.join(label_names)}"
        )
    return [index[name] for name in names]


def read_documents(trained: TrainedRun, source: Path | None, split: str | None = None) -> InputDocuments:
    """Documents from a file (labels read when it has the run's label column), or one split of a data source.

    With `split`, the source (default: the run's own `data.source`) is loaded with the run's data settings
    (split column, carving seed), so `test` is the very test split the run was evaluated on.
    """
    data_config: DataConfig = trained.config.data
    if split is not None:
        if source is not None:
            data_config = data_config.model_copy(update={"source": str(source)})
        loaded = load_data(data_config, trained.config.seed)
        if split not in loaded.splits:
            raise ConfigError(f"--split {split!r}: no such split (choose from {', '.join(sorted(loaded.splits))})")
        raw = loaded.splits[split]
        where = f"{data_config.source} [{split}]"
        return InputDocuments(raw.texts, _label_ids(raw.labels, trained.label_names, where), where)
    if source is None:
        raise DataError("no input: give a file of documents or --split NAME")
    if not source.exists():
        raise DataError(f"{source}: input file not found")
    if source.suffix.lower() == ".txt":
        return InputDocuments(list(iter_input_texts(source, data_config.text_columns)), None, str(source))
    file_config = data_config.model_copy(update={"source": str(source), "split_column": None})
    dataset = datasets.concatenate_datasets([part.dataset for part in load_source(file_config).values()])
    if data_config.label_column in dataset.column_names:
        raw = load_labelled_file(source, data_config)
        return InputDocuments(list(raw.texts), _label_ids(raw.labels, trained.label_names, str(source)), str(source))
    missing = [c for c in data_config.text_columns if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"{source}: column(s) {', '.join(missing)} not found (columns: {', '.join(dataset.column_names)}); the run reads data.text_column"
        )
    parts = [dataset[c] for c in data_config.text_columns]
    texts = [
        data_config.text_separator.join(str(p).strip() for p in row if p is not None and str(p).strip())
        for row in zip(*parts)
    ]
    return InputDocuments(texts, None, str(source))


def document_views(
    trained: TrainedRun, texts: list[str], labels: list[int] | None, progress: Progress | None = None
) -> list[DocumentView]:
    """Segment, encode and run every text; return what the model read and attended to, document by document."""
    progress = progress or Progress()
    config = trained.config.preprocess
    progress.start("segment", len(texts))
    raw_documents = []
    for sentences in segment_uncapped(trained.nlp, texts, config):
        raw_documents.append(sentences)
        progress.advance(1)
    progress.stop()
    # A text with no token is read as one unknown word, like `TrainedRun.encode`.
    encoded = [[trained.vocab.encode(s) for s in capped(doc, config)] or [[UNK_ID]] for doc in raw_documents]
    split = EncodedSplit.from_documents(encoded, labels if labels is not None else [-1] * len(texts))
    weights = attend(trained.model, split, trained.config.train.eval_batch_size, progress)
    index = trained.vocab.index
    views = []
    for d, sentences in enumerate(raw_documents):
        first_sentence = int(split.document_offsets[d])
        sentence_views = []
        for s, sentence in enumerate(sentences):
            if s >= config.max_sentences:
                read: list[float] = []
                weight = None
            else:
                start = int(split.sentence_offsets[first_sentence + s])
                read = weights.word_weights[start : start + min(len(sentence), config.max_words)].tolist()
                weight = float(weights.sentence_weights[first_sentence + s])
            sentence_views.append(
                SentenceView(
                    tokens=[text for text, _, _ in sentence],
                    spaces=[space for _, _, space in sentence],
                    word_weights=read,
                    unknown=[model not in index for _, model, _ in sentence[: len(read)]],
                    weight=weight,
                )
            )
        views.append(
            DocumentView(
                row=d + 1,
                sentences=sentence_views,
                probabilities=weights.probabilities[d].tolist(),
                true_label=None if labels is None else labels[d],
            )
        )
    return views


def check_selection(options: DocumentReportConfig, has_labels: bool, label_names: list[str]) -> None:
    """Raise a ConfigError when the options need true labels the input lacks, or name an unknown label."""
    needs_labels = options.only != "all" or options.sort == "misclassified" or options.true_label is not None
    if needs_labels and not has_labels:
        raise ConfigError(
            "the input has no true labels (no label column), so --only misclassified/correct, --sort misclassified "
            "and --true-label cannot be used"
        )
    for key in ("true_label", "predicted_label"):
        name = getattr(options, key)
        if name is not None and name not in label_names:
            raise ConfigError(f"{key}: {name!r} is not a label of the run (labels: {', '.join(label_names)})")


def select_documents(
    views: list[DocumentView], options: DocumentReportConfig, label_names: list[str]
) -> list[DocumentView]:
    """Filter, sort and limit documents as the options say."""
    check_selection(options, all(v.true_label is not None for v in views), label_names)
    chosen = views
    if options.only != "all":
        chosen = [v for v in chosen if v.correct == (options.only == "correct")]
    if options.true_label is not None:
        chosen = [v for v in chosen if v.true_label == label_names.index(options.true_label)]
    if options.predicted_label is not None:
        chosen = [v for v in chosen if v.predicted == label_names.index(options.predicted_label)]
    if options.sort == "confidence":
        chosen = sorted(chosen, key=lambda v: (v.confidence, v.row))
    elif options.sort == "misclassified":
        chosen = sorted(chosen, key=lambda v: (bool(v.correct), v.confidence, v.row))
    return chosen[: options.limit] if options.limit is not None else chosen


@dataclass
class DocumentReport:
    """The documents of one report with what a reader needs to interpret them."""

    label_names: list[str]
    documents: list[DocumentView]  # in display order
    documents_read: int  # before filtering
    run: str
    source: str
    max_sentences: int
    max_words: int
    options: DocumentReportConfig


def document_report(
    trained: TrainedRun,
    source: Path | None,
    split: str | None,
    options: DocumentReportConfig,
    progress: Progress | None = None,
) -> DocumentReport:
    """Read the input, run the model with attention, and select the documents to show."""
    documents = read_documents(trained, source, split)
    if not documents.texts:
        raise DataError(f"{documents.source}: the input holds no documents")
    check_selection(options, documents.labels is not None, trained.label_names)
    views = document_views(trained, documents.texts, documents.labels, progress)
    selected = select_documents(views, options, trained.label_names)
    preprocess = trained.config.preprocess
    return DocumentReport(
        label_names=trained.label_names,
        documents=selected,
        documents_read=len(views),
        run=str(trained.run.root),
        source=documents.source,
        max_sentences=preprocess.max_sentences,
        max_words=preprocess.max_words,
        options=options,
    )


def _round(value: float) -> float:
    return round(float(value), 6)


def document_record(view: DocumentView, label_names: list[str]) -> dict[str, Any]:
    """One document as plain data (a JSON Lines record). Cut tokens have weight null; cut sentences weight null."""
    return {
        "row": view.row,
        "predicted": label_names[view.predicted],
        "true": None if view.true_label is None else label_names[view.true_label],
        "correct": view.correct,
        "confidence": _round(view.confidence),
        "probabilities": {name: _round(p) for name, p in zip(label_names, view.probabilities)},
        "sentences_cut": view.sentences_cut,
        "sentences": [
            {
                "weight": None if s.weight is None else _round(s.weight),
                "cut": s.cut,
                "words_cut": s.words_cut,
                "tokens": s.tokens,
                "word_weights": [_round(w) for w in s.word_weights] + [None] * s.words_cut,
                "unknown": s.unknown + [None] * s.words_cut,
            }
            for s in view.sentences
        ],
    }


def write_document_report(report: DocumentReport, output: Path, output_format: str) -> None:
    """Write the report as one self-contained HTML page or as JSON Lines, atomically."""
    if output_format == "jsonl":
        lines = (json.dumps(document_record(v, report.label_names), ensure_ascii=False) for v in report.documents)
        write_text_atomic(output, "".join(line + "\n" for line in lines))
    else:
        from han.report_html import render_document_report

        write_text_atomic(output, render_document_report(report))


# --- corpus statistics -------------------------------------------------------------------------
@dataclass
class WordAttention:
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
class Faithfulness:
    """Change in the predicted class probability when one sentence is removed (positive: the model got less sure)."""

    documents: int  # documents checked (those with at least two sentences, sampled)
    eligible: int  # documents with at least two sentences
    top_drop: np.ndarray  # removing the most-attended sentence
    random_drop: np.ndarray  # removing a random other sentence
    top_flips: int  # predictions that changed
    random_flips: int
    top_larger: int  # documents where removing the top sentence lowered the probability more

    def summary(self) -> dict[str, Any]:
        def describe(drops: np.ndarray, flips: int) -> dict[str, float]:
            return {
                "mean": _round(drops.mean()),
                "median": _round(np.median(drops)),
                "p10": _round(np.quantile(drops, 0.1)),
                "p90": _round(np.quantile(drops, 0.9)),
                "flip_share": _round(flips / len(drops)),
                "flips": flips,
            }

        return {
            "documents": self.documents,
            "eligible": self.eligible,
            "top_sentence_removed": describe(self.top_drop, self.top_flips),
            "random_sentence_removed": describe(self.random_drop, self.random_flips),
            "top_drop_larger_share": _round(self.top_larger / self.documents),
        }


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
            "accuracy": None if self.accuracy is None else _round(self.accuracy),
            "classes": {
                name: {
                    "documents": self.class_documents[c],
                    "top_words": [
                        {"word": w.word, "mean": _round(w.mean), "count": w.count} for w in self.top_words[c]
                    ],
                    "position_mean": [None if m is None else _round(m) for m in self.position_mean[c]],
                    "position_documents": self.position_documents[c],
                    "top_position_share": [_round(s) for s in self.top_position_share[c]],
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
                        "mean": None if d.mean is None else _round(d.mean),
                        "median": None if d.median is None else _round(d.median),
                        "histogram": d.histogram,
                    }
                    for name, d in zip(names, dists)
                }
                for word, dists in self.chosen_words.items()
            },
            "faithfulness": None if self.faithfulness is None else self.faithfulness.summary(),
        }


def load_split_for_corpus(trained: TrainedRun, source: Path | None, split: str) -> tuple[EncodedSplit, str]:
    """The run's preprocessed split, or the documents of `source` encoded like it."""
    if source is None:
        path = trained.run.data_path(split)
        if not path.exists():
            available = ", ".join(trained.run.splits()) or "none"
            raise RunDirError(f"{trained.run.root}: no preprocessed split {split!r} (available: {available})")
        return EncodedSplit.load(path), f"{trained.run.root} [{split}]"
    documents = read_documents(trained, source, None)
    if not documents.texts:
        raise DataError(f"{source}: the input holds no documents")
    return trained.encode(documents.texts, documents.labels), documents.source


def _structure(split: EncodedSplit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    model: HierarchicalAttentionNetwork,
    split: EncodedSplit,
    attention: SplitAttention,
    documents: int,
    seed: int,
    batch_size: int,
) -> Faithfulness | None:
    """Remove the most-attended sentence, or a random other one, from sampled documents; measure the change.

    Only documents with at least two sentences are eligible (removing a sole sentence leaves nothing).
    The change is the drop in the probability of the class predicted on the full document.
    """
    rng = np.random.default_rng(seed)
    counts = split.sentence_counts
    eligible = np.flatnonzero(counts >= 2)
    if len(eligible) == 0 or documents == 0:
        return None
    sample = np.sort(rng.choice(eligible, size=min(documents, len(eligible)), replace=False))
    document_of_sentence, _, _ = _structure(split)
    top = top_sentences(split, attention.sentence_weights, document_of_sentence)[sample]
    first = split.document_offsets[sample]
    # A random sentence other than the top one: draw among count-1 positions and skip over the top.
    top_position = top - first
    random_position = rng.integers(0, counts[sample] - 1)
    random_position = random_position + (random_position >= top_position)
    random = first + random_position

    def without(removed: np.ndarray) -> EncodedSplit:
        documents_left = []
        for d, gone in zip(sample, removed):
            documents_left.append(
                [
                    split.tokens[split.sentence_offsets[s] : split.sentence_offsets[s + 1]]
                    for s in range(split.document_offsets[d], split.document_offsets[d + 1])
                    if s != gone
                ]
            )
        return EncodedSplit.from_documents(documents_left, split.labels[sample])

    before = attention.probabilities[sample]  # (n, C)
    predicted = before.argmax(axis=1)
    rows = np.arange(len(sample))
    after_top = predict_probabilities(model, without(top), batch_size)
    after_random = predict_probabilities(model, without(random), batch_size)
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
    label_names = trained.label_names
    num_classes = len(label_names)
    attention = attend(trained.model, split, trained.config.train.eval_batch_size, progress)
    predicted = attention.probabilities.argmax(axis=1)
    has_labels = bool(len(split)) and bool((split.labels >= 0).all())
    if options.group_by == "true" and not has_labels:
        log.info("the documents have no true labels; grouping by the predicted class")
    group_by = options.group_by if has_labels else "predicted"
    document_class = split.labels if group_by == "true" else predicted
    document_of_sentence, position, sentence_of_token = _structure(split)
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
        position_mean.append([float(s / k) if k else None for s, k in zip(sums, n)])
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


def write_corpus_report(statistics: CorpusStatistics, output: Path, output_format: str) -> None:
    """Write the corpus statistics as an HTML page with plots, or as JSON, atomically."""
    if output_format == "json":
        write_text_atomic(output, json.dumps(statistics.as_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        from han.report_html import render_corpus_report

        write_text_atomic(output, render_corpus_report(statistics))


def sqrt_scaled(word_weight: float, sentence_weight: float) -> float:
    """The paper's display weight of a word: its weight times the square root of its sentence's weight."""
    return word_weight * math.sqrt(sentence_weight)
