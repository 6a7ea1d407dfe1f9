"""From a source row or an input record to a document's text: the one place that joins text columns.

Every path that reads documents goes through `join_text`: ingestion (`TextColumn` over Arrow),
evaluate --data, predict and the reports (`iter_input_texts`, which streams CSV/TSV/JSONL/Parquet/.txt
files or standard input). The run's `data.text_column` (one or several columns), `data.text_separator`
and `data.delimiter` apply everywhere, and empty parts are skipped everywhere, so a document reads
the same at training and at prediction time.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import datasets

from han.config import DataConfig
from han.errors import DataError
from han.inputs import check_csv_header, check_input_file

BATCH_ROWS = 1000  # rows read from Arrow at a time
INPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet", ".txt")


def text_part(value: Any) -> tuple[str, bool]:
    """A cell as stripped text ('' when missing) and whether it held undecodable bytes."""
    if value is None or (isinstance(value, float) and value != value):
        return "", False
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8").strip(), False
        except UnicodeDecodeError:
            return value.decode("utf-8", errors="replace").strip(), True
    return str(value).strip(), False


def join_text(parts: Sequence[Any], separator: str) -> str:
    """The non-empty text cells of a row, stripped and joined with `separator`."""
    pieces = [text for text in (text_part(p)[0] for p in parts) if text]
    return separator.join(pieces)


class TextColumn(Sequence[str]):
    """Document texts read lazily from an Arrow-backed dataset: its text column(s) joined per row.

    Iterating reads `BATCH_ROWS` rows at a time, so memory does not grow with the dataset.
    """

    def __init__(self, dataset: datasets.Dataset, columns: list[str], separator: str) -> None:
        self.dataset = dataset.select_columns(columns)
        self.columns = columns
        self.separator = separator

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row = self.dataset[int(index)]
        return join_text([row[c] for c in self.columns], self.separator)

    def batches(self, size: int = BATCH_ROWS) -> Iterator[list[str]]:
        """Lists of at most `size` consecutive texts."""
        for batch in self.dataset.iter(batch_size=size):
            yield [join_text(parts, self.separator) for parts in zip(*(batch[c] for c in self.columns), strict=True)]

    def __iter__(self) -> Iterator[str]:
        for batch in self.batches():
            yield from batch

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (TextColumn, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def select(self, indices: Sequence[int]) -> TextColumn:
        """The texts at `indices` as a new lazy `TextColumn`."""
        return TextColumn(self.dataset.select(indices), self.columns, self.separator)


def text_batches(texts: Sequence[str], size: int = BATCH_ROWS) -> Iterator[list[str]]:
    """Lists of at most `size` texts of a `TextColumn` or a plain list."""
    if isinstance(texts, TextColumn):
        yield from texts.batches(size)
        return
    for start in range(0, len(texts), size):
        yield list(texts[start : start + size])


# --- streaming input files (predict, reports) ---------------------------------------------------


def _missing_columns(where: str, missing: list[str], columns: Sequence[str]) -> DataError:
    return DataError(
        f"{where}: column(s) {', '.join(missing)} not found (columns: {', '.join(columns)}); "
        "the run reads data.text_column"
    )


def csv_delimiter(path: Path, config: DataConfig) -> str:
    """The delimiter of a CSV/TSV file: `data.delimiter`, else tab for .tsv and comma otherwise."""
    return config.delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")


def _iter_csv(handle: IO[str], delimiter: str, config: DataConfig, where: str) -> Iterator[str]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(handle, delimiter=delimiter)
    columns = config.text_columns
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise _missing_columns(where, missing, reader.fieldnames or [])
    for row in reader:
        yield join_text([row[c] for c in columns], config.text_separator)


def _iter_jsonl(handle: IO[str], config: DataConfig, where: str) -> Iterator[str]:
    columns = config.text_columns
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: line {number} is not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or any(c not in record for c in columns):
            raise DataError(f"{where}: line {number} has no {', '.join(columns)} field(s)")
        yield join_text([record[c] for c in columns], config.text_separator)


def _iter_parquet(path: Path, config: DataConfig) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = config.text_columns
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: not a readable Parquet file ({str(error).splitlines()[0]})") from None
    missing = [c for c in columns if c not in file.schema_arrow.names]
    if missing:
        raise _missing_columns(str(path), missing, file.schema_arrow.names)
    for record_batch in file.iter_batches(batch_size=1024, columns=columns):
        parts = [record_batch.column(c).to_pylist() for c in columns]
        for values in zip(*parts, strict=True):
            yield join_text(values, config.text_separator)


def iter_input_texts(source: Path | None, config: DataConfig, stdin: IO[str] | None = None) -> Iterator[str]:
    """Document texts of a CSV/TSV/JSONL/Parquet file (the run's text columns), a .txt file or `stdin` (one a line)."""
    if source is None:
        if stdin is None:
            raise DataError("no input: give a file or pipe text lines on standard input")
        yield from (line.rstrip("\n") for line in stdin)
        return
    suffix = source.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise DataError(
            f"{source}: unsupported input type {suffix!r}; use {', '.join(INPUT_SUFFIXES)} or standard input"
        )
    if not source.exists():
        raise DataError(f"{source}: input file not found")
    check_input_file(source)
    if suffix in (".csv", ".tsv"):
        check_csv_header(source, csv_delimiter(source, config), config.text_columns)
    if suffix == ".parquet":
        yield from _iter_parquet(source, config)
        return
    with open(source, encoding="utf-8-sig", newline="") as handle:
        if suffix in (".csv", ".tsv"):
            yield from _iter_csv(handle, csv_delimiter(source, config), config, str(source))
        elif suffix == ".jsonl":
            yield from _iter_jsonl(handle, config, str(source))
        else:
            yield from (line.rstrip("\n") for line in handle)


def has_column(source: Path, config: DataConfig, column: str) -> bool:
    """Whether a CSV/TSV/JSONL/Parquet file has `column` (CSV: its header; JSONL: its first record)."""
    suffix = source.suffix.lower()
    check_input_file(source)
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return column in pq.ParquetFile(source).schema_arrow.names
        except (pa.ArrowException, OSError) as error:
            raise DataError(f"{source}: not a readable Parquet file ({str(error).splitlines()[0]})") from None
    with open(source, encoding="utf-8-sig", newline="") as handle:
        if suffix in (".csv", ".tsv"):
            csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
            return column in (next(csv.reader(handle, delimiter=csv_delimiter(source, config)), None) or [])
        if suffix == ".jsonl":
            for line in handle:
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        return False  # the reader names the bad line
                    return isinstance(record, dict) and column in record
    return False
