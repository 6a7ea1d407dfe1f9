"""Rows of a labelled split: the documents that survive the bad-row policy, their source rows, and the tally.

Row numbers are 1-based records of the source split (for a CSV file: data rows, header excluded);
`row_names`, when set, describe them for messages ("b.csv row 7", "pos/3.txt").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from han.data.records import TextColumn

# Reasons a row is dropped, as reported in the preprocess summary and the manifest.
EMPTY_TEXT = "empty_text"
MISSING_LABEL = "missing_label"
UNSEEN_LABEL = "unseen_label"
NO_TOKENS = "no_tokens"
RARE_LABELS = "rare_labels"  # task multilabel: every label of the document was below data.min_label_count
DROP_REASONS = (EMPTY_TEXT, MISSING_LABEL, UNSEEN_LABEL, NO_TOKENS)


@dataclass
class RawSplit:
    """Documents of one split: texts (a list or a lazy `TextColumn`), labels, source rows (1-based).

    A label is a string (task multiclass) or a sorted tuple of strings, possibly empty (task multilabel).

    `row_names`, when set, describes each source row (index row - 1) for messages, e.g. "b.csv row 7"
    or "pos/3.txt"; otherwise rows are shown as numbers.
    """

    texts: Sequence[str]
    labels: list[Any]
    rows: list[int]
    row_names: Sequence[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int]) -> RawSplit:
        """The documents at `indices`, in that order (a `TextColumn` stays lazy)."""
        indices = list(indices)
        texts = self.texts.select(indices) if isinstance(self.texts, TextColumn) else [self.texts[i] for i in indices]
        return RawSplit(texts, [self.labels[i] for i in indices], [self.rows[i] for i in indices], self.row_names)

    def describe_rows(self, rows: Sequence[int], limit: int = 8) -> str:
        """'row(s) 3, 7' or the row names of source rows `rows` (at most `limit` shown)."""
        return rows_text(rows, self.row_names, limit)


def rows_text(rows: Sequence[int], row_names: Sequence[str] | None = None, limit: int = 8) -> str:
    """'row(s) 3, 7' or the names of the 1-based source rows `rows` (at most `limit` shown, then 'and N more')."""
    shown = [row_names[r - 1] if row_names is not None else str(r) for r in rows[:limit]]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ("" if row_names is not None else "row(s) ") + ", ".join(shown) + more


def names_text(names: Sequence[str], limit: int = 20) -> str:
    """ "'a', 'b'" for the first `limit` names (quoted), then "and N more"."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(map(repr, names[:limit])) + more


@dataclass
class RowCounts:
    """Rows read and rows dropped, by reason and by split."""

    rows_in: int = 0
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> reason -> rows

    def drop(self, split: str, reason: str, count: int) -> None:
        """Count `count` rows of `split` as dropped for `reason` (nothing is recorded when `count` is 0)."""
        if count:
            by_reason = self.dropped.setdefault(split, {})
            by_reason[reason] = by_reason.get(reason, 0) + count

    @property
    def rows_dropped(self) -> dict[str, int]:
        totals = {reason: 0 for reason in DROP_REASONS}
        for by_reason in self.dropped.values():
            for reason, count in by_reason.items():
                totals[reason] = totals.get(reason, 0) + count
        return totals

    @property
    def rows_kept(self) -> int:
        return self.rows_in - sum(self.rows_dropped.values())

    def as_dict(self) -> dict[str, Any]:
        """The counts as a dict: rows in, rows kept, rows dropped by reason and by split."""
        return {
            "rows_in": self.rows_in,
            "rows_kept": self.rows_kept,
            "rows_dropped": self.rows_dropped,
            "rows_dropped_by_split": {split: dict(v) for split, v in sorted(self.dropped.items())},
        }
