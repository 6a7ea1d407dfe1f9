"""Naming the input: what `data.source` refers to (file, glob, folder, package folder or hub id).

Kept free of heavy imports: the preprocessing cache check uses it before `datasets` is loaded.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path
from typing import Any

from han.data.inputs import check_regular_file
from han.errors import DataError
from han.util.paths import GLOB_CHARACTERS, looks_like_path

# Keyed by han.util.paths.TABLE_SUFFIXES (the suffixes that make a source a file, never a hub id).
FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def describe_source(source: str | list[str] | dict[str, Any]) -> str:
    """A short description of `data.source` for messages."""
    if isinstance(source, str):
        return source
    if isinstance(source, list):
        return source[0] if len(source) == 1 else f"{source[0]} (+{len(source) - 1} more)"
    return "{" + ", ".join(f"{k}: {describe_source(v)}" for k, v in source.items()) + "}"


def is_glob(text: str) -> bool:
    """Whether `text` is a glob pattern (and not the name of an existing file)."""
    return any(c in GLOB_CHARACTERS for c in text) and not Path(text).expanduser().exists()


def looked_in(text: str) -> str:
    """Where han looked for the missing path `text`, for messages: its folder (a glob's, up to the first pattern)."""
    parts = Path(text).expanduser().parts
    fixed = next((i for i, part in enumerate(parts) if any(c in GLOB_CHARACTERS for c in part)), len(parts))
    folder = os.path.abspath(Path(*parts[: min(fixed, len(parts) - 1)]))
    return f"looked in {os.path.join(folder, '')}; a config file's relative paths are read from its folder"


def resolve_source(source: str) -> Path | None:
    """A local path for `source` ("package:NAME/sub/dir" or a path), or None for a hub id."""
    if source.startswith("package:"):
        package, _, sub = source[len("package:") :].partition("/")
        spec = importlib.util.find_spec(package)  # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise DataError(
                f"data.source {source!r}: Python package {package!r} is not installed (pip install {package})"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / sub
        if not path.exists():
            raise DataError(f"data.source {source!r}: {path} does not exist in the installed package")
        check_regular_file(path)
        return path
    path = Path(source).expanduser()
    if path.exists():
        check_regular_file(path)  # a named pipe or device would block or never end when read
        return path
    if looks_like_path(source):
        raise DataError(f"data.source {source!r}: no such file or folder ({looked_in(source)})")
    return None


def expand_files(patterns: str | list[str], setting: str = "data.source") -> list[Path]:
    """Files named by a path, a glob or a list of them, in order (each glob sorted); `setting` names them in errors."""
    files: list[Path] = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        if is_glob(pattern):
            matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
            for match in matches:
                check_regular_file(Path(match))
            matches = [m for m in matches if Path(m).is_file()]
            if not matches:
                raise DataError(f"{setting} {pattern!r}: the pattern matches no file ({looked_in(pattern)})")
            files.extend(Path(m) for m in matches)
        else:
            path = Path(pattern).expanduser()
            check_regular_file(path)
            if not path.is_file():
                raise DataError(f"{setting} {pattern!r}: no such file ({looked_in(pattern)})")
            files.append(path)
    return files
