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

FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
GLOB_CHARACTERS = set("*?[")


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
    if (
        source.startswith((".", "/", "~"))
        or Path(source).suffix.lower() in FILE_BUILDERS
        or os.sep in source.strip("/").split("/", 1)[-1]
    ):
        raise DataError(f"data.source {source!r}: no such file or folder")
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
                raise DataError(f"{setting} {pattern!r}: the pattern matches no file")
            files.extend(Path(m) for m in matches)
        else:
            path = Path(pattern).expanduser()
            check_regular_file(path)
            if not path.is_file():
                raise DataError(f"{setting} {pattern!r}: no such file")
            files.append(path)
    return files
