"""Labelled documents: a loaded source (`han.data.loading`) checked, split and counted.

The result is one `RawSplit` per split (train, validation, test): a lazy column of document texts (several text columns joined), string
labels and, for messages, the row of each document in its source. Missing validation and test
splits are carved from train, stratified and seeded, keeping every class in train.

Bad rows (empty text, no label, a label training never saw) are an error naming the rows, or are
dropped and counted by reason (`data.bad_rows`, `data.unseen_labels`); `RowCounts` keeps the tally.
Row numbers are 1-based records of the source split (for a CSV file: data rows, header excluded).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from han.config import DataConfig
from han.data.carving import carve, carve_multilabel
from han.data.fingerprint import SplitDigest, combine_digests
from han.data.label_sets import (
    check_label_sets,
    drop_rare_labels,
    label_set_names,
    label_text,
    rare_labels,
    read_label_sets,
    sorted_names,
)
from han.data.loading import SourceSplit, load_source
from han.data.records import BATCH_ROWS, TextColumn, non_text_kind, text_batches, text_part
from han.data.rows import EMPTY_TEXT, MISSING_LABEL, UNSEEN_LABEL, RawSplit, RowCounts, rows_text
from han.data.sources import describe_source
from han.errors import DataError

log = logging.getLogger(__name__)

REPLACEMENT = "\ufffd"
TEXT_DTYPES = {"string", "large_string", "string_view", "null"}  # Arrow types of a text column (null: all missing)

# --- labels and bad rows ----------------------------------------------------------------------------


def _label_names(feature: Any, labels: list[str]) -> list[str]:
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    return sorted_names(set(labels))


def _read_labels(dataset: datasets.Dataset, column: str) -> list[str | None]:
    feature = dataset.features[column]
    values = dataset.select_columns([column]).with_format("arrow")[:][column].to_pylist()
    interned: dict[str, str] = {}
    if isinstance(feature, datasets.ClassLabel):
        labels = [feature.int2str(v) if v is not None and v >= 0 else None for v in values]
    else:
        labels = [label_text(v) for v in values]
    return [None if label is None else interned.setdefault(label, label) for label in labels]


def _empty_texts(texts: TextColumn) -> tuple[np.ndarray, int]:
    """A mask of rows whose joined text is empty or whitespace, and the number of rows with U+FFFD."""
    empty = np.zeros(len(texts), dtype=bool)
    replaced = 0
    start = 0
    for batch in texts.dataset.iter(batch_size=BATCH_ROWS):
        for i, parts in enumerate(zip(*(batch[c] for c in texts.columns), strict=True)):
            pieces = [text_part(p) for p in parts]
            if not any(text for text, _ in pieces):
                empty[start + i] = True
            if any(lossy or REPLACEMENT in text for text, lossy in pieces):
                replaced += 1
        start += len(batch[texts.columns[0]])
    return empty, replaced


def _check_text_types(source: SourceSplit, columns: list[str], rows: list[int], where: str) -> None:
    """A text column holds strings (null: a missing part); numbers, booleans, lists, objects or bytes are an error
    naming the column and its first such row, never text made up by `str()`."""
    for column in columns:
        feature = source.dataset.features[column]
        if isinstance(feature, datasets.Value) and feature.dtype in TEXT_DTYPES:
            continue
        start = 0  # a column of another type (or of JSON values of mixed types): find its first non-text value
        for batch in source.dataset.select_columns([column]).iter(batch_size=BATCH_ROWS):
            values = batch[column]
            for offset, value in enumerate(values):
                kind = non_text_kind(value)
                if kind is not None:
                    row = rows[start + offset]
                    at = source.row_names[row - 1] if source.row_names is not None else f"row {row}"
                    raise DataError(
                        f"{where}: column {column!r} holds {kind} at {at} "
                        "(its first value that is not text); a text column must hold strings: quote the values, "
                        "or name another column in data.text_column"
                    )
            start += len(values)


def _policy_hint(setting: str) -> str:
    return f"set {setting}=drop to drop them, or fix the data"


def _to_raw_split(
    source: SourceSplit,
    rows: list[int],
    config: DataConfig,
    where: str,
    split: str,
    counts: RowCounts,
    multilabel: bool = False,
) -> RawSplit:
    """Check columns, find empty texts and missing labels (error or drop by `data.bad_rows`), count U+FFFD.

    With `multilabel`, labels are sets (han/data/label_sets.py); an empty set is a missing label unless
    `data.allow_empty_labels`."""
    dataset = source.dataset
    columns = dataset.column_names
    for column in [*config.text_columns, *config.label_source_columns]:
        if column not in columns:
            setting = "data.label_columns" if config.label_columns else "data.label_column"
            raise DataError(
                f"{where}: column {column!r} not found (columns: {', '.join(columns)}); "
                f"set data.text_column / {setting}"
            )
    _check_text_types(source, config.text_columns, rows, where)
    texts = TextColumn(dataset, config.text_columns, config.text_separator)
    labels: list[Any]
    if multilabel:
        sets = read_label_sets(dataset, config, where, rows, source.row_names)
        labels = [s if s or config.allow_empty_labels else None for s in sets]
    else:
        labels = _read_labels(dataset, config.label_column)
    counts.rows_in += len(labels)
    empty, replaced = _empty_texts(texts)
    if replaced:
        log.warning(
            "%s: %d document(s) hold text that was not valid UTF-8 (decoded with U+FFFD replacement characters)",
            where,
            replaced,
        )
    unlabelled = np.array([label is None for label in labels], dtype=bool)
    for mask, reason, what in (
        (empty, EMPTY_TEXT, f"with empty text in column(s) {', '.join(config.text_columns)}"),
        (unlabelled & ~empty, MISSING_LABEL, f"without a label in {_label_place(config)}"),
    ):
        bad_rows = [rows[i] for i in np.flatnonzero(mask)]
        if bad_rows and config.bad_rows == "error":
            raise DataError(
                f"{where}: {len(bad_rows)} document(s) {what} at {rows_text(bad_rows, source.row_names)}; "
                + _policy_hint("data.bad_rows")
            )
        if bad_rows:
            log.warning(
                "%s: dropped %d document(s) %s at %s", where, len(bad_rows), what, rows_text(bad_rows, source.row_names)
            )
        counts.drop(split, reason, len(bad_rows))
    keep = np.flatnonzero(~(empty | unlabelled)).tolist()
    if len(keep) == len(labels):
        return RawSplit(texts, labels, rows, source.row_names)  # no label is None here
    kept_labels = [label for i in keep if (label := labels[i]) is not None]
    return RawSplit(texts.select(keep), kept_labels, [rows[i] for i in keep], source.row_names)


def _label_place(config: DataConfig) -> str:
    if config.label_columns:
        return f"column(s) {', '.join(config.label_columns)} (set data.allow_empty_labels to keep such documents)"
    return f"column {config.label_column!r}"


def _check_labels(
    split: RawSplit, known: list[str], config: DataConfig, where: str, name: str, counts: RowCounts, reason_text: str
) -> RawSplit:
    """Rows whose label is not in `known`: an error naming label and rows, or dropped (`data.unseen_labels`)."""
    known_set = set(known)
    bad = [i for i, label in enumerate(split.labels) if label not in known_set]
    if not bad:
        return split
    unseen = sorted({split.labels[i] for i in bad})
    rows = [split.rows[i] for i in bad]
    message = f"label(s) {', '.join(map(repr, unseen))} {reason_text}, at {split.describe_rows(rows)}"
    if config.unseen_labels == "error":
        raise DataError(f"{where} [{name}]: {message}; " + _policy_hint("data.unseen_labels"))
    log.warning("%s [%s]: dropped %d document(s) with %s", where, name, len(bad), message)
    counts.drop(name, UNSEEN_LABEL, len(bad))
    bad_set = set(bad)
    return split.subset([i for i in range(len(split)) if i not in bad_set])


def load_labelled_file(path: Path, config: DataConfig, multilabel: bool = False) -> RawSplit:
    """Every row of one labelled file or folder (all its splits), read with the configured text and label columns."""
    file_config = config.model_copy(update={"source": str(path), "split_column": None})
    sources = load_source(file_config)
    parts = list(sources.values())
    if len(parts) == 1:
        merged = parts[0]
    else:
        names = [n for part in parts for n in (part.row_names or [])]
        merged = SourceSplit(
            datasets.concatenate_datasets([p.dataset for p in parts]),
            names if len(names) == sum(len(p.dataset) for p in parts) else None,
        )
    rows = list(range(1, len(merged.dataset) + 1))
    return _to_raw_split(merged, rows, file_config, str(path), "file", RowCounts(), multilabel)


def _finish_label_sets(
    splits: dict[str, RawSplit],
    train_feature: Any,
    config: DataConfig,
    where: str,
    carved: list[str],
    counts: RowCounts,
) -> LoadedData:
    """Multi-label splits: label order, labels unknown to it checked, rare labels removed and listed."""
    checked: tuple[str, ...]
    if config.labels is not None:
        label_names = list(config.labels)
        reason, checked = "not in data.labels", ("train", "validation", "test")
    else:
        label_names = label_set_names(train_feature, config, splits["train"].labels)
        reason, checked = "never seen in training", ("validation", "test")
    for name in checked:
        splits[name] = check_label_sets(splits[name], label_names, config, where, name, counts, reason)
    label_names = drop_rare_labels(splits, label_names, config, where, counts)
    _require_documents(splits, where)
    if not label_names:
        raise DataError(f"{where}: the training split has no labels left; multi-label classification needs one or more")
    ordered = {name: splits[name] for name in ("train", "validation", "test")}
    rare = rare_labels(ordered["train"], label_names)
    return LoadedData(ordered, label_names, carved, counts, multilabel=True, rare_labels=rare)


# --- the whole dataset --------------------------------------------------------------------------------


@dataclass
class LoadedData:
    """Train/validation/test documents, the label names (fixed in order) and the row tally."""

    splits: dict[str, RawSplit]
    label_names: list[str]
    carved: list[str]  # splits carved from train because the source had none
    counts: RowCounts = field(default_factory=RowCounts)
    multilabel: bool = False  # labels are tuples of label names (han/data/label_sets.py)
    rare_labels: dict[str, int] = field(default_factory=dict)  # multilabel: labels with few training documents

    def fingerprint(self) -> str:
        """SHA-256 over every split's labels and texts (reads the texts once more)."""
        digests = {}
        for name, split in self.splits.items():
            digest = SplitDigest()
            for texts, start in zip(text_batches(split.texts), range(0, len(split), BATCH_ROWS), strict=True):
                digest.update(texts, split.labels[start : start + len(texts)])
            digests[name] = digest
        return combine_digests(digests)


