"""From a source row or an input record to a document's text: the one place that joins text columns.

Every path that reads documents goes through `join_text`: ingestion (`TextColumn` over Arrow),
evaluate --data, predict and the reports (`iter_input_documents`, which streams CSV/TSV/JSONL/Parquet/.txt
files, folders of .txt files (`han.data.folders`) or standard input, with each document's id when asked).
The run's `data.text_column` (one or several columns), `data.text_separator` and `data.delimiter` apply
everywhere, and empty parts are skipped everywhere, so a document reads the same at training and at
prediction time. (Over 400 lines: the streaming readers of every input format share its helpers.)
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from han.config import DataConfig
from han.data.folders import iter_folder_documents
from han.data.inputs import check_csv_header, check_input_file
from han.errors import DataError

if TYPE_CHECKING:  # reading input files for predict does not need `datasets`
    import datasets

log = logging.getLogger(__name__)

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

READ_CHUNK = 1 << 16  # characters read at a time from the rest of an over-long line
QUOTE_FIX = 'quote a field that holds the delimiter, a quote or a line break, and double quotes inside it ("")'


def non_text_kind(value: Any) -> str | None:
    """What `value` is when it is not text ('a number (0)', 'a list', ...); None for a string or a missing value."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__} value"


def _missing_columns(where: str, missing: list[str], columns: Sequence[str], id_column: str | None) -> DataError:
    if id_column in missing:
        return DataError(
            f"{where}: id column {id_column!r} not found (columns: {', '.join(columns)}); name one of these"
        )
    return DataError(
        f"{where}: column(s) {', '.join(missing)} not found (columns: {', '.join(columns)}); "
        "the run reads data.text_column"
    )


def _id_value(value: Any, where: str, column: str) -> Any:
    """A document id as read (text, a number, or None when missing); a list or an object is a `DataError`."""
    if isinstance(value, (dict, list, tuple)):
        raise DataError(f"{where}: id column {column!r} holds {non_text_kind(value)}; ids must be text or numbers")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # a date, a decimal, ... (Parquet): as text


def csv_delimiter(path: Path, config: DataConfig) -> str:
    """The delimiter of a CSV/TSV file: `data.delimiter`, else tab for .tsv and comma otherwise."""
    return config.delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")


def _csv_error(where: str, start: int, end: int, error: csv.Error) -> DataError:
    message = str(error)
    if "unexpected end of data" in message:
        return DataError(
            f"{where}: line {start}: a quoted field that starts there is never closed (the file ends inside it); "
            + QUOTE_FIX
        )
    lines = f"line {end}" if end == start else f"line {end} (in the record that starts at line {start})"
    return DataError(f"{where}: {lines}: malformed CSV ({message}); {QUOTE_FIX}")


