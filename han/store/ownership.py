"""What han may remove or replace in a run directory: only what it made.

A folder becomes a han run directory when han claims it new or empty: the manifest then carries
han's marker and the names han will write there (`CLAIMED_NAMES`, recorded as "claimed"). A run directory
claimed so and holding nothing but `input/` (the rows `han.train` wrote there for the run) still counts as
empty to the next claim, and `input/` stays. Afterwards
`--overwrite` removes only files the manifest lists (artifacts with their checksums) or that sit
under a claimed name, plus han's own temporaries (`.<name>.han-<random>.tmp`) and checkpoints; a file
it cannot attribute to itself, or that is one of the run's inputs, stays where it is. A folder without
the marker is never emptied or written into by name, even with `--overwrite`.

A workspace (`han compare`, `han tune`) is han's too: its marker file `<kind>.json` carries
`"han_<kind>": 1` (`WORKSPACE_KINDS`). No output of a command may land inside a run directory or a
workspace (`enclosing_han_folder`). A han-made subfolder (`LINKED_NAMES`) that is a symbolic link is
refused before anything is read through it or removed. The lock file (han.util.lock) is han's own and
never removed here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from han.errors import RunDirError
from han.store.manifest import Manifest, is_han_manifest
from han.util.atomic import TEMPORARY_MARK, create_folder, read_json
from han.util.lock import LOCK_NAME

log = logging.getLogger(__name__)

# Everything han writes at the top of a run directory (manifest.json aside).
CLAIMED_NAMES = (
    "config.json",
    "labels.json",
    "vocab.json",
    "embeddings.safetensors",
    "data",
    "model",
    "checkpoints",
    "train_log.jsonl",
    "metrics.json",
    "input",
    "MODEL_CARD.md",
)
INPUT_NAME = "input"  # the rows `han.train` was handed, written here before preprocessing (han.workflows.in_memory)
TRAINING_NAMES = ("model", "checkpoints", "train_log.jsonl", "metrics.json", "MODEL_CARD.md")
LINKED_NAMES = ("data", "model", "checkpoints", "shards")  # han's subfolders: never followed when a link
WORKSPACE_KINDS = ("comparison", "tuning")  # DIR/<kind>.json holding {"han_<kind>": 1, ...}: a han workspace


def is_han_temporary(name: str) -> bool:
    """Whether a file name is one of han's temporaries (left behind only by a killed process)."""
    return name.startswith(".") and TEMPORARY_MARK in name and name.endswith(".tmp")


def _is_run_directory(folder: Path) -> bool:
    manifest = folder / "manifest.json"
    if manifest.is_file():
        with contextlib.suppress(RunDirError):
            return is_han_manifest(read_json(manifest))
    return False


def enclosing_run_directory(path: Path) -> Path | None:
    """The han run directory that `path` is inside of (or is), if any."""
    for folder in [path, *path.parents] if path.is_dir() else list(path.parents):
        if _is_run_directory(folder):
            return folder
    return None


def workspace_marker(directory: Path, kind: str) -> Path:
    """The marker file of a `kind` workspace (`comparison`, `tuning`): DIR/<kind>.json."""
    return directory / f"{kind}.json"


def is_han_workspace(directory: Path, kind: str) -> bool:
    """Whether `directory` holds the marker of a han `kind` workspace."""
    marker = workspace_marker(directory, kind)
    if not marker.is_file():
        return False
    try:
        saved = read_json(marker)
    except RunDirError:
        return False
    return isinstance(saved, dict) and saved.get(f"han_{kind}") == 1


def enclosing_han_folder(path: Path) -> tuple[Path, str] | None:
    """The innermost han-made folder that `path` is inside of (or is): (folder, "run directory" or "<kind>")."""
    for folder in [path, *path.parents] if path.is_dir() else list(path.parents):
        if _is_run_directory(folder):
            return folder, "run directory"
        for kind in WORKSPACE_KINDS:
            if is_han_workspace(folder, kind):
                return folder, kind
    return None


def refuse_linked_folders(root: Path) -> None:
    """Refuse a run directory whose han-made subfolder (`LINKED_NAMES`) is a symbolic link: han would read
    and remove files elsewhere through it."""
    for name in LINKED_NAMES:
        if (root / name).is_symlink():
            raise RunDirError(
                f"{root / name}: is a symbolic link; han reads and removes only the run directory's own files "
                "(replace the link with the folder it points to, or copy the run)"
            )


def _inside(path: Path, others: Iterable[Path]) -> bool:
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError):  # a link loop is nobody's input
        return False
    return any(resolved == other or other.is_relative_to(resolved) for other in others)


