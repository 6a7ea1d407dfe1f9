"""Folders of text files, one document a file: the one reader of training's class folders and of the folders
`han predict` and `han report` read.

Files are listed recursively in sorted path order (deterministic on every machine), hidden files skipped,
and each is checked to be a regular file before it is opened (a named pipe would block the read, a device
never end). A document is named by its path relative to the folder it was read from.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Iterator
from pathlib import Path

from han.data.inputs import check_regular_file
from han.errors import DataError

log = logging.getLogger(__name__)

DOCUMENT_SUFFIX = ".txt"  # what a file of an input folder (predict, report) must end with to be read


def document_files(folder: Path) -> Iterator[Path]:
    """The files under `folder`, recursively, in sorted path order; hidden files and dangling links skipped."""
    for path in sorted(p for p in folder.rglob("*") if not p.is_dir() and not p.name.startswith(".")):
        check_regular_file(path)
        if path.is_file():  # not a dangling link
            yield path


def read_document(path: Path, max_chars: int | None = None, strict: bool = False) -> tuple[str, bool]:
    """The text of one document file and whether bytes that are not UTF-8 were replaced with U+FFFD.

    `strict` (prediction inputs): such bytes, or a NUL byte, are a `DataError` naming the file instead.
    `max_chars`: at most that many characters plus one are kept (the extra one lets the caller count the
    document as cut) and at most 4 bytes a character are read, so a huge file costs bounded memory.
    """
    limit = None if max_chars is None else 4 * (max_chars + 1)  # a UTF-8 character is at most 4 bytes
    with open(path, "rb") as handle:
        raw = handle.read() if limit is None else handle.read(limit)
    final = limit is None or len(raw) < limit  # else a character may be cut at the end: decoded without it
    try:
        text, lossy = codecs.getincrementaldecoder("utf-8")().decode(raw, final=final), False
    except UnicodeDecodeError:
        if strict:
            raise DataError(
                f"{path}: not valid UTF-8 text; re-save the file as UTF-8 (or move it out of the folder)"
            ) from None
        text, lossy = codecs.getincrementaldecoder("utf-8")("replace").decode(raw, final=final), True
    if strict and "\x00" in text:
        raise DataError(f"{path}: binary data (a NUL byte), not a text document")
    return (text if max_chars is None else text[: max_chars + 1]), lossy


def iter_folder_documents(folder: Path, max_chars: int | None = None) -> Iterator[tuple[str, str]]:
    """(name, text) of every `.txt` file under `folder` (name: its path relative to `folder`), read strictly.

    Other files are skipped and counted in a warning; a folder without any `.txt` file is a `DataError`.
    """
    found = skipped = 0
    for path in document_files(folder):
        if path.suffix.lower() != DOCUMENT_SUFFIX:
            skipped += 1
            continue
        found += 1
        yield path.relative_to(folder).as_posix(), read_document(path, max_chars, strict=True)[0]
    if skipped:
        log.warning("%s: %d file(s) not ending in %s were skipped", folder, skipped, DOCUMENT_SUFFIX)
    if not found:
        raise DataError(
            f"{folder}: no {DOCUMENT_SUFFIX} files in the folder (one document a file: {folder}/<name>.txt)"
        )
