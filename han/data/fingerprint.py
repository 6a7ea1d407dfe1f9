"""Fingerprints of preprocessing inputs: the source data's content and every setting that shapes the output.

The preprocessing cache key (`preprocess_key`) is a SHA-256 over
- the content of every input file (SHA-256 of the bytes, with the file's name and size), or, for a
  hub id, the `datasets` fingerprints of its cached Arrow splits (which change with the revision);
- the vectors file of `embeddings.source: file`;
- the data, preprocess and embeddings sections and the seed, minus the settings that change only
  speed (`han.config.OUTPUT_NEUTRAL_SETTINGS`);
- the versions of the libraries that decide tokens and vectors, and `PREPROCESS_FORMAT`.

Hashing reads every input byte once (about 1 GB/s): that is far cheaper than preprocessing the same
bytes, and unlike size + mtime it cannot miss an edit that keeps both.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from han.config import MULTILABEL_ONLY, OUTPUT_NEUTRAL_SETTINGS, Config, DataConfig
from han.data.sources import expand_files, is_glob, resolve_source
from han.util.hashing import file_sha256, folder_digest

PREPROCESS_FORMAT = 2  # bump when the preprocess stage changes what it writes for the same inputs


def _files_digest(files: list[Path]) -> list[str]:
    return [f"{f.name}:{f.stat().st_size}:{file_sha256(f)}" for f in files]


def source_fingerprint(config: DataConfig) -> Any:
    """A JSON-able description of the source's content (see the module docstring)."""
    source = config.source
    if isinstance(source, dict):
        return {split: _files_digest(expand_files(files)) for split, files in source.items()}
    if isinstance(source, list) or is_glob(source):
        return _files_digest(expand_files(source))
    path = resolve_source(source)
    if path is None:  # hub id: the datasets cache fingerprints (loading from the cache is memory-mapped)
        from han.data.loading import load_source

        return {name: split.dataset._fingerprint for name, split in load_source(config).items()}
    if path.is_dir():
        return {"folder": folder_digest(path)}
    return _files_digest([path])


def settings_fingerprint(config: Config) -> dict[str, Any]:
    """The settings that decide the preprocessing output."""
    settings: dict[str, Any] = {"seed": config.seed}
    for section in ("data", "preprocess", "embeddings"):
        values = getattr(config, section).model_dump(mode="json")
        for key in OUTPUT_NEUTRAL_SETTINGS.get(section, ()):
            values.pop(key, None)
        if not config.multilabel:  # multiclass keys stay what they were before multi-label settings existed
            for key in MULTILABEL_ONLY.get(section, ()):
                values.pop(key, None)
        if section == "embeddings" and values["extra_text"] == {"splits": [], "files": []}:
            del values["extra_text"]  # keys of runs made before word2vec could read other splits stay as they were
        settings[section] = values
    if config.multilabel:
        settings["task"] = config.task
    return settings


def library_versions() -> dict[str, str]:
    """Installed versions of spaCy, gensim and NumPy (part of the preprocessing cache key)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("spacy", "gensim", "numpy")}


def preprocess_key(config: Config) -> str:
    """The preprocessing cache key of `config` and its current input data."""
    parts: dict[str, Any] = {
        "format": PREPROCESS_FORMAT,
        "settings": settings_fingerprint(config),
        "source": source_fingerprint(config.data),
        "versions": library_versions(),
    }
    if config.embeddings.source == "file" and config.embeddings.path and os.path.isfile(config.embeddings.path):
        parts["vectors"] = _files_digest([Path(config.embeddings.path)])
    if config.embeddings.source == "word2vec" and config.embeddings.extra_text.files:
        parts["extra_text"] = _files_digest(
            expand_files(config.embeddings.extra_text.files, "embeddings.extra_text.files")
        )
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class SplitDigest:
    """SHA-256 over the labels and texts of one split, fed batch by batch."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def update(self, texts: Sequence[str], labels: Sequence[str | tuple[str, ...]]) -> None:
        """Feed a batch: each label (or label set) with the SHA-256 of its text, in order."""
        for text, label in zip(texts, labels, strict=True):
            if not isinstance(label, str):  # a label set: its names between unit separators, never a plain label
                label = "\x1e" + "\x1f".join(label)
            self._digest.update(
                label.encode("utf-8", "surrogatepass")
                + b"\t"
                + hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
            )

    def digest(self) -> bytes:
        """The SHA-256 digest of everything fed so far."""
        return self._digest.digest()


def combine_digests(digests: dict[str, SplitDigest]) -> str:
    """The data fingerprint: SHA-256 over the split digests in split-name order."""
    combined = hashlib.sha256()
    for name in sorted(digests):
        combined.update(f"split:{name}\n".encode() + digests[name].digest())
    return combined.hexdigest()