class Ownership(Manifest):
    """Claiming a run directory and removing what han made in it."""

    def remove_stale_temporaries(self) -> None:
        """Delete han's temporaries left by a process killed in the middle of a write (only han-named ones)."""
        for path in sorted(self.root.rglob(".*.tmp"), key=lambda p: len(p.parts), reverse=True):
            if is_han_temporary(path.name):
                with contextlib.suppress(OSError):
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    def _mark(self) -> None:
        """Write a fresh manifest: han's marker and the names it claims, nothing else."""
        self.write_fresh_manifest(claimed=list(CLAIMED_NAMES))

    def write_fresh_manifest(self, **fields: Any) -> None:
        """Replace manifest.json with the marker, `created`, versions and `fields`."""
        if self.manifest_path.exists():
            self.manifest_path.unlink()
        self.update_manifest(**fields)

    def owned_paths(self, names: Iterable[str] | None = None) -> list[Path]:
        """Files han made here: listed artifacts, files under claimed names, checkpoints (within `names`)."""
        manifest = self.read_manifest()
        claimed_value = manifest.get("claimed")
        claimed: list[Any] = claimed_value if isinstance(claimed_value, list) else []
        wanted = set(names) if names is not None else None
        found: set[Path] = set()
        for key in self.listed_artifacts(manifest):
            found.add(self.root / key)
        for name in claimed:
            if name in CLAIMED_NAMES:  # never a name from an altered manifest
                top = self.root / name
                found.update(top.rglob("*") if top.is_dir() and not top.is_symlink() else [top])
        checkpoints = self.root / "checkpoints"
        if checkpoints.is_dir():
            found.update(p for p in checkpoints.glob("step-*.safetensors"))
        files = [p for p in found if (p.is_file() or p.is_symlink()) and p.name != LOCK_NAME]
        if wanted is not None:
            files = [p for p in files if p.relative_to(self.root).parts[0] in wanted]
        return sorted(files)

    def remove_owned(self, names: Iterable[str] | None = None, inputs: Iterable[Path] = ()) -> list[Path]:
        """Remove the files han made (within top-level `names`), never an input; then han's emptied folders."""
        protected = []
        for source in inputs:
            with contextlib.suppress(RuntimeError, OSError):  # a link loop protects nothing
                protected.append(Path(source).resolve())
        refuse_linked_folders(self.root)
        doomed = []
        for path in self.owned_paths(names):  # everything checked before anything is removed
            if _inside(path, protected):
                log.warning("%s: an input of this run; kept", path)
                continue
            self.refuse_links(path.parent)
            if not os.access(path.parent, os.W_OK | os.X_OK):
                raise RunDirError(
                    f"{path.parent}: read-only, so the previous run's files cannot be removed; nothing was removed"
                )
            doomed.append(path)
        removed = []
        for path in doomed:
            try:
                path.unlink()
            except OSError as error:
                raise RunDirError(f"{path}: could not remove the previous run's file ({error})") from None
            removed.append(path)
        for name in names if names is not None else CLAIMED_NAMES:
            top = self.root / name
            if top.is_dir() and not top.is_symlink():
                for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    with contextlib.suppress(OSError):
                        folder.rmdir()  # only when empty
                with contextlib.suppress(OSError):
                    top.rmdir()
        return removed

    def claim(self, overwrite: bool, keep: tuple[str, ...] = (), inputs: Iterable[Path] = ()) -> None:
        """Make the run directory ready for a fresh run: new, empty, or (with `overwrite`) han's own, emptied of
        what han made there. Entries named in `keep` (the shards a sharded preprocess merges) are left alone.
        """
        enclosing = enclosing_run_directory(self.root.parent)
        if enclosing is not None:
            raise RunDirError(
                f"{self.root}: is inside the han run directory {enclosing}, which holds only what han wrote there; "
                "choose a --run-dir outside it"
            )
        if not self.root.exists():
            create_folder(self.root, "--run-dir")  # under a file, read-only, ...: one line, not a traceback
            self._mark()
            return
        if not self.root.is_dir():
            raise RunDirError(f"{self.root}: exists and is not a directory; choose another --run-dir")
        han_run = self.is_han_run()
        if han_run:
            self.remove_stale_temporaries()
        if han_run and INPUT_NAME in (self.read_manifest().get("claimed") or ()):
            keep = (*keep, INPUT_NAME)  # han.train's rows, written under this claim for the preprocessing to come
        others = [c for c in self.root.iterdir() if c.name not in (*keep, "manifest.json", LOCK_NAME)]
        if han_run and not others and not self.listed_artifacts():
            self._mark()  # claimed before, nothing written yet
            return
        if not others and not self.manifest_path.exists():
            self._mark()
            return
        if not han_run:
            raise RunDirError(
                f"{self.root}: holds files but is not a han run directory (no manifest.json with han's marker); "
                "han writes only into a new or empty folder or a run directory of its own, even with --overwrite; "
                "choose another --run-dir"
            )
        if not overwrite:
            raise RunDirError(
                f"{self.root}: run directory already holds files; pass --overwrite to replace them, "
                f"--resume to continue the run, or choose another --run-dir"
            )
        log.info("--overwrite: removing what han wrote in %s", self.root)
        self.remove_owned(inputs=inputs)
        self._mark()

    def claim_for_training(self, resume: bool, overwrite: bool) -> None:
        """Refuse to train over existing training results unless resuming or `overwrite` removes them."""
        refuse_linked_folders(self.root)  # training writes into model/ and checkpoints/, reads checkpoints/
        existing = [self.root / name for name in TRAINING_NAMES if (self.root / name).exists()]
        if not existing or resume:
            return
        names = ", ".join(p.name for p in existing)
        if not overwrite:
            raise RunDirError(
                f"{self.root}: already holds training results ({names}); pass --resume to continue training "
                f"or --overwrite to train again from scratch"
            )
        log.info("--overwrite: removing the previous training results of %s (%s)", self.root, names)
        self.remove_owned(TRAINING_NAMES)
        manifest = self.read_manifest()
        if manifest:
            for key in ("train", "stage_seconds"):
                manifest.pop(key, None)
            peaks = manifest.get("stage_peak_memory")
            if isinstance(peaks, dict):  # the preprocessing kept keeps its figure
                manifest["stage_peak_memory"] = {k: v for k, v in peaks.items() if k not in ("train", "evaluate")}
            self.forget_artifacts(*existing, manifest=manifest)
