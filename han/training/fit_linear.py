"""The train stage for `model.kind: linear`: TF-IDF n-grams of the encoded training split, fitted by scikit-learn;
and the same fit beside every network (`train.linear_baseline`), compared with it on validation.

A network that trails TF-IDF + a linear classifier on validation is worse than the first model a practitioner
would try, so every training of a network also fits the linear kind (seconds) and records its validation
score beside the network's: with the n-gram channel on, the channel's table and training rows are the linear
kind's features already and are reused; with `model.wide_weights: fitted` the linear kind is the network's
starting point, scored as epoch 0, and nothing is fitted twice.

The features come from `han.models.linear` (the same code that scores), so training and prediction read a
document identically. The fitted n-gram table, idf and weights are saved as the run's safetensors
weights (best and last are the same fit); no pickle is written.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.sparse import csr_matrix

from han.config import Config, ModelConfig
from han.errors import ConfigError, DataError
from han.evaluation.metrics import split_metrics
from han.evaluation.scoring import predict_probabilities
from han.models.build import build_model, trains_by_gradient
from han.models.ensemble import fitted_wide_channel
from han.models.linear import TfidfLinearModel
from han.models.ngrams import TfidfFeatures, ngram_keys
from han.progress import Progress
from han.store.encoded import EncodedSplit
from han.store.rundir import RunDir
from han.store.vocab import UNK_ID, Vocab
from han.store.weights import save_weights
from han.training.run_files import VALIDATION_FIGURES, TrainingFiles, TrainResult, validation_fields
from han.training.weighting import class_weights, named_class_weights
from han.util.atomic import write_text_atomic
from han.util.forked import side_by_side

log = logging.getLogger(__name__)

# scikit-learn's default token pattern: a token of two or more word characters (model.linear_tokens: words).
WORD_TOKEN = re.compile(r"\w\w+")


@dataclass
class LinearFit:
    """What fitting produced: the validation record (as an epoch of the train log) and the time it took."""

    record: dict[str, Any]
    seconds: float
    documents: int
    class_weights: dict[str, float] | None = None  # train.class_weight's, by class name


def kept_tokens(vocab: Vocab, tokens: str) -> torch.Tensor:
    """(V,) which vocabulary ids the features read: all, or words of 2+ word characters (and the unknown word)."""
    if tokens == "all":
        return torch.ones(len(vocab), dtype=torch.bool)
    keep = torch.tensor([WORD_TOKEN.fullmatch(word) is not None for word in vocab.words], dtype=torch.bool)
    keep[UNK_ID] = True
    return keep


CHUNK_TOKENS = 1 << 20  # tokens of documents whose n-grams are counted at once: bounds the fitting's memory


def document_chunks(split: EncodedSplit, max_tokens: int) -> Iterator[tuple[int, int]]:
    """Consecutive ranges [first, last) of the split's documents, about `max_tokens` tokens each (>= 1 document)."""
    token_offsets = split.sentence_offsets[split.document_offsets]  # (N+1,) each document's first token
    first = 0
    while first < len(split):
        last = int(np.searchsorted(token_offsets, token_offsets[first] + max_tokens, side="right")) - 1
        last = min(max(last, first + 1), len(split))
        yield first, last
        first = last


def split_ngrams(
    split: EncodedSplit, keep: torch.Tensor, vocab_size: int, max_n: int, first: int = 0, last: int | None = None
) -> tuple[torch.Tensor, ...]:
    """Every n-gram occurrence of documents [first, last) of a split (all by default): (document (K,), key (K,)),
    documents numbered from `first`."""
    last = len(split) if last is None else last
    token_offsets = split.sentence_offsets[split.document_offsets[first : last + 1]]  # (n+1,) documents' first tokens
    document = np.repeat(np.arange(first, last), np.diff(token_offsets))  # (T,)
    tokens = torch.from_numpy(split.tokens[token_offsets[0] : token_offsets[-1]].astype(np.int64))
    kept = keep[tokens]
    return ngram_keys(tokens[kept], torch.from_numpy(document)[kept], vocab_size, max_n)


