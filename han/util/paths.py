"""Paths written in settings: which values name local files, and how a relative one becomes absolute.

A relative path in a config file is read from the file's folder, one given on the command line from the
current folder (docs/guides/configs.md); `absolute_path` does that once, when the config is loaded, so a
run's saved config names its files wherever it is run from. `data.source` may also be a hub dataset id
(`imdb`, `user/dataset`): `looks_like_path` is the one rule that tells a path from an id.
"""

from __future__ import annotations

import os
from pathlib import Path

# The table files han reads (han.data.sources.FILE_BUILDERS gives each its reader); a source ending in one
# is a file, never a hub dataset id.
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
GLOB_CHARACTERS = frozenset("*?[")


def looks_like_path(text: str) -> bool:
    """Whether `text` is written as a local path, not a hub dataset id (`imdb`, `user/dataset`).

    A path starts with `.`, `/` or `~`, ends in a table file's suffix, is a glob, or has more than one
    `/` (a hub id has at most one: `user/dataset`).
    """
    return (
        text.startswith((".", "/", "~"))
        or Path(text).suffix.lower() in TABLE_SUFFIXES
        or any(c in GLOB_CHARACTERS for c in text)
        or os.sep in text.strip("/").split("/", 1)[-1]
    )


def absolute_path(text: str, base: Path) -> str:
    """`text` made absolute against the folder `base`; an absolute path or one starting with `~` is kept as written.

    Globs stay globs (`data/*.csv` becomes `BASE/data/*.csv`); `..` is folded (`configs/../data` -> `data`).
    """
    if not text or text.startswith("~") or Path(text).is_absolute():
        return text
    return os.path.normpath(Path(base) / text)


def path_exists(path: Path) -> bool:
    """Whether `path` names something; a name the system refuses (too long, a NUL byte) names nothing."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False
