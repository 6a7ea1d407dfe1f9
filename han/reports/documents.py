"""Per-document attention reports: every sentence and token as written, the weights, the prediction.

A view keeps the raw text's tokens, including those the caps (`max_sentences`, `max_words`) cut off,
beside the weights of what the model read. Documents are read, segmented and scored exactly like
`han predict` reads them (`han.trained`, `han.records`, `han.scoring`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from han.config import DataConfig, DocumentReportConfig
from han.data import load_data, load_labelled_file
from han.errors import ConfigError, DataError
from han.progress import Progress
from han.records import has_column, iter_input_texts
from han.scoring import score_split
from han.trained import TrainedRun


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
        return InputDocuments(list(raw.texts), _label_ids(raw.labels, trained.label_names, where), where)
    if source is None:
        raise DataError("no input: give a file of documents or --split NAME")
    if not source.exists():
        raise DataError(f"{source}: input file not found")
    max_chars = trained.config.preprocess.max_chars  # lines of a .txt file are cut at it while read
    if source.suffix.lower() == ".txt":
        return InputDocuments(list(iter_input_texts(source, data_config, max_chars=max_chars)), None, str(source))
    if has_column(source, data_config, data_config.label_column):
        raw = load_labelled_file(source, data_config)
        return InputDocuments(list(raw.texts), _label_ids(raw.labels, trained.label_names, str(source)), str(source))
    return InputDocuments(list(iter_input_texts(source, data_config, max_chars=max_chars)), None, str(source))


def document_views(
    trained: TrainedRun, texts: list[str], labels: list[int] | None, progress: Progress | None = None
) -> list[DocumentView]:
    """Segment, encode and score every text; return what the model read and attended to, document by document.

    Texts are read exactly as `han predict` reads them (`TrainedRun.segment`: cleaning, the max_chars cut,
    one segmentation rule); the views keep every token as written, including those the caps cut.
    """
    config = trained.config.preprocess
    segmented = trained.segment(texts, surface=True)
    split = trained.encode_segmented(segmented, labels)
    scores = score_split(
        trained.model, split, trained.config.train.eval_batch_size, trained.config.precision, True, progress
    )
    assert scores.sentence_weights is not None and scores.word_weights is not None
    assert segmented.surface_ids is not None and segmented.space_after is not None
    model_words = np.asarray(segmented.words, dtype=object)
    surface_words = np.asarray(segmented.surface_words, dtype=object)
    known = np.array([word in trained.vocab.index for word in segmented.words], dtype=bool)
    sentence_offsets = np.concatenate([[0], np.cumsum(segmented.sentence_lengths)])
    views = []
    first_raw_sentence = 0
    for d, count in enumerate(segmented.sentence_counts.tolist()):
        first_sentence = int(split.document_offsets[d])
        sentence_views = []
        for s in range(count):
            a, b = int(sentence_offsets[first_raw_sentence + s]), int(sentence_offsets[first_raw_sentence + s + 1])
            if s >= config.max_sentences:
                read: list[float] = []
                weight = None
            else:
                start = int(split.sentence_offsets[first_sentence + s])
                read = scores.word_weights[start : start + min(b - a, config.max_words)].tolist()
                weight = float(scores.sentence_weights[first_sentence + s])
            ids = segmented.local_ids[a : a + len(read)]
            sentence_views.append(
                SentenceView(
                    tokens=surface_words[segmented.surface_ids[a:b]].tolist(),
                    spaces=segmented.space_after[a:b].tolist(),
                    word_weights=read,
                    unknown=(~known[ids]).tolist(),
                    weight=weight,
                )
            )
        first_raw_sentence += count
        views.append(
            DocumentView(
                row=d + 1,
                sentences=sentence_views,
                probabilities=scores.probabilities[d].tolist(),
                true_label=None if labels is None else labels[d],
            )
        )
    del model_words
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
    trained.require_attention("han report")
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


def round6(value: float) -> float:
    """A weight or probability rounded for output (6 decimals)."""
    return round(float(value), 6)


def document_record(view: DocumentView, label_names: list[str]) -> dict[str, Any]:
    """One document as plain data (a JSON Lines record). Cut tokens have weight null; cut sentences weight null."""
    return {
        "row": view.row,
        "predicted": label_names[view.predicted],
        "true": None if view.true_label is None else label_names[view.true_label],
        "correct": view.correct,
        "confidence": round6(view.confidence),
        "probabilities": {name: round6(p) for name, p in zip(label_names, view.probabilities, strict=True)},
        "sentences_cut": view.sentences_cut,
        "sentences": [
            {
                "weight": None if s.weight is None else round6(s.weight),
                "cut": s.cut,
                "words_cut": s.words_cut,
                "tokens": s.tokens,
                "word_weights": [round6(w) for w in s.word_weights] + [None] * s.words_cut,
                "unknown": s.unknown + [None] * s.words_cut,
            }
            for s in view.sentences
        ],
    }