def _distinct(values: np.ndarray, inverse: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The sorted distinct `values` and, with `inverse`, where each value is among them: np.unique's, by sorting
    (its hashing is several times slower here)."""
    order = np.argsort(values) if inverse else None
    ordered = values[order] if order is not None else np.sort(values)
    first = np.r_[True, ordered[1:] != ordered[:-1]] if values.size else np.zeros(0, dtype=bool)
    if order is None:
        return ordered[first], None
    position = np.empty_like(order)
    position[order] = np.cumsum(first) - 1
    return ordered[first], position


def _summed(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct `keys` with the sums of their `counts`."""
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if keys.size else np.zeros(0, dtype=np.int64)
    return keys[starts], np.add.reduceat(counts, starts) if keys.size else counts


def document_frequencies(
    split: EncodedSplit, keep: torch.Tensor, vocab_size: int, max_n: int, max_tokens: int
) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct n-gram keys (F,), how many documents hold each (F,)), int64, counted a chunk of documents
    at a time: memory grows with the distinct n-grams, not with the split's n-gram occurrences."""
    keys, frequency = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pending: list[tuple[np.ndarray, np.ndarray]] = []  # chunks' counts not yet merged into (keys, frequency)
    chunks = list(document_chunks(split, max_tokens))
    for counted in side_by_side(_chunk_frequencies, (split, keep, vocab_size, max_n), chunks):  # one chunk a core
        pending.append(counted)
        if sum(p[0].size for p in pending) > max(keys.size, max_tokens):  # merge as often as the table doubles
            keys, frequency = _summed(*map(np.concatenate, zip((keys, frequency), *pending, strict=True)))
            pending = []
    keys, frequency = _summed(*map(np.concatenate, zip((keys, frequency), *pending, strict=True)))
    return keys, frequency


