"""The run directory: one folder per run, the only channel between stages.

Layout:
    config.json          resolved config (every default filled in); `han run` accepts it as a config
    manifest.json        versions, seed, data fingerprint, preprocess cache key, row counts, stage timings and summaries
    labels.json          label names, index = class id
    vocab.json           id -> word
    embeddings.safetensors   initial word vectors (vocab order)
    data/<split>/        encoded documents (Arrow, via datasets.save_to_disk)
    model/best.safetensors, model/last.safetensors
    train_log.jsonl      one line per epoch
    metrics.json         {"<split>": {...}} from evaluate
    checkpoints/step-<N>.safetensors   training checkpoints (han.checkpoint), the newest few
    shards/preprocess-<i>-of-<n>/   segmented shards of `han preprocess --shard i/n`, removed by the merge

Every file is written to a temporary name, fsync'ed and renamed into place, so a file that exists is
complete; a failed write (disk full) raises `StorageError` and leaves the previous version intact.
manifest.json lists every artifact (checkpoints excepted: each carries its own SHA-256) with its
size and SHA-256 under "artifacts"; stages verify what they load against it, so a truncated,
altered or planted file is refused with a one-line error instead of being read.
A run directory that holds results is never replaced without `overwrite=True` (`--overwrite`).
"""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from han.atomic import read_json, write_json_atomic
from han.config import Config, config_from_dict
from han.errors import RunDirError
from han.hashing import file_sha256
from han.vocab import Vocab

if TYPE_CHECKING:  # datasets (behind han.encoded) takes seconds to import; a cached preprocess never needs it
    from han.encoded import EncodedSplit

