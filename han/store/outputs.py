"""Files han writes for a user outside run directories: predictions, reports, merged shards.

An output may not be a folder, one of the command's inputs, or any file of a han run directory
(han keeps a run directory to what it wrote itself). A regular file (or a new name) is written to a
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
from han.store.ownership import enclosing_run_directory
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
    run = enclosing_run_directory(target if output.exists() else target.parent)
    if run is not None:
        raise RunDirError(
            f"{output}: is inside the han run directory {run}, which holds only what han wrote there; "
            f"write {option} elsewhere"
        )
    if output.exists():
        mode = os.stat(output).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            raise ConfigError(f"{output}: is a socket or block device; give {option} a file name")


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
