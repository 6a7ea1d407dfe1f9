"""Loading a data source as Arrow datasets, one per split: table files, class folders, hub ids.

Everything goes through `datasets`: table files and hub ids via `datasets.load_dataset` (Arrow,
memory-mapped from the datasets cache, so a split is never read into memory as a whole); class
folders are read here and wrapped in a `datasets.Dataset`. `han.data.splits` turns the result into
labelled documents.
"""

from __future__ import annotations

import csv
import errno
import functools
import logging
import os
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import datasets

from han.config import DataConfig
from han.data.folders import document_files, read_document
from han.data.inputs import check_csv_header, check_input_file
from han.data.records import csv_delimiter
from han.data.sources import FILE_BUILDERS, expand_files, is_glob, resolve_source
from han.errors import DataError, StorageError
from han.util.atomic import failure_reason, write_failure
from han.util.hashing import folder_digest

log = logging.getLogger(__name__)

SPLIT_FOLDER_NAMES = {"train", "validation", "valid", "dev", "test"}
HUB_PROBE_SECONDS = 3.0  # how long a hub id waits for the hub's host to answer before the cache alone is used
HUB_LAYOUT_SUFFIXES = {".parquet", ".csv", ".jsonl", ".json", ".arrow", ".tsv"}


@dataclass
class SourceSplit:
    """One split as read from the source, with optional per-row names for messages."""

    dataset: datasets.Dataset
    row_names: list[str] | None = None


def _is_hub_layout(folder: Path) -> bool:
    if (folder / "README.md").is_file():
        return True
    candidates = list(folder.glob("*")) + list((folder / "data").glob("*"))
    return any(p.is_file() and p.suffix.lower() in HUB_LAYOUT_SUFFIXES for p in candidates)


def _class_folder_split(folder: Path, config: DataConfig, root: Path) -> SourceSplit:
    texts: list[str] = []
    labels: list[str] = []
    names: list[str] = []
    replaced = 0
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    for class_dir in class_dirs:
        for path in document_files(class_dir):
            text, lossy = read_document(path)
            replaced += lossy
            texts.append(text)
            labels.append(class_dir.name)
            names.append(str(path.relative_to(root)))
    if not texts:
        raise DataError(
            f"{folder}: no text files found in class sub-folders (expected {folder}/<label>/<document>.txt)"
        )
    if replaced:
        log.warning(
            "%s: %d file(s) were not valid UTF-8; undecodable bytes were replaced with U+FFFD", folder, replaced
        )
    dataset = datasets.Dataset.from_dict({config.text_columns[0]: texts, config.label_column: labels})
    return SourceSplit(dataset, names)


def _load_class_folders(folder: Path, config: DataConfig) -> dict[str, SourceSplit]:
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if subdirs and all(p.name in SPLIT_FOLDER_NAMES for p in subdirs):
        return {p.name: _class_folder_split(p, config, folder) for p in sorted(subdirs)}
    return {"train": _class_folder_split(folder, config, folder)}


def _offline() -> bool:
    return bool(getattr(datasets.config, "HF_HUB_OFFLINE", False))