log = logging.getLogger(__name__)


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
        """The folder of the encoded split `split` (data/<split>)."""
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

    @property
    def checkpoints_path(self) -> Path:
        return self.root / "checkpoints"

    def training_outputs(self) -> list[Path]:
        """What `han train` writes; present when the run has been (partly) trained."""
        return [
            self.root / "model",
            self.checkpoints_path,
            self.train_log_path,
            self.metrics_path,
        ]

    def load_split(self, name: str) -> EncodedSplit:
        """A preprocessed split, verified against the manifest."""
        from han.encoded import EncodedSplit

        path = self.data_path(name)
        if not path.exists():
            available = ", ".join(self.splits()) or "none"
            raise RunDirError(f"{self.root}: no preprocessed split {name!r} (available: {available})")
        self.verify_artifacts(path)
        return EncodedSplit.load(path)

    def splits(self) -> list[str]:
        """Names of the encoded splits under data/, sorted (none when data/ does not exist)."""
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

    # --- config, labels and vocabulary ----------------------------------------------------
    def save_config(self, config: Config) -> None:
        """Write the resolved config (every default filled in) as config.json."""
        write_json_atomic(self.config_path, config.model_dump(mode="json"))

    def load_config(self) -> Config:
        """The resolved config from config.json; raises `RunDirError` when it is missing."""
        self.require(self.config_path, hint="run `han preprocess` (or `han run`) first")
        return config_from_dict(read_json(self.config_path), str(self.config_path))

    def save_labels(self, label_names: list[str]) -> None:
        """Write the label names (index = class id) as labels.json."""
        write_json_atomic(self.labels_path, {"labels": label_names})

    def load_labels(self) -> list[str]:
        """The label names from labels.json (index = class id)."""
        data = read_json(self.labels_path)
        labels = data.get("labels") if isinstance(data, dict) else None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise RunDirError(f'{self.labels_path}: not a han label file (expected {{"labels": [...]}})')
        return labels

    def load_vocab(self) -> Vocab:
        """The vocabulary from vocab.json."""
        return Vocab.load(self.vocab_path)

    # --- manifest --------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        """The contents of manifest.json, or {} when there is none yet."""
        return read_json(self.manifest_path) if self.manifest_path.exists() else {}

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge top-level fields into manifest.json (stage sections are replaced whole)."""
        manifest = self.read_manifest()
        manifest.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        manifest["versions"] = package_versions()
        manifest.update(fields)
        write_json_atomic(self.manifest_path, manifest)
        return manifest

    # --- guarding results ----------------------------------------------------------------
    def claim(self, overwrite: bool, keep: tuple[str, ...] = ()) -> None:
        """Make the run directory ready for a fresh run: it must be new or empty, or `overwrite` empties it.

        Only a han run directory (one with manifest.json or config.json) is ever emptied; entries
        named in `keep` (the shards a sharded preprocess merges) are neither counted nor removed.
        """
        if not self.root.exists():
            self.root.mkdir(parents=True)
            return
        if not self.root.is_dir():
            raise RunDirError(f"{self.root}: exists and is not a directory; choose another --run-dir")
        if not any(child.name not in keep for child in self.root.iterdir()):
            return
        if not overwrite:
            raise RunDirError(
                f"{self.root}: run directory already holds files; pass --overwrite to replace them, "
                f"--resume to continue the run, or choose another --run-dir"
            )
        if not (self.manifest_path.exists() or self.config_path.exists()):
            raise RunDirError(
                f"{self.root}: not a han run directory (no manifest.json or config.json); refusing to empty it "
                f"even with --overwrite; choose another --run-dir"
            )
        log.info("--overwrite: removing the previous contents of %s", self.root)
        try:
            for child in self.root.iterdir():
                if child.name in keep:
                    continue
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        except OSError as error:
            raise RunDirError(f"{self.root}: could not remove the previous run ({error})") from None

    def claim_for_training(self, resume: bool, overwrite: bool) -> None:
        """Refuse to train over existing training results unless resuming or `overwrite` removes them."""
        existing = [p for p in self.training_outputs() if p.exists()]
        if not existing or resume:
            return
        names = ", ".join(p.name for p in existing)
        if not overwrite:
            raise RunDirError(
                f"{self.root}: already holds training results ({names}); pass --resume to continue training "
                f"or --overwrite to train again from scratch"
            )
        log.info("--overwrite: removing the previous training results of %s (%s)", self.root, names)
        for path in existing:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        manifest = self.read_manifest()
        if manifest:
            for key in ("train", "stage_seconds"):
                manifest.pop(key, None)
            self.forget_artifacts(*existing, manifest=manifest)

    # --- integrity ------------------------------------------------------------------------
    def _relative(self, path: Path) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            raise RunDirError(f"{path}: not inside the run directory {self.root}") from None

    @staticmethod
    def _files_of(path: Path) -> list[Path]:
        if path.is_dir():
            return sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink())
        return [path]

    def forget_artifacts(self, *paths: Path, manifest: dict[str, Any] | None = None) -> None:
        """Drop `paths` (files, or everything under folders) from the manifest's artifact list."""
        manifest = manifest if manifest is not None else self.read_manifest()
        artifacts = manifest.get("artifacts") or {}
        for path in paths:
            rel = self._relative(path)
            for key in [k for k in artifacts if k == rel or k.startswith(rel + "/")]:
                del artifacts[key]
        manifest["artifacts"] = artifacts
        write_json_atomic(self.manifest_path, manifest)

    def record_artifacts(self, *paths: Path) -> None:
        """List `paths` (files, or every file under folders) in the manifest with size and SHA-256."""
        manifest = self.read_manifest()
        artifacts = manifest.get("artifacts")
        artifacts = dict(artifacts) if isinstance(artifacts, dict) else {}
        for path in paths:
            rel = self._relative(path)
            for key in [k for k in artifacts if k == rel or k.startswith(rel + "/")]:
                del artifacts[key]
            for file in self._files_of(Path(path)):
                artifacts[self._relative(file)] = {"bytes": file.stat().st_size, "sha256": file_sha256(file)}
        self.update_manifest(artifacts=dict(sorted(artifacts.items())))

    def _hint_for(self, rel: str) -> str:
        if rel.startswith(("model/", "train_log")):
            return "rerun `han train --overwrite` or restore the file"
        if rel == "metrics.json":
            return "delete it and rerun `han evaluate`"
        return "rerun `han preprocess --overwrite` (or `han run --overwrite`) or restore the file"

    def verify_artifacts(self, *paths: Path) -> None:
        """Check `paths` against the manifest's sizes and SHA-256 sums; the first problem is a one-line error.

        A folder must hold exactly the files listed for it: a planted extra file is refused too.
        """
        if not self.manifest_path.exists():
            raise RunDirError(
                f"{self.manifest_path}: missing, so the run's files cannot be verified; rerun `han preprocess --overwrite`"
            )
        artifacts = self.read_manifest().get("artifacts")
        if not isinstance(artifacts, dict):
            raise RunDirError(
                f"{self.manifest_path}: lists no artifact checksums (damaged, or written by an older han); "
                f"rerun `han run --overwrite`"
            )
        for path in map(Path, paths):
            rel = self._relative(path)
            if path.is_dir():
                listed = {k: v for k, v in artifacts.items() if k.startswith(rel + "/")}
                if not listed:
                    raise RunDirError(f"{path}: not listed in manifest.json; refusing to load files han did not write")
                for file in self._files_of(path):
                    if self._relative(file) not in listed:
                        raise RunDirError(
                            f"{file}: unexpected file, not listed in manifest.json; refusing to load it (remove it)"
                        )
                items = list(listed.items())
            else:
                if rel not in artifacts:
                    if not path.exists():
                        raise RunDirError(f"{path}: missing from the run directory; {self._hint_for(rel)}")
                    raise RunDirError(f"{path}: not listed in manifest.json; refusing to load a file han did not write")
                items = [(rel, artifacts[rel])]
            for key, entry in items:
                self._verify_file(self.root / key, entry, key)

    def _verify_file(self, path: Path, entry: Any, rel: str) -> None:
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise RunDirError(f"{self.manifest_path}: damaged entry for {rel}; {self._hint_for(rel)}")
        if path.is_symlink() or not path.is_file():
            raise RunDirError(f"{path}: missing or not a regular file; {self._hint_for(rel)}")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise RunDirError(
                f"{path}: {size} bytes but manifest.json records {entry.get('bytes')} (truncated or altered); "
                f"{self._hint_for(rel)}"
            )
        if file_sha256(path) != entry["sha256"]:
            raise RunDirError(
                f"{path}: SHA-256 does not match manifest.json (the file was altered); {self._hint_for(rel)}"
            )

    def remove_stale_temporaries(self) -> None:
        """Delete temporary files left by a process killed in the middle of a write."""
        for path in self.root.rglob(".*.tmp"):
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
