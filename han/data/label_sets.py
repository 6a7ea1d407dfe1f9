"""Label sets of multi-label documents (task: multilabel): read from a source, named, checked and pruned.

A document's labels are a tuple of label names (sorted, no repeats; empty when it has none). They
come from one of three layouts:
- a column of text with the labels joined by `data.label_separator` ("earn;acq");
- a list-valued column (JSONL or Parquet lists, a hub `Sequence(ClassLabel)` / `List(ClassLabel)`);
- one 0/1 column per label (`data.label_columns`; the column names are the label names).
A column of single labels without a separator reads as one label per document.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np

from han.config import DataConfig
from han.data.rows import RARE_LABELS, UNSEEN_LABEL, RawSplit, RowCounts, names_text
from han.errors import DataError

log = logging.getLogger(__name__)

LabelSet = tuple[str, ...]
# What a cell of a 0/1 label column may hold (compared in lower case): exactly what the error message lists.
TRUE_TEXT = {"1", "1.0", "true"}
FALSE_TEXT = {"", "0", "0.0", "false"}
RARE_LABEL_DOCUMENTS = 10  # labels with fewer training documents are listed as rare in the summary


def label_text(value: Any) -> str | None:
    """A label cell as stripped text (integral floats without ".0"); None when missing or empty."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def _as_set(names: Sequence[str | None]) -> LabelSet:
    return tuple(sorted({name for name in names if name}))


def _flag(value: Any, column: str, row: str, where: str) -> bool:
    """A 0/1 cell of a label column; anything else is an error naming the cell."""
    if value is None or (isinstance(value, float) and value != value):
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in TRUE_TEXT or text in FALSE_TEXT:
        return text in TRUE_TEXT
    raise DataError(
        f"{where}: label column {column!r} holds {str(value)[:40]!r} at {row}; "
        "each of data.label_columns holds 1 (the document has the label) or 0: 1, 1.0 or true, 0, 0.0 or false "
        "(any case), and an empty cell reads as 0"
    )


def list_feature(feature: Any) -> Any | None:
    """The item feature of a list-valued column's feature (`List`, `LargeList`, `Sequence`); None otherwise."""
    return getattr(feature, "feature", None) if isinstance(feature, (datasets.List, datasets.LargeList)) else None


def _row_name(i: int, rows: list[int], row_names: Sequence[str] | None) -> str:
    return row_names[rows[i] - 1] if row_names is not None else f"row {rows[i]}"


def read_label_sets(
    dataset: datasets.Dataset, config: DataConfig, where: str, rows: list[int], row_names: Sequence[str] | None
) -> list[LabelSet]:
    """Each row's label set, from the layout the config and the column types name.

    A label holding `config.output_label_separator` (what joins a document's labels in han's CSV output) is a
    `DataError` naming the file, row and column: that output could not be split back into the labels."""
    separator = config.output_label_separator
    fix = (
        f"{separator!r} joins a document's labels in han's CSV output; rename the label, or set "
        "data.label_separator to text no label holds (a text column is then split at it)"
    )
    for column in config.label_columns or ():
        if separator in column:
            raise DataError(f"{where}: label column {column!r} holds {separator!r} in its name: {fix}")
    sets = _label_sets_of(dataset, config, where, rows, row_names)
    for i, labels in enumerate(sets):
        joined = next((name for name in labels if separator in name), None)
        if joined is not None:
            at = _row_name(i, rows, row_names)
            raise DataError(f"{where}: label {joined[:80]!r} at {at}, column {config.label_column!r}: {fix}")
    return sets


def _label_sets_of(
    dataset: datasets.Dataset, config: DataConfig, where: str, rows: list[int], row_names: Sequence[str] | None
) -> list[LabelSet]:
    if config.label_columns:
        table = dataset.select_columns(config.label_columns).with_format("arrow")[:]
        flags = [table.column(c).to_pylist() for c in config.label_columns]
        result = []
        for i, values in enumerate(zip(*flags, strict=True)):
            at = _row_name(i, rows, row_names)
            picked = [c for c, v in zip(config.label_columns, values, strict=True) if _flag(v, c, at, where)]
            result.append(tuple(sorted(picked)))
        return result
    column = config.label_column
    feature = dataset.features[column]
    values = dataset.select_columns([column]).with_format("arrow")[:][column].to_pylist()
    item = list_feature(feature)
    if item is not None:
        if isinstance(item, datasets.ClassLabel):
            return [_as_set([item.int2str(v) for v in (vs or []) if v is not None and v >= 0]) for vs in values]
        return [_as_set([label_text(v) for v in (vs or [])]) for vs in values]
    if isinstance(feature, datasets.ClassLabel):
        return [_as_set([feature.int2str(v)]) if v is not None and v >= 0 else () for v in values]
    separator = config.label_separator
    texts = [label_text(v) for v in values]
    if separator is None:
        return [_as_set([text]) for text in texts]
    return [_as_set([part.strip() for part in text.split(separator)]) if text else () for text in texts]


