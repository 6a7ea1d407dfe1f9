"""Folders of many runs that share one preprocessing (`han compare`, `han tune`).

A workspace is a folder han made, marked by a JSON file that records what it was made for (the
config, ...; han.store.ownership recognises it, so no command's output lands inside one): it is
created new or empty, taken up again only with `resume` and the same request, and refused otherwise.
The command working in it holds its lock (han.util.lock) throughout. Its runs start as hard-linked
copies of the preprocessed run directory; han replaces files by rename and never writes into one, so
a shared inode is never changed under another run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

from han.config import Config
from han.errors import RunDirError
from han.progress import Progress
from han.store.ownership import enclosing_han_folder, enclosing_run_directory, is_han_workspace, workspace_marker
from han.store.rundir import RunDir
from han.text.preprocess import preprocess, preprocessing_complete
from han.util.atomic import TEMPORARY_MARK, create_folder, read_json, storage_errors, write_json_atomic
from han.util.lock import LOCK_NAME


def _is_empty(directory: Path) -> bool:
    """Whether `directory` is missing or holds nothing but han's lock file."""
    return not directory.is_dir() or all(child.name == LOCK_NAME for child in directory.iterdir())


def claim_workspace(directory: Path, marker: str, request: dict[str, Any], resume: bool) -> None:
    """Create `directory` with its marker file `<marker>.json` holding `request`, or take it up with `resume`.

    `marker` also names the workspace in messages ("comparison", "tuning"). Refused: a path inside a run
    directory, a file, a non-empty folder han did not mark, an existing workspace without `resume`, and
    one made for another request (each differing key is named).
    """
    marker_path = workspace_marker(directory, marker)
    enclosing = enclosing_run_directory(directory)
    if enclosing is not None:
        raise RunDirError(f"{directory}: is inside the han run directory {enclosing}")
    outer = enclosing_han_folder(directory.parent)
    if outer is not None:
        raise RunDirError(f"{directory}: is inside the han {outer[1]} folder {outer[0]}; choose a --dir outside it")
    if directory.exists() and not directory.is_dir():
        raise RunDirError(f"{directory}: exists and is not a folder; choose another --dir")
    stamped = {f"han_{marker}": 1, **request}
    if not _is_empty(directory):
        if not is_han_workspace(directory, marker):
            raise RunDirError(f"{directory}: not empty and not a han {marker}; choose a new or empty --dir")
        saved = read_json(marker_path)
        if not resume:
            raise RunDirError(
                f"{directory}: already holds a {marker}; pass --resume to continue it or choose another --dir"
            )
        for key, value in request.items():
            if saved.get(key) != value:
                raise RunDirError(
                    f"{directory}: holds a {marker} of another {key}; resume it with the {key} it was started with"
                )
        return
    create_folder(directory, "--dir")  # under a file, read-only, ...: one line, not a traceback
    write_json_atomic(marker_path, stamped)


def open_workspace(
    directory: Path, marker: str, request: dict[str, Any], resume: bool, config: Config, progress: Progress
) -> RunDir:
    """Claim the workspace (`claim_workspace`) and return its shared preprocessing, DIR/data, done once.

    A workspace this call created is removed again when preprocessing fails: nothing worth keeping yet.
    """
    made = _is_empty(directory)
    claim_workspace(directory, marker, request, resume)
    data = RunDir(directory / "data")
    if not preprocessing_complete(data):
        try:
            preprocess(config, data.root, progress, overwrite=data.root.exists())
        except BaseException:
            if made:  # han made all of it (the lock file aside, which its holder removes)
                with contextlib.suppress(OSError):
                    for child in directory.iterdir():
                        if child.name != LOCK_NAME:
                            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            raise
    return data


def linked_run_copy(data: RunDir, run_dir: Path) -> None:
    """`run_dir` as a copy of the preprocessed run `data` (files hard-linked where possible); kept if it exists."""
    if run_dir.exists():
        return
    staging = run_dir.with_name(f"{TEMPORARY_MARK}{run_dir.name}")
    if staging.exists():
        shutil.rmtree(staging)  # han's own half-made copy from a killed run

    def link_or_copy(source: str, target: str) -> object:
        try:
            os.link(source, target)
            return target
        except OSError:
            return shutil.copy2(source, target)

    ignored = shutil.ignore_patterns(f"{TEMPORARY_MARK}*", LOCK_NAME)
    with storage_errors(run_dir):  # a copy that does not fit: disk full, ...
        shutil.copytree(data.root, staging, copy_function=link_or_copy, ignore=ignored)
    staging.rename(run_dir)
