"""Per-document attention reports: every sentence and token as written, the weights, the prediction.

A view keeps the raw text's tokens, including those the caps (`max_sentences`, `max_words`) cut off,
beside the weights of what the model read. Documents are read, segmented and scored exactly like
`han predict` reads them (`han.serving.trained`, `han.data.records`, `han.evaluation.scoring`).

Multi-label runs (task: multilabel): a view holds the predicted label set (every label whose probability
is at or above the run's threshold for it, `TrainedRun.predicted_sets`, exactly what `han predict` writes)
and, when known, the true label set. A document is misclassified when the two sets differ (exact match),
and its confidence is its margin: the smallest |probability - threshold| over the labels, i.e. how close
its most uncertain label came to the other side of its threshold. The network computes one attention per
document, shared by every label, so the same weights explain every predicted label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from han.config import DataConfig, DocumentReportConfig
from han.data.label_sets import label_matrix
from han.data.records import has_column, iter_input_texts
from han.data.splits import load_data, load_labelled_file
from han.errors import ConfigError, DataError
from han.evaluation.scoring import score_split
from han.progress import Progress
from han.serving.trained import TrainedRun
from han.text.segment import EmptyDocuments


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
    """One document: every sentence as written, the weights, the prediction and (when known) the true label.

    A view of a multi-label run has `predicted_set` (and `thresholds`) set, and `true_set` when the true
    labels are known (possibly empty); `true_label` stays None there.
    """

    row: int  # 1-based position in the input
    sentences: list[SentenceView]
    probabilities: list[float]  # per class
    true_label: int | None
    predicted_set: list[int] | None = None  # multi-label: ids of the labels at or above their thresholds
    true_set: list[int] | None = None  # multi-label: ids of the true labels, when known
    thresholds: list[float] | None = None  # multi-label: each label's decision threshold
    attention_share: float | None = (
        None  # model.wide: the attention path's share of the decision (han/evaluation/scoring.py)
    )

    @property
    def multilabel(self) -> bool:
        return self.predicted_set is not None

    @property
    def predicted(self) -> int:
        """The most probable label (multi-label: see `predicted_labels` for the predicted set)."""
        return int(np.argmax(self.probabilities))

    @property
    def predicted_labels(self) -> list[int]:
        """The predicted label ids: the set of a multi-label run, else the one predicted class."""
        return list(self.predicted_set) if self.predicted_set is not None else [self.predicted]

    @property
    def true_labels(self) -> list[int] | None:
        """The true label ids (a multi-label set, possibly empty, or the one class); None when unknown."""
        if self.multilabel:
            return None if self.true_set is None else list(self.true_set)
        return None if self.true_label is None else [self.true_label]

    @property
    def labelled(self) -> bool:
        return self.true_labels is not None

    @property
    def margin(self) -> float:
        """Multi-label: the smallest |probability - threshold| over the labels (small: a label nearly flipped)."""
        assert self.thresholds is not None, "a multi-label view has thresholds"
        return float(min(abs(p - t) for p, t in zip(self.probabilities, self.thresholds, strict=True)))

    @property
    def confidence(self) -> float:
        """The top probability; multi-label: the `margin` (what `sort: confidence` sorts on, lowest first)."""
        return self.margin if self.multilabel else float(max(self.probabilities))

    @property
    def correct(self) -> bool | None:
        """Whether the prediction is right (multi-label: the predicted set equals the true set); None if unknown."""
        if self.multilabel:
            return None if self.true_set is None else sorted(self.predicted_labels) == sorted(self.true_set)
        return None if self.true_label is None else self.predicted == self.true_label

    @property
    def missed(self) -> list[int]:
        """Multi-label: true labels not predicted (empty when the truth is unknown)."""
        return sorted(set(self.true_labels or []) - set(self.predicted_labels))

    @property
    def extra(self) -> list[int]:
        """Multi-label: predicted labels that are not true (empty when the truth is unknown)."""
        return [] if not self.labelled else sorted(set(self.predicted_labels) - set(self.true_labels or []))

    @property
    def sentences_cut(self) -> int:
        return sum(s.cut for s in self.sentences)


@dataclass
class InputDocuments:
    """Texts to report on (a document's `row` is its 1-based position here) and their true labels when known:
    class ids, or for a multi-label run an (N, C) 0/1 matrix."""

    texts: list[str]
    labels: list[int] | np.ndarray | None
    source: str


def _label_ids(names: list[str], label_names: list[str], where: str) -> list[int]:
    index = {name: i for i, name in enumerate(label_names)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise DataError(
            f"{where}: label(s) {', '.join(map(repr, unknown))} unknown to the model; known: {', '.join(label_names)}"
        )
    return [index[name] for name in names]


def _label_sets(sets: list[tuple[str, ...]], label_names: list[str], where: str) -> np.ndarray:
    """Label sets (tuples of names) as an (N, C) int8 0/1 matrix; a label unknown to the run is a DataError."""
    _label_ids(sorted({name for labels in sets for name in labels}), label_names, where)
    return np.asarray(label_matrix(sets, label_names), dtype=np.int8)


def _true_labels(trained: TrainedRun, labels: list[Any], where: str) -> list[int] | np.ndarray:
    if trained.multilabel:
        return _label_sets(labels, trained.label_names, where)
    return _label_ids(labels, trained.label_names, where)


def read_documents(
    trained: TrainedRun,
    source: Path | None,
    split: str | None = None,
    first: int | None = None,
    stdin: IO[str] | None = None,
) -> InputDocuments:
    """Documents from a file (labels read when it has the run's label column), or one split of a data source.

    With `split`, the source (default: the run's own `data.source`) is loaded with the run's data settings
    (split column, carving seed), so `test` is the very test split the run was evaluated on; `first` then
    keeps only that split's first documents (a bounded sample: the rest of the split is never materialised).
    A multi-label run reads label sets (an (N, C) 0/1 matrix over the run's labels). Without a source or a
    split, `stdin` is read as `han predict` reads it (one document a line); a folder, as its .txt files.
    """
    data_config: DataConfig = trained.config.data
    multilabel = trained.multilabel
    if split is not None and stdin is not None:
        raise ConfigError(f"--split {split!r}: standard input has no splits; give a data source or drop --split")
    if split is not None:
        if source is not None:
            data_config = data_config.model_copy(update={"source": str(source)})
        loaded = load_data(data_config, trained.config.seed, multilabel=multilabel)
        if split not in loaded.splits:
            raise ConfigError(f"--split {split!r}: no such split (choose from {', '.join(sorted(loaded.splits))})")
        raw = loaded.splits[split]
        where = f"{data_config.source} [{split}]"
        if first is None:
            texts, labels = list(raw.texts), list(raw.labels)
        else:  # a lazy TextColumn reads only these rows
            texts, labels = list(raw.texts[:first]), list(raw.labels[:first])
        return InputDocuments(texts, _true_labels(trained, labels, where), where)
    max_chars = trained.config.preprocess.max_chars  # lines of a .txt file are cut at it while read
    if source is None and stdin is not None:
        return InputDocuments(list(iter_input_texts(None, data_config, stdin, max_chars)), None, "standard input")
    if source is None:
        raise DataError("no input: give a file of documents, '-' for standard input, or --split NAME")
    if not source.exists():
        raise DataError(f"{source}: input file not found")
    if source.suffix.lower() == ".txt" or source.is_dir():
        return InputDocuments(list(iter_input_texts(source, data_config, max_chars=max_chars)), None, str(source))
    if all(has_column(source, data_config, column) for column in data_config.label_source_columns):
        raw = load_labelled_file(source, data_config, multilabel=multilabel)
        return InputDocuments(list(raw.texts), _true_labels(trained, list(raw.labels), str(source)), str(source))
    return InputDocuments(list(iter_input_texts(source, data_config, max_chars=max_chars)), None, str(source))


def _label_set_matrix(labels: Any, documents: int, classes: int) -> np.ndarray:
    """Multi-label true labels given as an (N, C) 0/1 matrix or as one list of label ids per document."""
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        matrix = labels.astype(np.int8)
    else:
        matrix = np.zeros((documents, classes), dtype=np.int8)
        for d, ids in enumerate(labels):
            matrix[d, list(ids)] = 1
    if matrix.shape != (documents, classes):
        raise ValueError(f"labels of shape {matrix.shape} for {documents} documents and {classes} labels")
    return matrix


def document_views(
    trained: TrainedRun,
    texts: list[str],
    labels: list[int] | list[list[int]] | np.ndarray | None,
    progress: Progress | None = None,
) -> list[DocumentView]:
    """Segment, encode and score every text; return what the model read and attended to, document by document.

    Texts are read exactly as `han predict` reads them (`TrainedRun.segment`: cleaning, the max_chars cut,
    one segmentation rule); the views keep every token as written, including those the caps cut.
    `labels`: class ids; for a multi-label run an (N, C) 0/1 matrix or one list of label ids per document.
    """
    config = trained.config.preprocess
    multilabel = trained.multilabel
    true_sets: np.ndarray | None = None  # multi-label: (N, C) 0/1
    class_ids: list[int] | None = None  # multiclass
    if labels is not None and multilabel:
        true_sets = _label_set_matrix(labels, len(texts), len(trained.label_names))
    elif labels is not None:
        class_ids = np.asarray(labels, dtype=np.int64).tolist()
    segmented = trained.segment(texts, surface=True)
    split = trained.encode_segmented(segmented, true_sets if multilabel else class_ids)
    scores = score_split(
        trained.model, split, trained.config.train.eval_batch_size, trained.config.precision, True, progress
    )
    predicted_sets = trained.predicted_sets(scores.probabilities) if multilabel else None
    thresholds = None if trained.thresholds is None else trained.thresholds.tolist()
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
        if predicted_sets is not None:
            views.append(
                DocumentView(
                    row=d + 1,
                    sentences=sentence_views,
                    probabilities=scores.probabilities[d].tolist(),
                    true_label=None,
                    predicted_set=np.flatnonzero(predicted_sets[d]).tolist(),
                    true_set=None if true_sets is None else np.flatnonzero(true_sets[d]).tolist(),
                    thresholds=thresholds,
                    attention_share=_share(scores.attention_share, d),
                )
            )
            continue
        views.append(
            DocumentView(
                row=d + 1,
                sentences=sentence_views,
                probabilities=scores.probabilities[d].tolist(),
                true_label=None if class_ids is None else class_ids[d],
                attention_share=_share(scores.attention_share, d),
            )
        )
    del model_words
    return views


def _share(shares: np.ndarray | None, document: int) -> float | None:
    return None if shares is None else float(shares[document])


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
    """Filter, sort and limit documents as the options say.

    Multi-label views: `only` compares the predicted and true label sets (misclassified: they differ);
    `true_label` / `predicted_label` keep the documents whose true / predicted set holds that label;
    `sort: confidence` puts the smallest margin |probability - threshold| first (the most uncertain
    documents), and `sort: misclassified` puts documents whose sets differ first, then by that margin.
    """
    check_selection(options, all(v.labelled for v in views), label_names)
    chosen = views
    if options.only != "all":
        chosen = [v for v in chosen if v.correct == (options.only == "correct")]
    if options.true_label is not None:
        wanted = label_names.index(options.true_label)
        chosen = [v for v in chosen if wanted in (v.true_labels or [])]
    if options.predicted_label is not None:
        wanted = label_names.index(options.predicted_label)
        chosen = [v for v in chosen if wanted in v.predicted_labels]
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
    multilabel: bool = False  # task multilabel: label sets, one attention shared by every label


def document_report(
    trained: TrainedRun,
    source: Path | None,
    split: str | None,
    options: DocumentReportConfig,
    progress: Progress | None = None,
    first: int | None = None,
    stdin: IO[str] | None = None,
) -> DocumentReport:
    """Read the input (with `split` and `first`: only the split's first documents), run the model with
    attention, and select the documents to show."""
    trained.require_attention("han report")
    documents = read_documents(trained, source, split, first, stdin)
    if not documents.texts:
        raise DataError(f"{documents.source}: the input holds no documents")
    check_selection(options, documents.labels is not None, trained.label_names)
    views = document_views(trained, documents.texts, documents.labels, progress)
    empty = EmptyDocuments()  # no sentence: nothing but whitespace once cleaned
    for view in views:
        if not view.sentences:
            empty.add(view.row)
    empty.warn(documents.source, len(views))
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
        multilabel=trained.multilabel,
    )


def round6(value: float) -> float:
    """A weight or probability rounded for output (6 decimals)."""
    return round(float(value), 6)


def document_record(view: DocumentView, label_names: list[str]) -> dict[str, Any]:
    """One document as plain data (a JSON Lines record). Cut tokens have weight null; cut sentences weight null.

    Multi-label: "predicted" and "true" are lists of label names (the sets), "correct" is exact match,
    "margin" (the smallest |probability - threshold|) replaces "confidence", and "thresholds" are given.
    """
    head: dict[str, Any]
    if view.multilabel:
        true = view.true_labels
        assert view.thresholds is not None
        head = {
            "row": view.row,
            "predicted": [label_names[c] for c in view.predicted_labels],
            "true": None if true is None else [label_names[c] for c in true],
            "correct": view.correct,
            "margin": round6(view.margin),
            "thresholds": {name: round6(t) for name, t in zip(label_names, view.thresholds, strict=True)},
        }
    else:
        head = {
            "row": view.row,
            "predicted": label_names[view.predicted],
            "true": None if view.true_label is None else label_names[view.true_label],
            "correct": view.correct,
            "confidence": round6(view.confidence),
        }
    if view.attention_share is not None:  # model.wide: how much of the decision the attention path made
        head["attention_share"] = round6(view.attention_share)
    return {
        **head,
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
