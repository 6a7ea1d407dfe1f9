"""Files han writes for a user outside run directories: predictions, reports, merged shards.

An output may not be a folder, one of the command's inputs, or any file inside a folder han made
(a run directory, or a `han compare` / `han tune` workspace: han keeps them to what it wrote itself and
reads their files again later). Its name's extension, when it names a format (`FORMATS`), must be
the format the command writes (`output_format`): a page is never written over a name that says JSON. A regular file (or a new name) is written to a
temporary name beside it and renamed into place, so it is complete or absent. Anything else that
already exists there — a device such as /dev/null, a named pipe, a symbolic link such as
/dev/stdout — is written directly and never replaced by a rename; a socket or a block device is refused.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from han.errors import ConfigError, RunDirError
from han.store.ownership import enclosing_han_folder
from han.util.atomic import atomic_path, storage_error


def resolved(path: Path) -> Path:
    """`path` with its links followed; a symbolic-link loop is a one-line error, not a traceback."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as error:  # pathlib raises RuntimeError on a link loop
        raise ConfigError(f"{path}: cannot be followed ({error})") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return resolved(a) == resolved(b) or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def writes_directly(output: Path) -> bool:
    """Whether `output` exists as something other than a regular file (or is a link): written in place."""
    return output.is_symlink() or (output.exists() and not output.is_file())


def check_output(output: Path, inputs: Sequence[Path] = (), option: str = "--output") -> None:
    """Refuse an output that would destroy something; called before any work is done."""
    try:
        _check_output(Path(output), inputs, option)
    except OSError as error:  # a name too long, a folder that cannot be searched, ...
        raise ConfigError(f"{output}: cannot be used as {option} ({error.strerror or error})") from None


def _check_output(output: Path, inputs: Sequence[Path], option: str) -> None:
    if output.is_dir():
        raise ConfigError(f"{output}: is a folder; give {option} a file name")
    for source in inputs:
        if _same_file(output, Path(source)):
            raise ConfigError(f"{output}: is also an input of this command; write {option} to another file")
    target = resolved(output)
    found = enclosing_han_folder(target if output.exists() else target.parent)
    if found is not None:
        folder, kind = found
        what = "run directory" if kind == "run directory" else f"{kind} folder"
        raise RunDirError(
            f"{output}: is inside the han {what} {folder}, which holds only what han wrote there; "
            f"write {option} elsewhere"
        )
    if output.exists():
        mode = os.stat(output).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            raise ConfigError(f"{output}: is a socket or block device; give {option} a file name")


# What an output's extension says it holds; any other extension (or none) says nothing.
FORMATS = {
    ".html": "html",
    ".htm": "html",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".md": "markdown",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".parquet": "parquet",
    ".safetensors": "safetensors",
}


def output_format(output: Path, formats: Sequence[str], given: str | None = None, option: str = "--output") -> str:
    """The format to write `output` in, one of `formats` (the first is the default).

    `given` (a --format option) when set, else the one the extension names (`FORMATS`, any case), else
    the default. Refused: an extension naming a format the command does not write, or another than `given`.
    """
    suffix = Path(output).suffix.lower()
    named = FORMATS.get(suffix)
    if given is not None and given not in formats:
        raise ConfigError(f"--format {given!r}: use {' or '.join(formats)}")
    if named is not None and named not in formats:
        raise ConfigError(
            f"{output}: a {suffix} name for {' or '.join(formats)}; give {option} a "
            f"{' or '.join(s for s, f in FORMATS.items() if f in formats)} name"
        )
    if given is not None and named is not None and named != given:
        raise ConfigError(f"{output}: a {suffix} name for --format {given}; make them agree")
    return given or named or formats[0]


@contextmanager
def output_path(output: Path) -> Iterator[Path]:
    """A path to write `output` through: a temporary renamed into place, or the device/link itself."""
    output = Path(output)
    if not writes_directly(output):
        with atomic_path(output) as tmp:
            yield tmp
        return
    try:
        yield output
    except OSError as error:
        raise storage_error(output, error) from None


def write_output_text(output: Path, text: str) -> None:
    """Write `text` (UTF-8) to `output` as `output_path` says."""
    with output_path(output) as target, open(target, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