def _chunk_frequencies(
    inputs: tuple[EncodedSplit, torch.Tensor, int, int], chunk: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct n-gram keys of documents [first, last) and how many of those documents hold each."""
    split, keep, vocab_size, max_n = inputs
    first, last = chunk
    document, key = (t.numpy() for t in split_ngrams(split, keep, vocab_size, max_n, first, last))
    distinct, inverse = _distinct(key, inverse=True)  # (U,), (K,)
    pairs, _ = _distinct((document - first) * distinct.size + inverse)  # each (document, n-gram) once
    return distinct, np.bincount(pairs % max(distinct.size, 1), minlength=distinct.size)


@dataclass
class NgramTable:
    """The n-grams of a training split: which tokens are read and the fitted table with its idf."""

    keep: torch.Tensor  # (V,) vocabulary ids the features read
    keys: torch.Tensor  # (F,) sorted distinct keys: the features
    idf: torch.Tensor  # (F,) float64, scikit-learn's smoothed idf


def ngram_table(train: EncodedSplit, vocab: Vocab, config: ModelConfig) -> NgramTable:
    """Every n-gram of the training split (model.linear_ngrams, linear_tokens) in at least `linear_min_df` of its
    documents, and the TF-IDF table they make."""
    keep = kept_tokens(vocab, config.linear_tokens)
    keys, document_frequency = document_frequencies(train, keep, len(vocab), config.linear_ngrams, CHUNK_TOKENS)
    if config.linear_min_df > 1:  # scikit-learn's min_df: rarer n-grams are no features (nor in the idf's table)
        frequent = document_frequency >= config.linear_min_df
        keys, document_frequency = keys[frequent], document_frequency[frequent]
        if not frequent.any():
            raise ConfigError(
                f"model.linear_min_df {config.linear_min_df}: no n-gram is in that many of the {len(train)} training "
                "documents; lower it (2 is the default)"
            )
    idf = torch.log((1 + len(train)) / (1 + torch.from_numpy(document_frequency).double())) + 1  # smoothed idf
    return NgramTable(keep, torch.from_numpy(keys), idf)


def compared_metric(config: Config) -> str:
    """The validation metric the network and the linear kind are compared on, and `linear_c: auto` chooses C by:
    early stopping's, or accuracy (micro-F1 for label sets) where that is the loss (an SVM's margins make no
    comparable loss)."""
    metric = config.train.early_stopping_metric
    if metric == "loss":
        metric = "micro_f1" if config.multilabel else "accuracy"
    return f"validation_{metric}"


# model.linear_c auto: the inverse regularisation strengths tried, scikit-learn's default first (it wins ties).
LINEAR_C_CHOICES = (1.0, 0.3, 3.0)


class FittedClassifier(NamedTuple):
    """A linear classifier fitted on TF-IDF rows: margins = rows @ weight.T + bias."""

    weight: torch.Tensor  # (C, F) float64
    bias: torch.Tensor  # (C,) float64
    c: float  # the inverse regularisation strength it was fitted at (model.linear_c, or the one auto chose)


def fit_ngram_classifier(
    features: TfidfFeatures,
    train: EncodedSplit,
    num_classes: int,
    config: Config,
    run: RunDir,
    rows: csr_matrix | None = None,
    validation: EncodedSplit | None = None,
) -> FittedClassifier:
    """The linear classifier of `model.linear_classifier` fitted on the training split's TF-IDF rows, as read by
    `features` (which holds the fitted table; `rows`: those rows when the caller has them); one-vs-rest for label
    sets. `model.linear_c: auto` fits each of LINEAR_C_CHOICES and keeps the one `validation` scores best on early
    stopping's metric (accuracy or micro-F1 for the loss)."""
    rows = tfidf_rows(features, train) if rows is None else rows
    if config.model.linear_c != "auto":
        return FittedClassifier(
            *_fit_rows(rows, train.labels, num_classes, config, run, config.model.linear_c), c=config.model.linear_c
        )
    if validation is None:
        raise ValueError("model.linear_c auto chooses C on the validation split: pass it")
    validation_rows, label_names = tfidf_rows(features, validation), run.load_labels()
    metric = compared_metric(config).removeprefix("validation_")
    inputs = (as_float64(rows), train.labels, num_classes, config, run)
    largest_first = sorted(LINEAR_C_CHOICES, reverse=True)  # a larger C converges more slowly: started first
    fits = dict(zip(largest_first, side_by_side(_fit_choice, inputs, largest_first), strict=True))
    best: tuple[float, FittedClassifier] | None = None
    for c in LINEAR_C_CHOICES:
        weight, bias = fits[c]
        margins = torch.from_numpy(validation_rows @ weight.numpy().T) + bias  # (N, C)
        scores = torch.sigmoid(margins) if train.multilabel else torch.softmax(margins, dim=1)
        value = split_metrics(validation.labels, scores.numpy(), label_names)[metric]
        log.info("linear: C %g, validation %s %.4f", c, metric, value)
        if best is None or value > best[0]:
            best = (value, FittedClassifier(weight, bias, c))
    assert best is not None
    log.info("linear: C %g chosen on validation", best[1].c)
    return best[1]


# model.wide_training_scores out_of_fold: the training split's folds, each scored by a classifier fitted on the others
WIDE_FOLDS = 5


def out_of_fold_scores(
    rows: csr_matrix, labels: np.ndarray, num_classes: int, config: Config, run: RunDir, c: float
) -> np.ndarray:
    """(N, C) float32: each training document's class scores (rows @ weight.T, without the intercept, which the
    network's output layer holds) from a classifier fitted at `c` on the other WIDE_FOLDS - 1 folds, the folds
    drawn from config.seed; the fits side by side as `linear_c: auto`'s are. Where a fold's training part lacks a
    class, its documents score 0 for it (the full classifier's weights for a class it never saw are 0 too)."""
    fold = np.random.default_rng(config.seed).permutation(len(labels)) % WIDE_FOLDS  # (N,)
    folds = list(range(WIDE_FOLDS))
    inputs = (as_float64(rows), labels, num_classes, config, run, c, fold)
    scores = np.zeros((len(labels), num_classes), dtype=np.float32)
    for k, (weight, _) in zip(folds, side_by_side(_fit_fold, inputs, folds), strict=True):
        held = np.flatnonzero(fold == k)
        scores[held] = rows[held] @ weight.numpy().T
    return scores