def one_line(error: BaseException) -> str:
    """The first two non-blank lines of `error`'s message joined by '; ' (its type name when there are none)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else type(error).__name__


def _probe(host: str, port: int, outcome: list[str]) -> None:
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS):
            outcome.append("")
    except OSError as error:
        outcome.append(f"{host}:{port}: {error.strerror or error}")


@functools.lru_cache(maxsize=4)
def _unreachable(endpoint: str) -> str | None:
    """Why `endpoint` (or the proxy in front of it) cannot be connected to within HUB_PROBE_SECONDS, or None when it can.

    Name lookup has no timeout of its own, so the probe runs in a thread that is given up on after the limit.
    """
    url = urlsplit(endpoint)
    proxy = urllib.request.getproxies().get(url.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    outcome: list[str] = []
    thread = threading.Thread(target=_probe, args=(host, port, outcome), daemon=True)
    thread.start()
    thread.join(HUB_PROBE_SECONDS)
    if not outcome:
        return f"{host}:{port}: no answer within {HUB_PROBE_SECONDS:g} s"
    return outcome[0] or None


@contextmanager
def _cache_only() -> Iterator[None]:
    """Offline mode of `datasets` and `huggingface_hub` for one call: the local cache, no network retries."""
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _load_hub_dataset(source: str, config: DataConfig) -> datasets.DatasetDict:
    """A hub dataset: when the hub's host does not answer within seconds, only the local cache is tried
    (instead of a minute of retries), and a dataset missing from it is one error saying why."""
    reason = None if _offline() else _unreachable(str(datasets.config.HF_ENDPOINT))
    if reason is None:
        log.info("loading hub dataset %s", source)
        return _load_with_datasets(source, name=config.name, revision=config.revision)
    with _cache_only():
        loaded = _load_with_datasets(source, unreachable=reason, name=config.name, revision=config.revision)
    log.info("loaded hub dataset %s from the local datasets cache (the hub cannot be reached: %s)", source, reason)
    return loaded


def _load_with_datasets(
    path: str, where: str | None = None, unreachable: str | None = None, **kwargs: Any
) -> datasets.DatasetDict:
    where = where or path
    try:
        loaded = _into_cache(path, where, kwargs)
    except StorageError:
        raise
    except ConnectionError as error:
        if unreachable is not None:
            raise DataError(
                f"{where}: the Hugging Face hub cannot be reached ({unreachable}) and the dataset is not in the local "
                "datasets cache; check the network, or set HF_DATASETS_OFFLINE=1 to use cached datasets only"
            ) from None
        if _offline():
            raise DataError(
                f"{where}: not in the local datasets cache, and HF_DATASETS_OFFLINE=1 allows only the cache "
                f"({one_line(error)}); unset HF_DATASETS_OFFLINE on a machine that can reach the hub to download it once"
            ) from None
        raise DataError(
            f"{where}: the Hugging Face hub cannot be reached and the dataset is not in the local cache "
            f"({one_line(error)}); check the network, or set HF_DATASETS_OFFLINE=1 to use cached datasets only"
        ) from None
    except FileNotFoundError as error:
        raise DataError(f"{where}: {one_line(error)}") from None
    except (ValueError, TypeError, OSError) as error:
        message = one_line(error)
        if "Couldn't find cache" in message and unreachable is not None:
            message += f" (the Hugging Face hub cannot be reached: {unreachable}; only cached datasets can be loaded)"
        elif "Couldn't find cache" in message and _offline():
            message += " (HF_DATASETS_OFFLINE=1: only cached datasets can be loaded)"
        raise DataError(f"{where}: could not be read as a dataset ({message})") from None
    except Exception as error:  # datasets raises many library-specific types (DatasetNotFoundError, ...)
        if type(error).__name__ == "DatasetGenerationError" and error.__cause__ is not None:
            cause = str(error.__cause__).strip().splitlines()
            raise DataError(
                f"{where}: could not be parsed ({cause[0] if cause else type(error.__cause__).__name__})"
            ) from None
        message = one_line(error)
        if "offline" in message.lower() or "connect" in message.lower():
            message += "; without network access set HF_DATASETS_OFFLINE=1 and make sure the dataset is cached"
        raise DataError(f"{where}: {type(error).__name__}: {message}") from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def _into_cache(path: str, where: str, kwargs: dict[str, Any]) -> datasets.DatasetDict | datasets.Dataset:
    """`datasets.load_dataset`, which writes Arrow files into its cache: a failed write there (disk full, ...)
    is a `StorageError`, not a file that "could not be parsed"."""
    try:
        return datasets.load_dataset(path, **kwargs)
    except Exception as error:
        failure = write_failure(error)
        cache = kwargs.get("cache_dir") or datasets.config.HF_DATASETS_CACHE
        if failure is None or (failure.errno in (errno.EACCES, errno.EPERM) and not _of_cache(failure.filename, cache)):
            raise  # not a write (an input han may not read is a data error)
        raise StorageError(
            f"{where}: could not be read into the datasets cache {cache} ({failure_reason(failure)}); "
            "make room there, or set HF_DATASETS_CACHE to a writable folder with room"
        ) from None


def _of_cache(filename: object, cache: str | os.PathLike[str]) -> bool:
    """Whether the path `filename` (an OSError's, possibly None) lies in the folder `cache` or is a folder made
    for it."""
    if not isinstance(filename, (str, os.PathLike)):
        return False
    path, folder = Path(os.path.abspath(filename)), Path(os.path.abspath(cache))
    return path.is_relative_to(folder) or folder.is_relative_to(path)


def _builder_for(files: list[Path]) -> str:
    suffixes = {f.suffix.lower() for f in files}
    builders = {FILE_BUILDERS.get(s) for s in suffixes}
    if None in builders:
        bad = sorted(s for s in suffixes if s not in FILE_BUILDERS)
        raise DataError(f"{files[0]}: unsupported file type {bad[0]!r}; use one of {', '.join(sorted(FILE_BUILDERS))}")
    if len(builders) > 1 or (suffixes & {".csv", ".tsv"} and len(suffixes) > 1):
        raise DataError(f"{files[0]}: the files of one split mix types ({', '.join(sorted(suffixes))}); use one type")
    return builders.pop()  # type: ignore[return-value]


def _csv_header(path: Path, delimiter: str) -> list[str]:
    """The column names of a CSV file that `han.data.inputs.check_csv_header` has already accepted."""
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        return next(csv.reader(handle, delimiter=delimiter), None) or []


def _load_table_files(files: list[Path], config: DataConfig) -> SourceSplit:
    """One split from one or more table files; rows of several files are named "file row n"."""
    builder = _builder_for(files)
    for file in files:
        check_input_file(file, strict_utf8=False)
    kwargs: dict[str, Any] = {}
    if builder == "csv":
        delimiter = csv_delimiter(files[0], config)
        for file in files:
            check_csv_header(file, delimiter, [*config.text_columns, *config.label_source_columns])
        kwargs.update(
            delimiter=delimiter,
            # every column read as text: labels stay as written ("01" is not 1), numeric-looking text stays text
            features=datasets.Features({name: datasets.Value("string") for name in _csv_header(files[0], delimiter)}),
            keep_default_na=False,  # a review that says "NA" is text, not a missing value
            na_values=[""],
            encoding_errors="replace",
        )
    elif builder == "json":
        # datasets re-decodes the bytes (with these errors) only for an encoding other than "utf-8";
        # "utf-8-sig" is UTF-8 that also drops a byte-order mark. Plain "utf-8" would let invalid
        # bytes through into Arrow strings, to fail later.
        kwargs.update(encoding="utf-8-sig", encoding_errors="replace")
    parts = [_load_with_datasets(builder, str(f), data_files={"train": [str(f)]}, **kwargs)["train"] for f in files]
    if len(parts) == 1:
        return SourceSplit(parts[0])
    try:
        dataset = datasets.concatenate_datasets(parts)
    except ValueError as error:
        raise DataError(
            f"{files[0]}: the files of one split have different columns or types ({one_line(error)})"
        ) from None
    names = [f"{f.name} row {i}" for f, part in zip(files, parts, strict=True) for i in range(1, len(part) + 1)]
    return SourceSplit(dataset, names)


def load_source(config: DataConfig) -> dict[str, SourceSplit]:
    """Load the configured source as its own splits (split name -> `SourceSplit`)."""
    source = config.source
    if isinstance(source, dict):
        return {split: _load_table_files(expand_files(files), config) for split, files in source.items()}
    if isinstance(source, list) or is_glob(source):
        return {"train": _load_table_files(expand_files(source), config)}
    path = resolve_source(source)
    if path is None:
        loaded = _load_hub_dataset(source, config)
        return {name: SourceSplit(split) for name, split in loaded.items()}
    if path.is_dir():
        if _is_hub_layout(path):
            # datasets keys the cache of a local folder by the folder's name and README configs, not by its
            # content: another folder of the same name, or this one with new files, would be read from the
            # stale cached copy. A cache folder per content digest keeps each version apart.
            cache = Path(datasets.config.HF_DATASETS_CACHE) / "han-local-folders" / folder_digest(path)[:32]
            loaded = _load_with_datasets(str(path), name=config.name, cache_dir=str(cache))
            return {name: SourceSplit(split) for name, split in loaded.items()}
        return _load_class_folders(path, config)
    return {"train": _load_table_files([path], config)}