def sorted_names(distinct: set[str]) -> list[str]:
    """Label names in order: numerically when every name is a number ("1".."5"), else as text."""
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


def label_set_names(feature: Any, config: DataConfig, train_sets: list[LabelSet]) -> list[str]:
    """Label order: data.label_columns, else the ClassLabel names of a list column, else sorted (numerically if numbers)."""
    if config.label_columns:
        return list(config.label_columns)
    item = list_feature(feature)
    if isinstance(item, datasets.ClassLabel):
        return list(item.names)
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    return sorted_names({name for labels in train_sets for name in labels})


def _without(split: RawSplit, remove: set[str]) -> tuple[RawSplit, list[int]]:
    """`split` with labels `remove` taken out of every set; and the documents whose set lost one."""
    touched = [i for i, labels in enumerate(split.labels) if remove.intersection(labels)]
    if not touched:
        return split, []
    sets = list(split.labels)
    for i in touched:
        sets[i] = tuple(name for name in sets[i] if name not in remove)
    return RawSplit(split.texts, sets, split.rows, split.row_names), touched


def _drop_emptied(
    split: RawSplit, touched: list[int], config: DataConfig, name: str, counts: RowCounts, reason: str
) -> RawSplit:
    """Documents left without a label: kept with `data.allow_empty_labels`, else dropped and counted by `reason`."""
    emptied = {i for i in touched if not split.labels[i]}
    if not emptied or config.allow_empty_labels:
        return split
    counts.drop(name, reason, len(emptied))
    return split.subset([i for i in range(len(split)) if i not in emptied])


def check_label_sets(
    split: RawSplit, known: list[str], config: DataConfig, where: str, name: str, counts: RowCounts, reason_text: str
) -> RawSplit:
    """Labels not in `known`: an error naming them and their rows, or (`data.unseen_labels: drop`) taken out of
    the sets; a document left with none follows `data.allow_empty_labels`."""
    known_set = set(known)
    unseen = sorted({label for labels in split.labels for label in labels if label not in known_set})
    if not unseen:
        return split
    pruned, touched = _without(split, set(unseen))
    message = f"label(s) {names_text(unseen)} {reason_text}, at {split.describe_rows([split.rows[i] for i in touched])}"
    if config.unseen_labels == "error":
        raise DataError(f"{where} [{name}]: {message}; set data.unseen_labels=drop to remove them, or fix the data")
    log.warning("%s [%s]: removed %s from %d document(s)", where, name, message, len(touched))
    return _drop_emptied(pruned, touched, config, name, counts, UNSEEN_LABEL)


def training_counts(train: RawSplit) -> Counter[str]:
    """Training documents per label."""
    return Counter(label for labels in train.labels for label in labels)


def drop_rare_labels(
    splits: dict[str, RawSplit], label_names: list[str], config: DataConfig, where: str, counts: RowCounts
) -> list[str]:
    """Remove labels with fewer than `data.min_label_count` training documents from every split (in place);
    returns the labels kept, in order. Documents left without a label follow `data.allow_empty_labels`."""
    per_label = training_counts(splits["train"])
    rare = {name for name in label_names if per_label[name] < config.min_label_count}
    if not rare:
        return label_names
    log.warning(
        "%s: %d label(s) with fewer than data.min_label_count=%d training documents removed: %s",
        where,
        len(rare),
        config.min_label_count,
        names_text(sorted(rare)),
    )
    for name, split in splits.items():
        pruned, touched = _without(split, rare)
        splits[name] = _drop_emptied(pruned, touched, config, name, counts, RARE_LABELS)
    return [name for name in label_names if name not in rare]


def rare_labels(train: RawSplit, label_names: list[str]) -> dict[str, int]:
    """Labels with fewer than RARE_LABEL_DOCUMENTS training documents, with their counts (for the summary)."""
    per_label = training_counts(train)
    return {name: per_label[name] for name in label_names if per_label[name] < RARE_LABEL_DOCUMENTS}


def label_matrix(label_sets: Sequence[LabelSet], label_names: list[str]) -> np.ndarray:
    """An (N, C) int8 0/1 matrix of label sets over `label_names` (labels outside them are ignored)."""
    index = {name: i for i, name in enumerate(label_names)}
    matrix = np.zeros((len(label_sets), len(label_names)), dtype=np.int8)
    for row, labels in enumerate(label_sets):
        for name in labels:
            if name in index:
                matrix[row, index[name]] = 1
    return matrix
