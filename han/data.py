"""Ingestion: labelled documents from files, class folders, installed packages or the hub.

Everything goes through `datasets` (files and hub ids via `datasets.load_dataset`; class folders
are read here and wrapped in a `datasets.Dataset`). The result is one `RawSplit` per split name
(train, validation, test) holding plain text and string labels; missing validation and test splits
are carved from train, stratified and seeded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from han.config import DataConfig
from han.errors import DataError
from han.inputs import check_csv_header, check_input_file

log = logging.getLogger(__name__)

FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
SPLIT_FOLDER_NAMES = {"train", "validation", "valid", "dev", "test"}
HUB_LAYOUT_SUFFIXES = {".parquet", ".csv", ".jsonl", ".json", ".arrow", ".tsv"}


@dataclass
class RawSplit:
    """Documents of one split: text, string label and the source row (1-based) for messages."""

    texts: list[str]
    labels: list[str]
    rows: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int]) -> RawSplit:
        return RawSplit(
            [self.texts[i] for i in indices], [self.labels[i] for i in indices], [self.rows[i] for i in indices]
        )


def resolve_source(source: str) -> Path | None:
    """A local path for `source` ("package:NAME/sub/dir" or a path), or None for a hub id."""
    if source.startswith("package:"):
        package, _, sub = source[len("package:") :].partition("/")
        spec = importlib.util.find_spec(package)  # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise DataError(
                f"data.source {source!r}: Python package {package!r} is not installed (pip install {package})"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / sub
        if not path.exists():
            raise DataError(f"data.source {source!r}: {path} does not exist in the installed package")
        return path
    path = Path(source).expanduser()
    if path.exists():
        return path
    if (
        source.startswith((".", "/", "~"))
        or Path(source).suffix.lower() in FILE_BUILDERS
        or os.sep in source.strip("/").split("/", 1)[-1]
    ):
        raise DataError(f"data.source {source!r}: no such file or folder")
    return None


def _is_hub_layout(folder: Path) -> bool:
    if (folder / "README.md").is_file():
        return True
    candidates = list(folder.glob("*")) + list((folder / "data").glob("*"))
    return any(p.is_file() and p.suffix.lower() in HUB_LAYOUT_SUFFIXES for p in candidates)


def _read_text_file(path: Path) -> tuple[str, bool]:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), True


def _class_folder_split(folder: Path) -> datasets.Dataset:
    texts: list[str] = []
    labels: list[str] = []
    replaced = 0
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    for class_dir in class_dirs:
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
            text, lossy = _read_text_file(path)
            replaced += lossy
            texts.append(text)
            labels.append(class_dir.name)
    if not texts:
        raise DataError(
            f"{folder}: no text files found in class sub-folders (expected {folder}/<label>/<document>.txt)"
        )
    if replaced:
        log.warning(
            "%s: %d file(s) were not valid UTF-8; undecodable bytes were replaced with U+FFFD", folder, replaced
        )
    return datasets.Dataset.from_dict({"text": texts, "label": labels})


def _load_class_folders(folder: Path) -> datasets.DatasetDict:
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if subdirs and all(p.name in SPLIT_FOLDER_NAMES for p in subdirs):
        return datasets.DatasetDict({p.name: _class_folder_split(p) for p in sorted(subdirs)})
    return datasets.DatasetDict({"train": _class_folder_split(folder)})


def _load_with_datasets(path: str, where: str | None = None, **kwargs: Any) -> datasets.DatasetDict:
    where = where or path  # messages name the user's file, not the builder
    try:
        loaded = datasets.load_dataset(path, **kwargs)
    except FileNotFoundError as error:
        raise DataError(f"{where}: {str(error).splitlines()[0]}") from None
    except ConnectionError as error:
        raise DataError(
            f"{path}: the Hugging Face hub cannot be reached and the dataset is not in the local cache "
            f"({str(error).splitlines()[0]}); connect once, or set HF_DATASETS_OFFLINE=1 to use the cache only"
        ) from None
    except (ValueError, TypeError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{where}: could not be read as a dataset ({message})") from None
    except Exception as error:  # datasets raises many library-specific types (DatasetNotFoundError, ...)
        if type(error).__name__ == "DatasetGenerationError" and error.__cause__ is not None:
            cause = str(error.__cause__).strip().splitlines()
            raise DataError(
                f"{where}: could not be parsed ({cause[0] if cause else type(error.__cause__).__name__})"
            ) from None
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "offline" in message.lower() or "connect" in message.lower():
            message += "; without network access set HF_DATASETS_OFFLINE=1 and make sure the dataset is cached"
        raise DataError(f"{where}: {type(error).__name__}: {message}") from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def load_source(config: DataConfig) -> datasets.DatasetDict:
    """Load the configured source as a `DatasetDict` of the source's own splits."""
    path = resolve_source(config.source)
    if path is None:
        log.info("loading hub dataset %s", config.source)
        return _load_with_datasets(config.source, name=config.name, revision=config.revision)
    if path.is_dir():
        if _is_hub_layout(path):
            return _load_with_datasets(str(path), name=config.name)
        return _load_class_folders(path)
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(sorted(FILE_BUILDERS))}")
    check_input_file(path)
    kwargs: dict[str, Any] = {"data_files": {"train": str(path)}}
    if path.suffix.lower() == ".tsv":
        kwargs["delimiter"] = "\t"
    if builder == "csv":
        check_csv_header(path, kwargs.get("delimiter", ","), [*config.text_columns, config.label_column])
    return _load_with_datasets(builder, where=str(path), **kwargs)


def _label_names(feature: Any, labels: list[str]) -> list[str]:
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    distinct = set(labels)
    try:
        return sorted(distinct, key=float)  # numeric labels ("1".."5") in numeric order
    except ValueError:
        return sorted(distinct)


