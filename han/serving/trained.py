"""A trained run loaded for use: config, vocabulary, labels, model and the text pipeline, from its directory.

Everything comes from the run directory, verified against its manifest; nothing else is needed.
`TrainedRun.encode` reads raw texts exactly as preprocessing read the training data (cleaning and
the `max_chars` cut, `han.text.segment.segment_chunk`, caps, vocabulary ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from han.config import Config
from han.errors import ConfigError
from han.evaluation.thresholds import load_thresholds, predict_label_sets
from han.models.build import build_model, has_attention
from han.store.encoded import EncodedSplit, label_array
from han.store.rundir import RunDir
from han.store.vocab import UNK_ID, Vocab
from han.store.weights import load_weights
from han.text.corpus import SegmentedSplit, vocab_lookup
from han.text.segment import ChunkTokens, TextStats, build_pipeline, prepare_texts, segment_chunk
from han.util.allocator import keep_freed_memory
from han.util.cpus import use_threads
from han.util.device import check_precision, resolve_device

if TYPE_CHECKING:
    from spacy.language import Language


@dataclass
class TrainedRun:
    """A run directory's trained model with what it needs to read text."""

    run: RunDir
    config: Config
    vocab: Vocab
    label_names: list[str]
    model: torch.nn.Module
    _nlp: Language | None = None  # the spaCy pipeline, built on first use (scoring encoded splits needs none)
    text_stats: TextStats = field(default_factory=TextStats)  # documents truncated / cleaned so far
    thresholds: np.ndarray | None = None  # task multilabel: (C,) decision thresholds chosen on validation

    @property
    def multilabel(self) -> bool:
        return self.config.multilabel

    def predicted_sets(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, C) bool: the labels each document is predicted to have (multi-label runs), at the run's thresholds."""
        assert self.thresholds is not None, "a multi-label run has thresholds"
        return predict_label_sets(probabilities, self.thresholds, self.config.predict.at_least_one)

    def require_multiclass(self, what: str) -> None:
        """Raise `ConfigError` (one line) when `what` handles single-label runs only and this run is multi-label."""
        if self.multilabel:
            raise ConfigError(
                f"{self.run.root}: {what} handles single-label runs (task: multiclass); this run is task: multilabel"
            )

    def require_attention(self, command: str) -> None:
        """Raise `ConfigError` (one line) when the run's network has no attention weights for `command` to show."""
        if not has_attention(self.config.model):
            raise ConfigError(
                f"{self.run.root}: `{command}` shows attention weights, which model.kind han (and rnn with "
                f"model.pooling attention) has; this run is model.kind {self.config.model.kind} "
                f"(use `han predict` or `han evaluate` for it)"
            )

    @property
    def nlp(self) -> Language:
        """The run's spaCy pipeline (built once, on first use)."""
        if self._nlp is None:
            self._nlp = build_pipeline(self.config.preprocess)
        return self._nlp

    def segment(self, texts: list[str], surface: bool = False) -> ChunkTokens:
        """Clean, cut at `max_chars` and segment `texts` (uncapped); with `surface`, keep tokens as written."""
        config = self.config.preprocess
        prepared = list(prepare_texts(texts, config, self.text_stats))
        return segment_chunk(self.nlp, prepared, config.lowercase, config.pipe_batch_size, surface)

    def encode_segmented(self, chunk: ChunkTokens, labels: list[int] | np.ndarray | None = None) -> EncodedSplit:
        """Cap segmented documents and map them to vocabulary ids; a document with no token becomes one unknown word."""
        config = self.config.preprocess
        split = SegmentedSplit(
            chunk.local_ids, chunk.sentence_lengths.astype(np.int64), chunk.sentence_counts.astype(np.int64)
        ).capped(config.max_sentences, config.max_words)
        tokens = vocab_lookup(self.vocab, chunk.words)[split.ids]
        lengths, counts = split.sentence_lengths, split.sentence_counts.copy()
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            document_offsets = split.document_offsets
            sentence_offsets = split.sentence_offsets
            tokens = np.insert(tokens, sentence_offsets[document_offsets[empty]], UNK_ID)
            lengths = np.insert(lengths, document_offsets[empty], 1)
            counts[empty] = 1
        return EncodedSplit(
            tokens.astype(np.int64),
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            label_array(labels, len(counts)),
        )

    def encode(self, texts: list[str], labels: list[int] | np.ndarray | None = None) -> EncodedSplit:
        """Segment and encode raw texts like the training data; a text with no token becomes one unknown word."""
        return self.encode_segmented(self.segment(texts), labels)


def kept_the_linear_start(trained: TrainedRun, weights: str) -> bool:
    """Whether the loaded weights are a fitted-channel run's epoch 0 (model.wide_weights fitted): the linear kind
    alone, which no epoch of the network beat on validation (beyond chance, by default), so the attention weights
    took no part."""
    train = trained.run.read_manifest().get("train")
    return weights == "best" and isinstance(train, dict) and train.get("best_epoch") == 0


def load_trained_run(run_dir: Path, weights: str = "best", device: str | None = None) -> TrainedRun:
    """Load config, vocabulary, labels and weights (`best` or `last`) from a run directory, verified against its manifest.

    The model goes to `device` (default: the run's `device` setting, han/util/device.py).
    """
    run = RunDir(Path(run_dir))
    weights_path = run.verify_trained(weights)
    config = run.load_config()
    vocab = run.load_vocab()
    label_names = run.load_labels()
    keep_freed_memory()  # scoring batches reuse the last batch's pages (han/util/allocator.py)
    use_threads(config.train.threads)  # the free cores, or shared evenly by the processes of a torchrun node
    model = build_model(config.model, len(vocab), config.embeddings.dim, len(label_names), multilabel=config.multilabel)
    load_weights(model, weights_path)
    resolved = resolve_device(device or config.device)
    check_precision(resolved, config.precision)
    model.to(resolved).eval()
    thresholds = None
    if config.multilabel:
        run.require(run.thresholds_path, hint="training chooses them at its end: train the run again (`han train`)")
        run.verify_artifacts(run.thresholds_path)
        thresholds = load_thresholds(run.thresholds_path, label_names)
    return TrainedRun(run, config, vocab, label_names, model, thresholds=thresholds)
