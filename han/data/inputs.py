"""Checks on user files before a parser sees them: what they are, not what they contain.

A file that cannot be what its name says (empty, binary, compressed, UTF-16, not UTF-8, a Parquet
file without Parquet's magic bytes, a CSV whose header shows another delimiter) is refused with a
one-line error that names the file and says how to fix it, instead of a parser's traceback or,
worse, a silently wrong reading.
"""

from __future__ import annotations

import codecs
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from han.errors import DataError
from han.util.files import special_file_kind

TEXT_SUFFIXES = {".csv", ".tsv", ".jsonl", ".json", ".txt"}
HEAD_BYTES = 1 << 16
DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
MAGIC = {
    b"\x1f\x8b": "gzip-compressed",
    b"PK\x03\x04": "a zip archive",
    b"%PDF": "a PDF document",
    b"PAR1": "a Parquet file",
    b"\x89PNG": "a PNG image",
    b"\x80\x02": "a Python pickle",
    b"\x80\x03": "a Python pickle",
    b"\x80\x04": "a Python pickle",
    b"\x80\x05": "a Python pickle",
}


def _line_of(path: Path, offset: int) -> int:
    line = 1
    with open(path, "rb") as handle:
        remaining = offset
        while remaining > 0 and (chunk := handle.read(min(remaining, 1 << 20))):
            line += chunk.count(b"\n")
            remaining -= len(chunk)
    return line


def check_text_bytes(path: Path, suffix: str, strict_utf8: bool = True) -> None:
    """Read the whole file once, in chunks: a NUL byte (or, if `strict_utf8`, invalid UTF-8) is an error naming its line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(1 << 20)
            nul = chunk.find(b"\x00")
            if nul >= 0:
                raise DataError(
                    f"{path}: binary data (a NUL byte at line {_line_of(path, offset + nul)}), not a {suffix} text file"
                )
            if not strict_utf8:
                if not chunk:
                    return
                offset += len(chunk)
                continue
            pending = decoder.getstate()[0]  # bytes of a character split across chunks
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as error:
                data = pending + chunk
                position = offset - len(pending) + error.start
                bad = data[error.start] if error.start < len(data) else 0
                raise DataError(
                    f"{path}: line {_line_of(path, max(position, 0))}: byte 0x{bad:02x} is not valid UTF-8; "
                    f"re-save the file as UTF-8"
                ) from None
            if not chunk:
                return
            offset += len(chunk)


def check_regular_file(path: Path) -> None:
    """Refuse a named pipe, device or socket before anything opens it (opening a pipe blocks; a device never ends)."""
    what = special_file_kind(path)
    if what is not None:
        raise DataError(f"{path}: is {what}, not a regular file; save the documents to a file and give that file")


MAX_JSON_DEPTH = 100  # han reads flat records; Arrow's JSON reader crashes on very deep ones


def _json_depth(line: bytes) -> int:
    """The deepest nesting of arrays/objects in one JSON line (brackets inside strings ignored)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def check_json_depth(path: Path, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse a JSON Lines file with a record nested more than `limit` levels deep, naming the line.

    Only lines holding more than `limit` brackets are scanned, so ordinary files cost one count per line.
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.count(b"[") + line.count(b"{") > limit and _json_depth(line) > limit:
                raise DataError(
                    f"{path}: line {number} is nested more than {limit} levels deep; han reads flat records"
                )


def check_input_file(path: Path, strict_utf8: bool = True) -> None:
    """Refuse a data or prediction file that is not a regular file, empty, binary, compressed, not UTF-8 or fake Parquet.

    Training data passes `strict_utf8=False`: there, invalid UTF-8 bytes are replaced and counted in a
    warning (han.data.splits), while prediction inputs must be valid UTF-8.
    """
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    check_regular_file(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
            handle.seek(max(size - 4, 0))
            tail = handle.read(4)
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None
    suffix = path.suffix.lower()
    if size == 0:
        raise DataError(f"{path}: the file is empty (no documents)")
    if suffix == ".parquet":
        if head[:4] != b"PAR1" or tail != b"PAR1":
            raise DataError(f"{path}: not a Parquet file (no PAR1 magic bytes at its start and end)")
        return
    if suffix not in TEXT_SUFFIXES:
        return
    for magic, what in MAGIC.items():
        if head.startswith(magic):
            raise DataError(f"{path}: is {what}, not a {suffix} text file")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: is UTF-16 text; han reads UTF-8: re-save the file as UTF-8")
    check_text_bytes(path, suffix, strict_utf8)
    if suffix in (".jsonl", ".json"):
        check_json_depth(path)
    if not head.strip():
        raise DataError(f"{path}: holds only whitespace, no documents")


def check_csv_header(path: Path, delimiter: str, columns: Sequence[str]) -> None:
    """Refuse a CSV/TSV file whose header shows another delimiter or names a column twice, or that has no rows."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        first_row = next(reader, None)
    if not header:
        raise DataError(f"{path}: no header row (the first line should name the columns)")
    missing = [c for c in columns if c not in header]
    if missing and len(header) == 1:
        for other, name in DELIMITER_NAMES.items():
            if other != delimiter and other in header[0]:
                expected = DELIMITER_NAMES[delimiter]
                fix = "rename it to .tsv" if other == "\t" else f"re-save it {expected}-separated"
                raise DataError(
                    f"{path}: the header {header[0][:80]!r} is one column: the file looks {name}-separated, "
                    f"but han reads {path.suffix} files as {expected}-separated; {fix}"
                )
    if len(set(header)) != len(header):
        twice = sorted({name for name in header if header.count(name) > 1})
        raise DataError(
            f"{path}: the header row names a column twice ({', '.join(map(repr, twice))} in {', '.join(header)}); "
            "rename one of them"
        )
    if first_row is None:
        raise DataError(f"{path}: has a header row but no documents")
