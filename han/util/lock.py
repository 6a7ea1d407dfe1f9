"""One writer per folder: an advisory lock every han command takes on the run directory or workspace it writes.

The lock is `fcntl.flock` on the file `.han.lock` inside the folder, tried once (never waited for):
a second writer is refused at once with a `RunDirError` naming the holder (its process id and command,
which the holder writes into the file). The kernel drops a flock when its process dies, so a killed
holder (even by SIGKILL) leaves no stale lock, only the file, which the next holder takes over. The
holder removes the file when it lets go (unless another holder of a shared lock still has it), so a
command leaves no trace behind; a folder the lock had to create is removed again if it is left empty.

A process may take the lock on a folder it already holds (`han run` holds its run directory and calls
the stages, which take it too); a shared lock (`shared=True`, the shards of a sharded preprocess, which
write side by side) excludes only the exclusive one. han's ownership rules (han.store.ownership) treat
`LOCK_NAME` as han's own file and never remove it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from han.errors import RunDirError

LOCK_NAME = ".han.lock"
_ATTEMPTS = 20  # a releasing holder may remove the file between our open and our flock: open it again


@dataclass
class _Held:
    descriptor: int
    path: Path
    created: list[Path] = field(default_factory=list)  # folders made for the lock, outermost first
    depth: int = 1


_held: dict[str, _Held] = {}
_guard = threading.Lock()


def _forget_after_fork() -> None:
    """A forked child is another process: it holds none of its parent's locks (and must never let them go)."""
    global _guard
    _held.clear()
    _guard = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _key(folder: Path) -> str | None:
    """The folder's real path, the same however it is spelled (None: a symbolic-link loop)."""
    try:
        return str(Path(os.path.abspath(folder)).resolve())
    except (RuntimeError, OSError):
        return None


def _make_folder(folder: Path) -> list[Path] | None:
    """Create `folder` (and missing parents) if needed; the folders created, outermost first (None: it cannot be)."""
    missing = []
    for candidate in [folder, *folder.parents]:
        if candidate.exists() or candidate.is_symlink():
            break
        missing.append(candidate)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        _remove_created(list(reversed(missing)))
        return None
    return list(reversed(missing))


def _remove_created(created: list[Path]) -> None:
    for folder in reversed(created):  # innermost first, each only when empty
        try:
            folder.rmdir()
        except OSError:
            return


def _holder(descriptor: int) -> str:
    """Who holds the lock, as its file says: `process N (command)`, if that process still runs."""
    try:
        text = os.pread(descriptor, 512, 0).decode("utf-8", "replace")
        pid_text, _, command = text.strip().partition(" ")
        pid = int(pid_text)
        os.kill(pid, 0)  # raises when no such process runs (any more)
    except PermissionError:  # it runs, as another user
        pass
    except (OSError, ValueError):
        return "another process"
    return f"process {pid} ({command or 'han'})"


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    opened = os.fstat(descriptor)
    return (on_disk.st_ino, on_disk.st_dev) == (opened.st_ino, opened.st_dev)


def _acquire(folder: Path, command: str, shared: bool) -> _Held | None:
    """Lock `folder`; None when no lock file can be made there (a read-only or impossible folder: nothing can
    be written there either, and the command's own checks and writes report it)."""
    if folder.exists() and not folder.is_dir():
        return None
    created = _make_folder(folder)
    if created is None:
        return None
    path = folder / LOCK_NAME
    try:
        for _ in range(_ATTEMPTS):
            try:
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            except OSError:
                if path.is_symlink():
                    raise RunDirError(f"{path}: is a symbolic link, not han's lock file; remove it") from None
                _remove_created(created)
                return None
            try:
                fcntl.flock(descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(descriptor)
                os.close(descriptor)
                raise RunDirError(
                    f"{folder}: in use by {holder}; wait for it to finish or stop it, then try again"
                ) from None
            if _same_file(descriptor, path):
                break
            os.close(descriptor)  # we locked a file its last holder had just removed
        else:
            raise RunDirError(f"{path}: keeps being replaced while han takes the lock; try again")
    except BaseException:
        _remove_created(created)
        raise
    if not shared:
        with contextlib.suppress(OSError):  # the holder's name is for messages only: a full disk is no reason to stop
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()} {command}\n".encode(), 0)
    return _Held(descriptor, path, created)


def _release(held: _Held) -> None:
    try:
        fcntl.flock(held.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # no other (shared) holder: the file can go
        if _same_file(held.descriptor, held.path):
            held.path.unlink()
    except OSError:
        pass
    finally:
        os.close(held.descriptor)
    _remove_created(held.created)


@contextmanager
def folder_lock(folder: Path, command: str, *, shared: bool = False, create: bool = True) -> Iterator[None]:
    """Hold the lock of `folder` while the block runs; `command` names this holder in other processes' messages.

    A missing folder is created (and removed again if left empty), or with `create=False` not locked at
    all: the command reading it refuses it. Raises `RunDirError` (exit 4) when another process holds the
    lock. Where no lock file can be made (a read-only folder, a path through a file) nothing is locked:
    nothing can be written there either, and the command's own checks report the folder as before.
    """
    folder = Path(folder)
    key = _key(folder)
    if key is None or (not create and not folder.exists()):
        yield
        return
    with _guard:
        held = _held.get(key)
        if held is not None:
            held.depth += 1
        else:
            held = _acquire(folder, command, shared)
            if held is not None:
                _held[key] = held
    try:
        yield
    finally:
        if held is not None:
            with _guard:
                held.depth -= 1
                if held.depth == 0:
                    del _held[key]
                    _release(held)