def _iter_csv(
    handle: IO[str], delimiter: str, config: DataConfig, where: str, id_column: str | None = None
) -> Iterator[tuple[Any, str]]:
    """Texts of a CSV/TSV file, read strictly: a stray or unclosed quote or a row with another number of fields
    than the header is an error naming the line (as the training reader refuses it), never merged rows.
    Yields (the `id_column` cell or None, text)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(handle, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    columns = config.text_columns
    indices: list[int] = []
    id_index: int | None = None
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise _csv_error(where, start, reader.line_num, error) from None
        if not row:  # a blank line
            continue
        if header is None:
            header = row
            missing = [c for c in _wanted(columns, id_column) if c not in header]
            if missing:
                raise _missing_columns(where, missing, header, id_column)
            indices = [header.index(c) for c in columns]
            id_index = None if id_column is None else header.index(id_column)
            continue
        if len(row) != len(header):
            lines = f"line {start}" if reader.line_num == start else f"lines {start}-{reader.line_num}"
            raise DataError(
                f"{where}: {lines}: expected {len(header)} fields (as in the header), saw {len(row)}; {QUOTE_FIX}"
            )
        yield (None if id_index is None else row[id_index]), join_text([row[i] for i in indices], config.text_separator)


def _wanted(columns: list[str], id_column: str | None) -> list[str]:
    return columns if id_column is None else [*columns, id_column]


def _iter_jsonl(
    handle: IO[str], config: DataConfig, where: str, id_column: str | None = None
) -> Iterator[tuple[Any, str]]:
    columns = config.text_columns
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: line {number} is not valid JSON ({error.msg})") from None
        except RecursionError:
            raise DataError(
                f"{where}: line {number} is nested too deeply to be a record (arrays or objects inside one another "
                "beyond Python's recursion limit); each line should be one flat JSON object"
            ) from None
        if not isinstance(record, dict) or any(c not in record for c in columns):
            raise DataError(f"{where}: line {number} has no {', '.join(columns)} field(s)")
        if id_column is not None and id_column not in record:
            raise _missing_columns(f"{where}: line {number}", [id_column], list(record), id_column)
        for column in columns:
            kind = non_text_kind(record[column])
            if kind is not None:
                raise DataError(
                    f"{where}: line {number}: field {column!r} is {kind}, not text; "
                    "write the text as a JSON string (null when missing)"
                )
        doc_id = None if id_column is None else _id_value(record[id_column], f"{where}: line {number}", id_column)
        yield doc_id, join_text([record[c] for c in columns], config.text_separator)


def _is_text_type(arrow_type: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    text_types = (pa.types.is_string, pa.types.is_large_string, pa.types.is_null)
    is_view = getattr(pa.types, "is_string_view", None)
    return any(test(arrow_type) for test in text_types) or (is_view is not None and is_view(arrow_type))


def _parquet_type_error(file: Any, path: Path, column: str) -> DataError | None:
    """The error naming the first non-null value of a non-text column; None when the column holds only nulls."""
    arrow_type = file.schema_arrow.field(column).type
    row = 0
    for record_batch in file.iter_batches(batch_size=1024, columns=[column]):
        values = record_batch.column(0)
        if values.null_count < len(values):
            offset = next(i for i, valid in enumerate(values.is_valid().to_pylist()) if valid)
            kind = non_text_kind(values[offset].as_py()) or "not text"
            return DataError(
                f"{path}: row {row + offset + 1}: column {column!r} is {kind} (the column holds {arrow_type}), "
                "not text; store the text column as strings"
            )
        row += len(values)
    return None  # only nulls: missing parts, as empty CSV cells


def _iter_parquet(path: Path, config: DataConfig, id_column: str | None = None) -> Iterator[tuple[Any, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = config.text_columns
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: not a readable Parquet file ({str(error).splitlines()[0]})") from None
    missing = [c for c in _wanted(columns, id_column) if c not in file.schema_arrow.names]
    if missing:
        raise _missing_columns(str(path), missing, file.schema_arrow.names, id_column)
    for column in columns:
        if not _is_text_type(file.schema_arrow.field(column).type):
            refused = _parquet_type_error(file, path, column)
            if refused is not None:
                raise refused
    row = 0
    for record_batch in file.iter_batches(batch_size=1024, columns=_wanted(columns, id_column)):
        parts = [record_batch.column(c).to_pylist() for c in columns]
        ids = [None] * record_batch.num_rows if id_column is None else record_batch.column(id_column).to_pylist()
        for doc_id, values in zip(ids, zip(*parts, strict=True), strict=True):
            row += 1
            yield _id_value(doc_id, f"{path}: row {row}", id_column or ""), join_text(values, config.text_separator)


def _read_line(handle: IO[str], size: int, where: str, number: int) -> str:
    """One line (at most `size` characters) of a text stream; bytes that are not UTF-8 are a one-line error."""
    try:
        return handle.readline(size)
    except UnicodeDecodeError as error:
        raise DataError(
            f"{where}: line {number}: byte 0x{error.object[error.start]:02x} is not valid UTF-8 "
            "(UTF-16 or another encoding?); give UTF-8 text"
        ) from None


def _bounded_lines(handle: IO[str], where: str, max_chars: int | None) -> Iterator[str]:
    """The lines of `handle` without their newline, each cut at `max_chars` characters WHILE reading.

    A line is read `max_chars` + 1 characters at a time at most, and the rest of a longer line is
    skipped in chunks, so an endless line (/dev/zero, a 10 GB line) costs bounded memory; the cut lines
    are counted in a warning. A NUL character is binary data, not text: an error naming the line.
    """
    size = -1 if max_chars is None else max_chars + 1
    number = cut = 0
    while line := _read_line(handle, size, where, number + 1):
        number += 1
        if "\x00" in line:
            raise DataError(f"{where}: line {number}: binary data (a NUL byte), not text lines")
        if max_chars is not None and len(line) > max_chars and not line.endswith("\n"):
            line = line[:max_chars]
            cut += 1
            while rest := _read_line(handle, READ_CHUNK, where, number):
                if "\x00" in rest:
                    raise DataError(f"{where}: line {number}: binary data (a NUL byte), not text lines")
                if rest.endswith("\n"):
                    break
        yield line.rstrip("\n")
    if cut:
        log.warning(
            "%s: %d line(s) longer than preprocess.max_chars=%d characters were cut at that length while reading",
            where,
            cut,
            max_chars,
        )


def iter_input_texts(
    source: Path | None, config: DataConfig, stdin: IO[str] | None = None, max_chars: int | None = None
) -> Iterator[str]:
    """Document texts of `iter_input_documents` (a file, a folder of .txt files or `stdin`), without their ids."""
    for _, text in iter_input_documents(source, config, stdin, max_chars):
        yield text


def iter_input_documents(
    source: Path | None,
    config: DataConfig,
    stdin: IO[str] | None = None,
    max_chars: int | None = None,
    id_column: str | None = None,
) -> Iterator[tuple[Any, str]]:
    """(id, text) of every document of a CSV/TSV/JSONL/Parquet file (the run's text columns), a .txt file or `stdin`
    (one a line), or a folder of .txt files (one a file, in sorted path order; the id is the relative path).

    The id is the `id_column` value of the row (a `DataError` listing the columns when the input has no such
    column; lines of text have no columns), the file name in a folder, else None. With `max_chars` (the run's
    `preprocess.max_chars`), each line of stdin or of a .txt file is cut at that many characters while it is
    read, and of each file of a folder one character more is read (`prepare_texts` cuts and counts it), so one
    endless line or file costs bounded memory.
    """
    if source is None:
        if stdin is None:
            raise DataError("no input: give a file or pipe text lines on standard input")
        _refuse_id_column(id_column, "standard input", "lines of text")
        for text in _bounded_lines(stdin, "standard input", max_chars):
            yield None, text
        return
    if source.is_dir():
        _refuse_id_column(id_column, str(source), "a folder's documents, named by their file names")
        yield from iter_folder_documents(source, max_chars)
        return
    suffix = source.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise DataError(
            f"{source}: unsupported input type {suffix!r}; use {', '.join(INPUT_SUFFIXES)}, a folder of .txt files "
            "or standard input"
        )
    if not source.exists():
        raise DataError(f"{source}: input file not found")
    check_input_file(source)  # first of all: a named pipe or device is refused before it is opened
    if suffix == ".txt":
        _refuse_id_column(id_column, str(source), "lines of text")
    if suffix in (".csv", ".tsv"):
        check_csv_header(source, csv_delimiter(source, config), config.text_columns)
    if suffix == ".parquet":
        yield from _iter_parquet(source, config, id_column)
        return
    with open(source, encoding="utf-8-sig", newline="") as handle:
        if suffix in (".csv", ".tsv"):
            yield from _iter_csv(handle, csv_delimiter(source, config), config, str(source), id_column)
        elif suffix == ".jsonl":
            yield from _iter_jsonl(handle, config, str(source), id_column)
        else:
            for text in _bounded_lines(handle, str(source), max_chars):
                yield None, text


def _refuse_id_column(id_column: str | None, where: str, what: str) -> None:
    if id_column is not None:
        raise DataError(
            f"{where}: no id column {id_column!r}: {what} have no columns; give a CSV/TSV/JSONL/Parquet file"
        )


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
                    except (json.JSONDecodeError, RecursionError):
                        return False  # the reader names the bad line
                    return isinstance(record, dict) and column in record
    return False