def _label_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _rows_text(rows: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _to_raw_split(dataset: datasets.Dataset, config: DataConfig, where: str) -> RawSplit:
    columns = dataset.column_names
    for column in [*config.text_columns, config.label_column]:
        if column not in columns:
            raise DataError(
                f"{where}: column {column!r} not found (columns: {', '.join(columns)}); "
                f"set data.text_column / data.label_column"
            )
    text_parts = [dataset[c] for c in config.text_columns]
    texts = []
    for parts in zip(*text_parts):
        pieces = [str(p).strip() for p in parts if p is not None and str(p).strip() and str(p) != "nan"]
        texts.append(config.text_separator.join(pieces))
    feature = dataset.features[config.label_column]
    raw_labels = dataset[config.label_column]
    if isinstance(feature, datasets.ClassLabel):
        labels = [feature.int2str(v) if v is not None and v >= 0 else None for v in raw_labels]
    else:
        labels = [None if v is None or (isinstance(v, float) and v != v) else _label_text(v) for v in raw_labels]
    rows = list(range(1, len(texts) + 1))
    empty = [r for r, t in zip(rows, texts) if not t.strip()]
    if empty:
        raise DataError(
            f"{where}: {len(empty)} document(s) with empty text in column(s) {', '.join(config.text_columns)} at row(s) {_rows_text(empty)}; remove them or fix the data"
        )
    unlabelled = [r for r, label in zip(rows, labels) if label is None or label == ""]
    if unlabelled:
        raise DataError(
            f"{where}: {len(unlabelled)} document(s) without a label in column {config.label_column!r} at row(s) {_rows_text(unlabelled)}"
        )
    return RawSplit(texts, labels, rows)  # type: ignore[arg-type]


def load_labelled_file(path: Path, config: DataConfig) -> RawSplit:
    """Every row of one labelled file or folder (all its splits), read with the configured text and label columns."""
    file_config = config.model_copy(update={"source": str(path), "split_column": None})
    source = load_source(file_config)
    return _to_raw_split(datasets.concatenate_datasets(list(source.values())), file_config, str(path))


def _carve(split: RawSplit, fraction: float, seed: int, where: str = "data") -> tuple[RawSplit, RawSplit]:
    from sklearn.model_selection import train_test_split

    indices = list(range(len(split)))
    try:
        keep, carved = train_test_split(indices, test_size=fraction, random_state=seed, stratify=split.labels)
    except ValueError:  # a class too small to stratify: fall back to a plain seeded split
        try:
            keep, carved = train_test_split(indices, test_size=fraction, random_state=seed)
        except ValueError:
            raise DataError(
                f"{where}: {len(split)} training document(s) are too few to carve a {fraction:g} split from; "
                f"add documents or provide the split"
            ) from None
    return split.subset(sorted(keep)), split.subset(sorted(carved))


@dataclass
class LoadedData:
    """Train/validation/test documents and the label names, fixed in order."""

    splits: dict[str, RawSplit]
    label_names: list[str]
    carved: list[str]  # splits carved from train because the source had none

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(self.splits):
            digest.update(f"split:{name}\n".encode())
            for text, label in zip(self.splits[name].texts, self.splits[name].labels):
                digest.update(
                    label.encode("utf-8", "surrogatepass")
                    + b"\t"
                    + hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
                )
        return digest.hexdigest()


def load_data(config: DataConfig, seed: int) -> LoadedData:
    """Load, split and check the labelled documents named by `config`."""
    source = load_source(config)
    where = config.source
    if config.split_column:
        if len(source) != 1:
            raise DataError(f"{where}: data.split_column is set but the source already has splits {list(source)}")
        (only,) = source.values()
        if config.split_column not in only.column_names:
            raise DataError(
                f"{where}: split column {config.split_column!r} not found (columns: {', '.join(only.column_names)})"
            )
        names = [str(v) for v in only[config.split_column]]
        source = datasets.DatasetDict(
            {name: only.select([i for i, v in enumerate(names) if v == name]) for name in sorted(set(names))}
        )
    if config.splits.train not in source:
        raise DataError(
            f"{where}: no training split {config.splits.train!r} (splits: {', '.join(source)}); set data.splits.train"
        )
    wanted = {"train": config.splits.train, "validation": config.splits.validation, "test": config.splits.test}
    splits: dict[str, RawSplit] = {}
    for ours, theirs in wanted.items():
        if theirs is not None and theirs in source:
            splits[ours] = _to_raw_split(source[theirs], config, f"{where} [{theirs}]")
    train_feature = (
        source[config.splits.train].features[config.label_column]
        if config.label_column in source[config.splits.train].column_names
        else None
    )
    carved = []
    if "test" not in splits:
        splits["train"], splits["test"] = _carve(splits["train"], config.test_fraction, seed, where)
        carved.append("test")
    if "validation" not in splits:
        splits["train"], splits["validation"] = _carve(splits["train"], config.validation_fraction, seed, where)
        carved.append("validation")
    label_names = _label_names(train_feature, splits["train"].labels)
    known = set(label_names)
    for name in ("validation", "test"):
        unseen = sorted(set(splits[name].labels) - known)
        if unseen:
            rows = [r for r, label in zip(splits[name].rows, splits[name].labels) if label in set(unseen)]
            raise DataError(
                f"{where} [{name}]: label(s) {', '.join(map(repr, unseen))} never seen in training, at row(s) {_rows_text(rows)}"
            )
    if len(label_names) < 2:
        raise DataError(f"{where}: the training split has {len(label_names)} label(s); classification needs at least 2")
    return LoadedData(splits, label_names, carved)