def _split_by_column(sources: dict[str, SourceSplit], config: DataConfig, where: str) -> dict[str, tuple]:
    """(SourceSplit, rows) per split value of `data.split_column`; rows are rows of the one source split."""
    if len(sources) != 1:
        raise DataError(f"{where}: data.split_column is set but the source already has splits {list(sources)}")
    (only,) = sources.values()
    column = config.split_column
    if column not in only.dataset.column_names:
        raise DataError(f"{where}: split column {column!r} not found (columns: {', '.join(only.dataset.column_names)})")
    values = only.dataset.select_columns([column]).with_format("arrow")[:][column].to_pylist()
    names = np.array(["" if v is None else str(v).strip() for v in values], dtype=object)
    result = {}
    for name in sorted(set(names.tolist())):
        indices = np.flatnonzero(names == name)
        result[name] = (SourceSplit(only.dataset.select(indices), only.row_names), (indices + 1).tolist())
    return result


def _require_documents(splits: dict[str, RawSplit], where: str) -> None:
    for name, split in splits.items():
        if len(split) == 0:
            raise DataError(f"{where}: the {name} split has no documents (after dropping bad rows, if any)")


def load_data(config: DataConfig, seed: int, multilabel: bool = False) -> LoadedData:
    """Load, split and check the labelled documents named by `config` (label sets with `multilabel`).

    Missing held-out splits are carved from train: stratified by class, or for label sets by
    iterative stratification (han/data/carving.py)."""
    where = describe_source(config.source)
    sources = load_source(config)
    if config.split_column:
        by_split = _split_by_column(sources, config, where)
    else:
        by_split = {name: (split, list(range(1, len(split.dataset) + 1))) for name, split in sources.items()}
    if config.splits.train not in by_split:
        raise DataError(
            f"{where}: no training split {config.splits.train!r} (splits: {', '.join(by_split) or 'none'}); "
            "set data.splits.train"
        )
    wanted = {"train": config.splits.train, "validation": config.splits.validation, "test": config.splits.test}
    ignored = sorted(set(by_split) - {v for v in wanted.values() if v})
    if ignored:
        log.info("%s: ignoring split(s) %s (see data.splits)", where, ", ".join(ignored))
    counts = RowCounts()
    splits: dict[str, RawSplit] = {}
    for ours, theirs in wanted.items():
        if theirs is not None and theirs in by_split:
            source, rows = by_split[theirs]
            splits[ours] = _to_raw_split(source, rows, config, f"{where} [{theirs}]", ours, counts, multilabel)
    _require_documents(splits, where)
    train_feature = by_split[config.splits.train][0].dataset.features.get(config.label_column)
    carved = []
    carve_split = carve_multilabel if multilabel else carve
    if "test" not in splits:
        splits["train"], splits["test"] = carve_split(splits["train"], config.test_fraction, seed, where, "test")
        carved.append("test")
    if "validation" not in splits:
        splits["train"], splits["validation"] = carve_split(
            splits["train"], config.validation_fraction, seed, where, "validation"
        )
        carved.append("validation")
    if multilabel:
        return _finish_label_sets(splits, train_feature, config, where, carved, counts)
    if config.labels is not None:
        label_names = list(config.labels)
        for name in ("train", "validation", "test"):
            splits[name] = _check_labels(splits[name], label_names, config, where, name, counts, "not in data.labels")
    else:
        label_names = _label_names(train_feature, splits["train"].labels)
        for name in ("validation", "test"):
            splits[name] = _check_labels(
                splits[name], label_names, config, where, name, counts, "never seen in training"
            )
    _require_documents(splits, where)
    if len(set(splits["train"].labels)) < 2:
        raise DataError(
            f"{where}: the training split has {len(set(splits['train'].labels))} label(s); classification needs at least 2"
        )
    ordered = {name: splits[name] for name in ("train", "validation", "test")}
    return LoadedData(ordered, label_names, carved, counts)
