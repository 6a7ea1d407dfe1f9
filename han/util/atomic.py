"""Atomic writes of han's own files: temporary name, fsync, rename; a failed write raises `StorageError`.

Every file a run writes goes through `atomic_path` / `atomic_dir`, so a file that exists is complete
and a failed write (disk full, read-only, quota) leaves the previous version intact.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from han.errors import RunDirError, StorageError

# In the name of every temporary han creates (`.<name>.han-<random>.tmp`): how han recognises its own
# leftovers after a kill (han.store.ownership removes those, and nothing else).
TEMPORARY_MARK = ".han-"

# The one call that puts bytes on disk for han's own files; tests replace it to simulate a full disk.
_os_write = os.write
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}


def failure_reason(error: OSError) -> str:
    """Why a write failed, in a few words ("No space left on device: free some space")."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += ": free some space"
    return reason


def storage_error(target: Path, error: OSError) -> StorageError:
    """A one-line `StorageError` for a failed write of `target`."""
    reason = failure_reason(error)
    return StorageError(f"{target}: could not be written ({reason}); the previous version, if any, is unchanged")


def _is_write_failure(error: BaseException) -> bool:
    return isinstance(error, OSError) and (error.errno in WRITE_ERRNOS or error.errno is None)


def write_failure(error: BaseException) -> OSError | None:
    """The failed write (disk full, file too large, read-only, quota, permission) behind `error`, if any: `error`
    itself or an exception it was raised from or while handling (how libraries such as datasets wrap it)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError) and cause.errno in WRITE_ERRNOS:
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def create_folder(folder: Path, option: str) -> None:
    """Create `folder` and its missing parents (`option`, such as --run-dir, is what the user chose it with).

    A path under a regular file is a `RunDirError` naming that file; a folder that cannot be made for another
    reason (read-only, permission, disk full, a file system such as /proc or /sys) is a `StorageError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        blocking = next((p for p in folder.parents if os.path.lexists(p)), None)  # the nearest that exists
        if blocking is not None and not blocking.is_dir():
            raise RunDirError(
                f"{folder}: cannot be created: {blocking} is a file, not a folder; choose another {option}"
            ) from None
        if folder.exists() and not folder.is_dir():
            raise RunDirError(f"{folder}: exists and is not a folder; choose another {option}") from None
        reason = error.strerror or type(error).__name__
        raise StorageError(f"{folder}: the folder could not be created ({reason}); choose another {option}") from None


@contextmanager
def storage_errors(target: Path) -> Iterator[None]:
    """Run the block; a failed write in it (see `write_failure`) raises `StorageError` naming `target`.

    The one place that turns a failed write into `StorageError`: `atomic_path`, `atomic_dir`, scratch files
    (spilled token arrays) and copies all write under it."""
    try:
        yield
    except OSError as error:
        failure = error if _is_write_failure(error) else write_failure(error)
        if failure is None:
            raise
        raise storage_error(target, failure) from None


def fsync_path(path: Path) -> None:
    """Flush a file (or a directory entry list) to the disk; directories that cannot be synced are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:
        if not path.is_dir():
            raise
        del error  # some file systems cannot fsync a directory
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` (created or truncated) through `_os_write`, then fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = _os_write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is fsync'ed and renamed onto `target`.

    A write that fails with a file-system error (disk full, read-only, quota) raises `StorageError`;
    the temporary file is removed and `target` keeps its previous content.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}{TEMPORARY_MARK}", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as error:
        raise storage_error(target, error) from None
    tmp = Path(tmp_name)
    try:
        with storage_errors(target):
            yield tmp
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; a run directory's files are meant to be shared
            fsync_path(tmp)
            os.replace(tmp, target)
            fsync_path(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; on success its files are fsync'ed and it replaces `target`."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{TEMPORARY_MARK}", suffix=".tmp", dir=target.parent))
    except OSError as error:
        raise storage_error(target, error) from None
    try:
        with storage_errors(target):
            yield tmp
            for path in tmp.rglob("*"):
                if path.is_file():
                    fsync_path(path)
            fsync_path(tmp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
            fsync_path(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_bytes_atomic(target: Path, data: bytes) -> None:
    """Write `data` to `target` atomically (temporary file, fsync, rename); a failed write raises `StorageError`."""
    with atomic_path(target) as tmp:
        write_file(tmp, data)


def write_text_atomic(target: Path, text: str) -> None:
    """Write `text` to `target` as UTF-8, atomically (see `write_bytes_atomic`)."""
    write_bytes_atomic(target, text.encode("utf-8"))


def _finite_or_null(data: Any) -> Any:
    """`data` with every NaN or infinite float replaced by None (lists, tuples and dict values, recursively)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite_or_null(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite_or_null(value) for value in data]
    return data


def write_json_atomic(target: Path, data: Any) -> None:
    """Write `data` to `target` atomically as indented UTF-8 JSON (ASCII escapes when it holds a lone surrogate).

    The file is always strict JSON: a NaN or infinite float (say a metric of a diverged run) is written
    as null, never as the bare NaN/Infinity that strict JSON readers refuse.
    """
    try:
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError as error:  # a non-finite float somewhere: null instead
        if "Out of range float" not in str(error):
            raise
        data = _finite_or_null(data)
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: \u escapes keep the JSON valid and the value intact
        encoded = (json.dumps(data, indent=2, allow_nan=False) + "\n").encode("ascii")
    write_bytes_atomic(target, encoded)


def read_json(path: Path) -> Any:
    """The parsed JSON of `path`; a missing or damaged file raises `RunDirError`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; run the stage that writes it first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunDirError(f"{path}: not valid JSON ({error}); the file is damaged") from None
