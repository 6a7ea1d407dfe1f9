"""The run directory: one folder per run, the only channel between stages.

Layout:
    config.json          resolved config (every default filled in); `han run` accepts it as a config
    manifest.json        versions, seed, data fingerprint, stage timings and summaries
    labels.json          label names, index = class id
    vocab.json           id -> word
    embeddings.safetensors   initial word vectors (vocab order)
    data/<split>/        encoded documents (Arrow, via datasets.save_to_disk)
    model/best.safetensors, model/last.safetensors
    train_log.jsonl      one line per epoch
    metrics.json         {"<split>": {...}} from evaluate
    shards/preprocess-<i>-of-<n>/   segmented shards of `han preprocess --shard i/n`, removed by the merge
Every file is written to a temporary name and renamed into place, so a file that exists is complete.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from han.config import Config, config_from_dict
from han.errors import RunDirError


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed onto `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; on success it replaces `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text_atomic(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(target: Path, data: Any) -> None:
    write_text_atomic(target, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; run the stage that writes it first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunDirError(f"{path}: not valid JSON ({error}); the file is damaged") from None


def package_versions() -> dict[str, str]:
    """Versions of Python and the libraries that decide a run's results."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("han", "torch", "spacy", "gensim", "datasets", "numpy", "pyarrow", "scikit-learn"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def labels_path(self) -> Path:
        return self.root / "labels.json"

    @property
    def vocab_path(self) -> Path:
        return self.root / "vocab.json"

    @property
    def embeddings_path(self) -> Path:
        return self.root / "embeddings.safetensors"

    def data_path(self, split: str) -> Path:
        return self.root / "data" / split

    @property
    def best_weights_path(self) -> Path:
        return self.root / "model" / "best.safetensors"

    @property
    def last_weights_path(self) -> Path:
        return self.root / "model" / "last.safetensors"

    @property
    def train_log_path(self) -> Path:
        return self.root / "train_log.jsonl"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.json"

    def splits(self) -> list[str]:
        data = self.root / "data"
        return (
            sorted(p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")) if data.is_dir() else []
        )

    def require(self, *paths: Path, hint: str) -> None:
        """Raise a one-line error naming the first missing path."""
        if not self.root.is_dir():
            raise RunDirError(f"{self.root}: run directory not found")
        for path in paths:
            if not path.exists():
                raise RunDirError(f"{path}: missing from the run directory; {hint}")

    # --- config and manifest -------------------------------------------------------------
    def save_config(self, config: Config) -> None:
        write_json_atomic(self.config_path, config.model_dump(mode="json"))

    def load_config(self) -> Config:
        self.require(self.config_path, hint="run `han preprocess` (or `han run`) first")
        return config_from_dict(read_json(self.config_path), str(self.config_path))

    def read_manifest(self) -> dict[str, Any]:
        return read_json(self.manifest_path) if self.manifest_path.exists() else {}

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge top-level fields into manifest.json (stage sections are replaced whole)."""
        manifest = self.read_manifest()
        manifest.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        manifest["versions"] = package_versions()
        manifest.update(fields)
        write_json_atomic(self.manifest_path, manifest)
        return manifest
