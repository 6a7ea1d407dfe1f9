"""han as a Python library: load a trained run, predict and explain in-memory texts, train from Python.

    import han
    classifier = han.load("runs/bbc")            # a run directory (or a copy of one), checked like the CLI does
    classifier.predict(["Shares rose ..."])      # labels + probabilities (a str, list, Series, array, iterator of str)
    classifier.predict(df["text"]).to_frame()    # the same as a pandas DataFrame: label, p_<class> ... (han predict's CSV)
    classifier.explain("Shares rose ...")        # sentences and words with their weights; shows itself in Jupyter
    han.run("configs/bbc.yaml", ["train.lr=0.001"], run_dir="runs/bbc2")   # preprocess + train + evaluate
    han.train(df, text="body", label="topic", run_dir="runs/mine")         # the same, from a DataFrame in memory

Texts go through exactly what `han predict` does (han/serving/trained.py: cleaning, the max_chars cut, the one
segmentation rule, caps, vocabulary; han/serving/inference.py: chunked scoring). Errors are han's typed errors
(`han.errors.HanError` and subclasses), never prints or exits.

A multi-label run (task: multilabel) predicts a label SET per text: `Predictions.labels` is then a
list of lists of label names (in `classes` order, possibly empty unless `predict.at_least_one`), the
labels whose probability reaches the run's decision threshold (`Classifier.thresholds`, chosen on
validation), exactly the "labels" `han predict` writes; the probabilities are independent per label
(a sigmoid each; a row does not sum to 1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from han.config import Config, DocumentReportConfig, load_config
from han.errors import ConfigError, DataError
from han.progress import Progress
from han.reports.documents import DocumentReport, DocumentView, document_views
from han.reports.html import BASE_CSS
from han.reports.pages import DOCUMENT_CSS, document_card
from han.serving.inference import PREDICT_CHUNK_SIZE, predict_texts, prediction_columns
from han.serving.trained import TrainedRun, load_trained_run
from han.workflows.run import RunResult, run_all

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Predictions:
    """Predicted labels and class probabilities of a list of texts, in input order.

    Single-label run: `labels[i]` is the most probable class of text i, and each row of
    `probabilities` sums to 1. Multi-label run (`multilabel`): `labels[i]` is the list of label names
    predicted for text i (those at or above their thresholds, in `classes` order; empty when none is,
    unless the run's `predict.at_least_one` gives it the most probable one), and `probabilities` holds
    each label's own probability (rows need not sum to 1).
    """

    labels: list[str] | list[list[str]]  # (N,) a class per text, or (multi-label) a list of labels per text
    probabilities: np.ndarray  # (N, C) float32, columns in `classes` order
    classes: list[str]
    multilabel: bool = False  # task multilabel: `labels` holds label sets

    def __len__(self) -> int:
        return len(self.labels)

    def to_frame(self) -> pd.DataFrame:
        """A pandas DataFrame, one row per text in input order: the columns of `han predict`'s CSV after "row"
        ("label", or "labels" holding a list of names for a multi-label run, then p_<class> per class)."""
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - datasets requires pandas
            raise ImportError("Predictions.to_frame needs pandas: pip install pandas") from None
        label_column, *probability_columns = prediction_columns(self.classes, self.multilabel)
        frame = pd.DataFrame(
            np.asarray(self.probabilities).reshape(len(self), len(self.classes)), columns=probability_columns
        )
        frame.insert(0, label_column, pd.Series(list(self.labels), dtype=object) if self.multilabel else self.labels)
        return frame


@dataclass(frozen=True)
class WordWeight:
    """A token as written and its weight within its sentence (None: cut by max_words, not read)."""

    word: str
    weight: float | None


@dataclass(frozen=True)
class SentenceWeight:
    """A sentence as written, its weight within the document (None: cut by max_sentences) and its words."""

    text: str
    weight: float | None
    words: list[WordWeight]


@dataclass(frozen=True)
class Explanation:
    """Why the model chose `label` for `text`: its probabilities and the attention over sentences and words.

    For a multi-label run, `labels` is the predicted label set (as in `Predictions.labels`), `label` the
    most probable label and `probabilities` each label's own probability; the attention weights are the
    document's (one attention for every label). `labels` is None for a single-label run.
    """

    text: str
    label: str
    probabilities: dict[str, float]
    sentences: list[SentenceWeight]
    _report: DocumentReport = field(repr=False, compare=False)
    labels: list[str] | None = None

    def _repr_html_(self) -> str:
        """The report page's card for this document (every piece of text escaped; no scripts), for Jupyter."""
        css = _scoped(BASE_CSS + DOCUMENT_CSS, ".han-explanation")
        return f'<div class="han-explanation"><style>{css}</style>{document_card(self._report.documents[0], self._report)}</div>'


def _scoped(css: str, scope: str) -> str:
    """Prefix every selector of a flat stylesheet with `scope`, so the card's styles stay inside it in a notebook."""
    rules = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        scoped = ",".join(
            f"{scope}" if s.strip() == "body" else f"{scope} {s.strip()}" for s in selectors.split(",") if s.strip()
        )
        rules.append(f"{scoped}{{{body}}}")
    return "\n".join(rules)


TABLE_TYPES = ("DataFrame", "Table", "Dataset", "DatasetDict", "RecordBatch")  # pandas, polars, pyarrow, datasets


def _kind(value: object) -> str:
    """How a refused value is named in a message: None, a table's module and class, else its type's name."""
    if value is None:
        return "None"
    kind = type(value)
    if kind.__name__ in TABLE_TYPES:
        return f"a {kind.__module__.partition('.')[0]} {kind.__name__}"
    return kind.__name__


def _refused(value: object, where: str) -> DataError:
    """The one-line error for a value that is not a text (`where`: "texts" or "texts[i]")."""
    kind = _kind(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return DataError(f"{where} is {kind}, not str; decode it first (text.decode('utf-8'))")
    if where != "texts":
        if (isinstance(value, float) and value != value) or type(value).__name__ in ("NAType", "NaTType"):
            return DataError(f"{where} is {kind} (a missing value), not str; drop or fill the missing texts first")
        return DataError(f"{where} is {kind}, not str; pass one str per document")
    if type(value).__name__ in TABLE_TYPES:
        return DataError(f"texts is {kind}; pass one column, e.g. df['text']")
    if isinstance(value, (set, frozenset)):
        return DataError(f"texts is {kind}, which has no order; pass a list")
    if isinstance(value, dict):
        return DataError(f"texts is {kind}; pass a str or a sequence of str (e.g. list(d.values()))")
    return DataError(f"texts is {kind}; pass a str, or a list, tuple, Series, array or iterator of str")


def _texts(texts: Iterable[str] | str) -> list[str]:
    """A list of texts: one str is one text; a list, tuple, pandas Series, 1-D numpy array, pyarrow array or any
    iterable of str is one text per item, in order. Anything else is a `DataError` naming the position and type."""
    if isinstance(texts, str):
        return [str(texts)]
    if texts is None or isinstance(texts, (bytes, bytearray, memoryview, dict, set, frozenset)):
        raise _refused(texts, "texts")
    if type(texts).__name__ in TABLE_TYPES or not isinstance(texts, Iterable):
        raise _refused(texts, "texts")
    if isinstance(texts, np.ndarray) and texts.ndim != 1:
        raise DataError(f"texts is a {texts.ndim}-dimensional numpy array; pass a 1-dimensional array of str")
    if type(texts).__module__.startswith("pyarrow") and hasattr(texts, "to_pylist"):
        texts = texts.to_pylist()  # an Array or ChunkedArray: its items are Arrow scalars, not str
    items = []
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise _refused(text, f"texts[{index}]")
        items.append(text if type(text) is str else str(text))  # numpy's str_ -> str
    return items


class Classifier:
    """A trained run, ready to classify texts. Build it with `han.load`."""

    def __init__(self, trained: TrainedRun) -> None:
        self.trained = trained

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of the probability columns."""
        return list(self.trained.label_names)

    @property
    def run_dir(self) -> Path:
        """The run directory the model was loaded from."""
        return self.trained.run.root

    @property
    def config(self) -> Config:
        """The run's resolved config."""
        return self.trained.config

    @property
    def multilabel(self) -> bool:
        """Whether the run is multi-label (task: multilabel): predictions are label sets."""
        return self.trained.multilabel

    @property
    def thresholds(self) -> dict[str, float] | None:
        """A multi-label run's decision threshold of each label (chosen on validation); None for a single-label run."""
        values = self.trained.thresholds
        return None if values is None else {name: float(v) for name, v in zip(self.classes, values, strict=True)}

    def predict_proba(self, texts: Iterable[str] | str, chunk_size: int = PREDICT_CHUNK_SIZE) -> np.ndarray:
        """(N, C) float32 class probabilities of `texts`, scored chunk by chunk as `han predict` scores them
        (multi-label run: each label's own probability)."""
        items = _texts(texts)
        if not items:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.stack(list(predict_texts(self.trained, items, chunk_size))).astype(np.float32)

    def predict(self, texts: Iterable[str] | str, chunk_size: int = PREDICT_CHUNK_SIZE) -> Predictions:
        """The most probable class of each text, with every class's probability; for a multi-label run, the
        label set of each text (a list of label names, at the run's thresholds) with each label's probability."""
        probabilities = self.predict_proba(texts, chunk_size)
        classes = self.classes
        if self.multilabel:
            return Predictions(_label_sets(self.trained, probabilities), probabilities, classes, multilabel=True)
        return Predictions([classes[i] for i in probabilities.argmax(axis=1)], probabilities, classes)

    @overload
    def explain(self, texts: str) -> Explanation: ...  # type: ignore[overload-overlap]  # a str is one text

    @overload
    def explain(self, texts: Iterable[str]) -> list[Explanation]: ...

    def explain(self, texts: Iterable[str] | str) -> Explanation | list[Explanation]:
        """The prediction for a text with its sentence and word weights (models with attention only): one str
        gives one `Explanation`; a list (or any input `predict` takes) gives a list of them, in order.

        Multi-label run: `Explanation.labels` is the predicted label set (see `Explanation`)."""
        items = _texts(texts)
        self.trained.require_attention("explain")
        views = document_views(self.trained, items, None) if items else []
        explanations = [_explanation(item, view, self.trained) for item, view in zip(items, views, strict=True)]
        return explanations[0] if isinstance(texts, str) else explanations

    def __repr__(self) -> str:
        return f"Classifier({str(self.run_dir)!r}, model.kind={self.config.model.kind}, classes={self.classes})"


def _label_sets(trained: TrainedRun, probabilities: np.ndarray) -> list[list[str]]:
    """The predicted label names of each row of a multi-label run's (N, C) probabilities, in class order."""
    if not len(probabilities):
        return []
    names = trained.label_names
    return [[names[i] for i in np.flatnonzero(row)] for row in trained.predicted_sets(probabilities)]


def _explanation(text: str, view: DocumentView, trained: TrainedRun) -> Explanation:
    sentences = []
    for sentence in view.sentences:
        written = "".join(t + (" " if space else "") for t, space in zip(sentence.tokens, sentence.spaces, strict=True))
        weights: Sequence[float | None] = [*sentence.word_weights] + [None] * sentence.words_cut
        if sentence.weight is None:
            weights = [None] * len(sentence.tokens)
        words = [WordWeight(t, w) for t, w in zip(sentence.tokens, weights, strict=True)]
        sentences.append(SentenceWeight(written.strip(), sentence.weight, words))
    names = trained.label_names
    report = DocumentReport(
        names,
        [view],
        1,
        str(trained.run.root),
        "explain",
        trained.config.preprocess.max_sentences,
        trained.config.preprocess.max_words,
        DocumentReportConfig(),
    )
    probabilities = {name: float(p) for name, p in zip(names, view.probabilities, strict=True)}
    labels = [names[i] for i in view.predicted_labels] if trained.multilabel else None
    return Explanation(text, names[view.predicted], probabilities, sentences, report, labels)


def load(path: str | Path, weights: str = "best", device: str | None = None) -> Classifier:
    """A trained run directory (or a copy of one) as a `Classifier`, its files checked against the manifest.

    `weights`: best or last; `device`: auto, cpu, cuda or cuda:N (default: the run's `device` setting).
    """
    return Classifier(load_trained_run(Path(path), weights, device))


def run(
    config: str | Path | Config,
    overrides: list[str] | None = None,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Preprocess, train and evaluate like `han run`: a config file (with dotted overrides) or a `Config`.

    `run_dir` defaults to runs/<config file name> (a `Config` object needs one).
    """
    if isinstance(config, Config):
        if overrides:
            from han.config import config_from_dict

            config = config_from_dict(config.model_dump(mode="json"), "config", overrides)
        if run_dir is None:
            raise ConfigError("han.run(Config(...)) needs run_dir: the run directory to write")
        resolved = config
    else:
        resolved = load_config(config, overrides or [])
        run_dir = run_dir if run_dir is not None else Path("runs") / Path(config).stem
    return run_all(resolved, Path(run_dir), progress, resume=resume, overwrite=overwrite)


def train(
    data: Any,
    *,
    run_dir: str | Path,
    text: str | list[str] | None = None,
    label: str | None = None,
    config: str | Path | Config | None = None,
    overrides: list[str] | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Preprocess, train and evaluate like `han run`, on rows held in memory.

    `data`: a pandas DataFrame, a pyarrow Table, a datasets `Dataset`, or a `DatasetDict` (any dict of split
    name -> one of those). `text` and `label` name its columns (default: the config's, else "text" and
    "label"); `config`: a config file or a `Config` for every other setting (default: han's defaults);
    `overrides`: dotted settings as on the command line (["train.max_epochs=2"]). The rows are written
    under RUN_DIR/input/ as Parquet and the run's config.json names them as `data.source`, so the run
    is the one `han run` makes of those rows in a file, and `han run RUN_DIR/config.json` repeats it.
    `run_dir` must be new or empty, or a han run directory with `overwrite`.
    """
    from han.workflows.in_memory import train_from_tables

    return train_from_tables(
        data, Path(run_dir), config, overrides, text=text, label=label, overwrite=overwrite, progress=progress
    )