def as_float64(rows: csr_matrix) -> csr_matrix:
    """`rows` with float64 values, the indices shared: scikit-learn's fits take float64 and would each convert
    their own copy (in each forked worker, a copy of its own)."""
    return csr_matrix((rows.data.astype(np.float64), rows.indices, rows.indptr), shape=rows.shape)


def _fit_fold(inputs: tuple[Any, ...], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, labels, num_classes, config, run, c, fold = inputs
    kept = np.flatnonzero(fold != k)
    if labels.ndim == 1 and np.unique(labels[kept]).size < 2:  # a tiny split: nothing to tell apart without fold k
        return torch.zeros(num_classes, rows.shape[1], dtype=torch.float64), torch.zeros(
            num_classes, dtype=torch.float64
        )
    return _fit_rows(rows[kept], labels[kept], num_classes, config, run, c)


FitInputs = tuple[csr_matrix, np.ndarray, int, Config, RunDir]  # what `_fit_rows` takes besides C


def _fit_choice(inputs: FitInputs, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    rows, labels, num_classes, config, run = inputs
    return _fit_rows(rows, labels, num_classes, config, run, c)


def _fit_rows(
    rows: csr_matrix, labels: np.ndarray, num_classes: int, config: Config, run: RunDir, c: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One fit at inverse regularisation strength `c` on class ids (N,) or label sets (N, C): (weight (C, F), bias (C,))."""
    if labels.ndim == 2:
        return _fit_one_vs_rest(rows, labels, config, c)
    return _fit_classes(rows, labels, num_classes, config, run, c)


def tfidf_rows(features: TfidfFeatures, split: EncodedSplit) -> csr_matrix:
    """The split's TF-IDF rows as read by `features` (which holds the fitted table), a chunk of documents at a
    time: (N, F).

    The entries come ordered by document, then feature, so they are the CSR arrays as they are (no COO copy)."""
    columns, values = [np.zeros(0, dtype=np.int32)], [np.zeros(0, np.float32)]
    entries_per_row = np.zeros(len(split), dtype=np.int64)
    chunks = list(document_chunks(split, CHUNK_TOKENS))
    for (first, last), (entries, column, value) in zip(
        chunks, side_by_side(_chunk_rows, (features, split), chunks), strict=True
    ):  # one chunk a core
        entries_per_row[first:last] = entries
        columns.append(column)
        values.append(value)
    indptr = np.concatenate([[0], np.cumsum(entries_per_row)])
    shape = (len(split), features.num_features)
    return csr_matrix((np.concatenate(values), np.concatenate(columns), indptr), shape=shape)


def _chunk_rows(
    inputs: tuple[TfidfFeatures, EncodedSplit], chunk: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The TF-IDF entries of documents [first, last): entries per document, their columns and values."""
    features, split = inputs
    first, last = chunk
    document, key = split_ngrams(split, features.kept_tokens, features.vocab_size, features.max_n, first, last)
    row, column, value = features.tfidf(document - first, key, last - first)
    return np.bincount(row.numpy(), minlength=last - first), column.numpy().astype(np.int32), value.numpy()


def fitted_linear_model(
    config: Config,
    run: RunDir,
    train: EncodedSplit,
    num_classes: int,
    validation: EncodedSplit,
    features: TfidfFeatures | None = None,
    rows: csr_matrix | None = None,
) -> TfidfLinearModel:
    """The linear kind fitted on the training split (`validation`: where `linear_c: auto` chooses C): its n-gram
    table that of `features` when given (a wide channel's, the same features), else fitted here; `rows`: the
    split's TF-IDF rows when the caller has them."""
    mc = config.model
    if features is None:
        vocab = run.load_vocab()
        table = ngram_table(train, vocab, mc)
        vocab_size, keep, keys, idf = len(vocab), table.keep, table.keys, table.idf
    else:
        vocab_size = features.vocab_size
        keep, keys, idf = (t.detach().cpu() for t in (features.kept_tokens, features.feature_keys, features.idf))
    linear = mc.model_copy(update={"kind": "linear", "ensemble": 1})
    model = build_model(linear, vocab_size, config.embeddings.dim, num_classes, multilabel=config.multilabel)
    assert isinstance(model, TfidfLinearModel)
    model.set_fitted(keep, keys, idf, torch.zeros(num_classes, keys.numel()), torch.zeros(num_classes))
    log.info("linear: %d documents x %d n-gram features; fitting %s", len(train), keys.numel(), mc.linear_classifier)
    weight, bias, _ = fit_ngram_classifier(model, train, num_classes, config, run, rows, validation)
    model.set_fitted(keep, keys, idf, weight, bias)
    return model


def validation_record(
    model: torch.nn.Module, validation: EncodedSplit, label_names: list[str], config: Config
) -> dict[str, float]:
    """A model's validation metrics under the names of the train log's epoch records."""
    metrics = split_metrics(
        validation.labels,
        predict_probabilities(model, validation, config.train.eval_batch_size, config.precision),
        label_names,
    )
    return validation_fields(metrics)


def fit_linear(config: Config, run: RunDir, progress: Progress) -> LinearFit:
    """Fit TF-IDF + a linear classifier on the train split, validate, write best/last weights and the train log."""
    start = time.perf_counter()
    label_names = run.load_labels()
    train, validation = EncodedSplit.load(run.data_path("train")), EncodedSplit.load(run.data_path("validation"))
    progress.start("TF-IDF features", len(train))
    model = fitted_linear_model(config, run, train, len(label_names), validation)
    progress.advance(len(train))
    progress.stop()
    seconds = time.perf_counter() - start
    record = {
        "epoch": 1,
        "train_loss": None,
        **validation_record(model, validation, label_names, config),
        "lr": None,
        "seconds": round(seconds, 3),
        "docs_per_s": round(len(train) / max(seconds, 1e-9), 1),
        "features": model.num_features,
    }
    save_weights(model, run.best_weights_path)
    save_weights(model, run.last_weights_path)
    write_text_atomic(run.train_log_path, json.dumps(record) + "\n")
    run.record_artifacts(run.best_weights_path, run.last_weights_path, run.train_log_path)
    log.info("linear: %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})
    weights = None if train.multilabel else class_weights(train.labels, len(label_names), config.train.class_weight)
    return LinearFit(record, seconds, len(train), named_class_weights(weights, label_names))


def _fit_classes(
    features: csr_matrix, labels: np.ndarray, num_classes: int, config: Config, run: RunDir, c: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One fit over class ids: (weight (C, F), bias (C,)); a class training never saw is never predicted.

    train.class_weight: scikit-learn's class_weight, the same weights as the networks' cross-entropy."""
    classes = np.unique(labels)
    if len(classes) < 2:
        raise DataError(f"{run.data_path('train')}: the training split has one class only; a classifier needs two")
    weights = class_weights(labels, num_classes, config.train.class_weight)
    by_class = None if weights is None else {int(c): float(weights[c]) for c in classes}
    weight, bias = _fit_classifier(features, labels, config, c, by_class)
    full_weight = torch.zeros(num_classes, features.shape[1], dtype=torch.float64)
    full_bias = torch.full((num_classes,), -1e4, dtype=torch.float64)  # a class training never saw: never predicted
    if len(classes) == 2:  # scikit-learn keeps one row, the margin of the second class
        full_weight[classes[1]], full_bias[classes[1]] = torch.from_numpy(weight[0]), float(bias[0])
        full_bias[classes[0]] = 0.0
    else:
        full_weight[classes], full_bias[classes] = torch.from_numpy(weight), torch.from_numpy(bias)
    return full_weight, full_bias


def _fit_one_vs_rest(
    features: csr_matrix, labels: np.ndarray, config: Config, c: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-label: one binary classifier per label (one-vs-rest): (weight (C, F), bias (C,)), margins read by a
    sigmoid. A label every training document has (or none has) gets a constant margin of +/-1e4."""
    num_labels = labels.shape[1]
    weight = torch.zeros(num_labels, features.shape[1], dtype=torch.float64)
    bias = torch.zeros(num_labels, dtype=torch.float64)
    for label in range(num_labels):
        column = labels[:, label]
        if column.min() == column.max():
            bias[label] = 1e4 if column[0] == 1 else -1e4
            continue
        coef, intercept = _fit_classifier(features, column, config, c)
        weight[label], bias[label] = torch.from_numpy(coef[0]), float(intercept[0])
    return weight, bias


def _fit_classifier(
    features: csr_matrix, labels: np.ndarray, config: Config, c: float, class_weight: dict[int, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's LinearSVC or LogisticRegression on the TF-IDF rows at inverse regularisation strength `c`:
    (coef (K, F), intercept (K,)); `class_weight` by class id, as scikit-learn takes it (None: every class 1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    mc = config.model
    classifier: Any
    if mc.linear_classifier == "svm":
        classifier = LinearSVC(C=c, class_weight=class_weight, random_state=config.seed)
    else:
        classifier = LogisticRegression(C=c, class_weight=class_weight, max_iter=1000, random_state=config.seed)
    classifier.fit(features, labels)
    return classifier.coef_, np.atleast_1d(classifier.intercept_)


def fits_without_gradients(config: Config) -> bool:
    """Whether the run's kind is fitted here (linear) rather than trained by the gradient loop."""
    return not trains_by_gradient(config.model)


def train_linear(config: Config, run: RunDir, progress: Progress) -> TrainResult:
    """The train stage of kind linear: one scikit-learn fit in place of the epochs, with the result, manifest
    entry and (multi-label) thresholds a trained network leaves."""
    fit = fit_linear(config, run, progress)
    metric = config.train.early_stopping_metric
    result = TrainResult(
        epochs_run=1,
        best_epoch=1,
        best_metric=float(fit.record[f"validation_{metric}"]),
        metric_name=f"validation_{metric}",
        seconds=round(fit.seconds, 3),
        docs_per_second=round(fit.documents / max(fit.seconds, 1e-9), 1),
        history=[fit.record],
    )
    TrainingFiles(run, writes=True).finish(config, result, class_weights=fit.class_weights, world_size=1, device="cpu")
    return result


# --- beside a network (train.linear_baseline) ------------------------------------------------------------


def linear_kind_record(
    config: Config,
    run: RunDir,
    train: EncodedSplit,
    validation: EncodedSplit,
    label_names: list[str],
    network: torch.nn.Module,
    history: list[dict[str, Any]],
    training_rows: csr_matrix | None = None,
) -> dict[str, Any]:
    """The linear kind's validation metrics on this run: epoch 0's when the history has one (the fitted channel
    alone), else fitted now on the network's wide channel table (`training_rows`: its training TF-IDF rows) or,
    without one, on a table fitted here."""
    start = next((record for record in history if record["epoch"] == 0), None)
    if start is not None:
        figures = {f"validation_{figure}": start[f"validation_{figure}"] for figure in VALIDATION_FIGURES}
        return figures | {"seconds": start["seconds"], "source": "epoch 0"}
    began = time.perf_counter()
    features = fitted_wide_channel(network)
    model = fitted_linear_model(config, run, train, len(label_names), validation, features, training_rows)
    record = validation_record(model, validation, label_names, config)
    seconds = round(time.perf_counter() - began, 3)
    log.info("linear kind on the same features: %s in %.1f s", {k: round(v, 4) for k, v in record.items()}, seconds)
    return {**record, "seconds": seconds, "source": "fitted after training"}


def compared(config: Config, linear: dict[str, Any], best: dict[str, Any]) -> dict[str, Any]:
    """`linear` with the comparison the run reports: the compared metric, the network's best epoch's value of it
    and whether the network trails the linear kind on it (logged as a warning)."""
    metric = compared_metric(config)
    trails = bool(best[metric] < linear[metric])
    if trails:
        log.warning(
            "the network trails han's linear kind on %s (%.4f against %.4f)", metric, best[metric], linear[metric]
        )
    return {**linear, "compared_metric": metric, "network": best[metric], "network_trails": trails}
