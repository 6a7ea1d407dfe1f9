"""The run directory: one folder per run, the only channel between stages.

Layout:
    config.json          resolved config (every default filled in); `han run` accepts it as a config
    manifest.json        han's marker; versions, seed, data fingerprint, preprocess cache key, row counts, stage
                         timings, peak memory (stage_peak_memory) and summaries, and the size and SHA-256 of
                         every other artifact
    labels.json          label names, index = class id
    vocab.json           id -> word
    embeddings.safetensors   initial word vectors (vocab order)
    data/<split>/        encoded documents: token ids and labels (Arrow, via datasets.save_to_disk)
    model/best.safetensors   weights of the best validation epoch (early-stopping metric; on a tie, the lower
                         validation loss); model/last.safetensors, the last epoch's; model/start.safetensors, the
                         fitted channel's starting model (epoch 0) that later epochs are tested against
    train_log.jsonl      one line per epoch: losses, validation metrics, learning rate, docs/s (and, with the
                         fitted channel, each epoch's test against epoch 0)
    metrics.json         {"<split>": {"accuracy", "macro_f1", "loss", "per_class", "confusion_matrix", ...}} from evaluate
    MODEL_CARD.md        what the run is, in a Hugging Face style model card (han.store.model_card): model, data
                         and splits, labels, results per class, what the caps cut, limitations, how to use and
                         reproduce it; rewritten by evaluate whenever metrics.json changes
    thresholds.json      task multilabel: each label's decision threshold, chosen on validation after training
    checkpoints/step-<N>.safetensors   training checkpoints (han.training.checkpoint), the newest few
    shards/preprocess-<i>-of-<n>/   segmented shards of `han preprocess --shard i/n`, removed by the merge
    input/<split>.parquet   `han.train` only: the in-memory rows it was given, which config.json's data.source names

Every file is written to a temporary name, fsync'ed and renamed into place, so a file that exists is
complete; a failed write (disk full) raises `StorageError` and leaves the previous version intact.
manifest.json lists every artifact (checkpoints excepted: each carries its own SHA-256) with its
size and SHA-256 under "artifacts"; stages verify what they load against it, so a truncated,
altered or planted file is refused with a one-line error instead of being read.
A run directory that holds results is never replaced without `overwrite=True` (`--overwrite`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from han.config import Config, config_from_dict
from han.errors import ConfigError, RunDirError
from han.store.ownership import Ownership
from han.store.vocab import Vocab
from han.util.atomic import read_json, write_json_atomic

if TYPE_CHECKING:  # datasets (behind han.store.encoded) takes seconds to import; a cached preprocess never needs it
    from han.store.encoded import EncodedSplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunDir(Ownership):
    """Paths of one run directory, its files' I/O, its manifest (`han.store.manifest`) and ownership (`han.store.ownership`)."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

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
    def start_weights_path(self) -> Path:
        """The starting model's weights, when training scored it as epoch 0 (the fitted channel alone)."""
        return self.root / "model" / "start.safetensors"

    @property
    def train_log_path(self) -> Path:
        return self.root / "train_log.jsonl"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.json"

    @property
    def model_card_path(self) -> Path:
        return self.root / "MODEL_CARD.md"

    @property
    def thresholds_path(self) -> Path:
        return self.root / "thresholds.json"

    @property
    def checkpoints_path(self) -> Path:
        return self.root / "checkpoints"

    def verify_trained(self, weights: str = "best") -> Path:
        """Check the files a trained run is used from (config, vocabulary, labels, `best` or `last` weights)
        exist and match the manifest; return the weights' path."""
        if weights not in ("best", "last"):
            raise ConfigError(f"--weights {weights!r}: use best or last")
        weights_path = self.best_weights_path if weights == "best" else self.last_weights_path
        self.require(
            self.config_path,
            self.vocab_path,
            self.labels_path,
            weights_path,
            hint="train the run first (`han train` or `han run`)",
        )
        self.verify_artifacts(self.config_path, self.vocab_path, self.labels_path, weights_path)
        return weights_path

    def load_split(self, name: str) -> EncodedSplit:
        """A preprocessed split, verified against the manifest."""
        from han.store.encoded import EncodedSplit

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
