"""The checks every file a user names goes through before han reads it: it must be a regular file.

A named pipe blocks whoever opens it, a device such as /dev/zero never ends, and a folder or a missing
file ends in a traceback; each is refused with a one-line error naming the option (or setting) and the
file, made with `stat` before anything opens the path. Files han reads whole (configs, search spaces)
also have a size bound, checked again on the open file so that one swapped in meanwhile cannot slip by.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from han.errors import HanError

SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _special_kind(mode: int) -> str | None:
    return next((what for test, what in SPECIAL_FILES if test(mode)), None)


def special_file_kind(path: Path) -> str | None:
    """'a named pipe' (character/block device, socket) when `path` is one, else None; stats without opening."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing or unreadable: the caller's own check names it
    return _special_kind(mode)


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def check_user_file(
    path: Path,
    what: str,
    error: type[HanError],
    *,
    option: str | None = None,
    max_bytes: int | None = None,
    folder_ok: bool = False,
    missing_ok: bool = False,
) -> None:
    """Refuse `path` unless it is a regular file (of at most `max_bytes`), without opening it.

    `what` names the file in messages ("config file"), `option` the command option that gave it ("--space");
    `error` is the `HanError` raised. `folder_ok`: a folder passes (the caller reads what is in it);
    `missing_ok`: a missing path passes (the caller resolves it otherwise, e.g. as a hub dataset id).
    """
    shown = f"{option} {path}" if option else str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if missing_ok:
            return
        raise error(f"{shown}: {what} not found") from None
    except (OSError, ValueError) as problem:  # ValueError: a NUL byte in the name
        raise error(f"{shown}: cannot be read ({getattr(problem, 'strerror', None) or problem})") from None
    if stat.S_ISDIR(info.st_mode):
        if folder_ok:
            return
        raise error(f"{shown}: is a folder, not {_article(what)}")
    kind = _special_kind(info.st_mode)
    if kind is not None or not stat.S_ISREG(info.st_mode):
        raise error(
            f"{shown}: is {kind or 'not a plain file'}, not a regular file; save what it holds to a file and give that"
        )
    if max_bytes is not None and info.st_size > max_bytes:
        raise error(
            f"{shown}: {info.st_size:,} bytes, more than {_article(what)} may have ({max_bytes:,}); "
            "is it the right file?"
        )


def read_user_file(path: Path, what: str, error: type[HanError], *, max_bytes: int, option: str | None = None) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (see `check_user_file`), read without blocking on a
    path swapped for a pipe after the check and without reading past the bound."""
    check_user_file(path, what, error, option=option, max_bytes=max_bytes)
    shown = f"{option} {path}" if option else str(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as problem:
        raise error(f"{shown}: cannot be read ({problem.strerror or problem})") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise error(f"{shown}: is not a regular file any more; give the {what} again")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{shown}: more than {max_bytes:,} bytes, more than {_article(what)} may have")
    return data
