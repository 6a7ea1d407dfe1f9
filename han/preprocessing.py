"""The preprocess stage: documents -> sentences of token ids, vocabulary and initial vectors, in the run dir."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save
from spacy.language import Language

from han.artifacts import RunDir, atomic_dir, write_bytes_atomic, write_json_atomic
from han.batching import EncodedSplit
from han.config import Config
from han.data import RawSplit, load_data
from han.embeddings import embedding_matrix, load_vectors_file, train_word2vec
from han.errors import DataError
from han.progress import Progress
from han.segment import Document, TextStats, build_pipeline, segment
from han.vocab import UNK_ID, Vocab

log = logging.getLogger(__name__)


@dataclass
class PreprocessSummary:
    """What preprocess produced, for the manifest and the terminal."""

    documents: dict[str, int]
    label_names: list[str]
    vocab_size: int
    vectors_found: int
    oov_rate: dict[str, float]
    words: dict[str, int]
    data_fingerprint: str
    seconds: dict[str, float]
    text_handling: dict[str, dict[str, int]] | None = None  # per split: documents truncated at max_chars / cleaned

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def segment_split(
    nlp: Language, split: RawSplit, config: Config, name: str, progress: Progress, stats: TextStats | None = None
) -> list[Document]:
    """Sentences of tokens for every document of a split; a document left with no token is an error."""
    stats = stats if stats is not None else TextStats()
    progress.start(f"segment {name}", len(split))
    documents = []
    for document in segment(nlp, split.texts, config.preprocess, stats):
        documents.append(document)
        progress.advance(1)
    progress.stop()
    if stats.truncated:
        log.warning(
            "%s [%s]: %d document(s) longer than preprocess.max_chars=%d characters were truncated",
            config.data.source,
            name,
            stats.truncated,
            config.preprocess.max_chars,
        )
    if stats.cleaned:
        log.info(
            "%s [%s]: %d document(s) had invisible or control characters removed",
            config.data.source,
            name,
            stats.cleaned,
        )
    empty = [split.rows[i] for i, doc in enumerate(documents) if not doc]
    if empty:
        shown = ", ".join(map(str, empty[:8]))
        raise DataError(
            f"{config.data.source} [{name}]: {len(empty)} document(s) have no tokens after preprocessing, at row(s) {shown}"
        )
    return documents


def encode_documents(documents: list[Document], vocab: Vocab) -> list[list[list[int]]]:
    return [[vocab.encode(sentence) for sentence in document] for document in documents]


def preprocess(
    config: Config, run_dir: Path, progress: Progress | None = None, *, overwrite: bool = False
) -> PreprocessSummary:
    """Load and split the data, segment it, build vocabulary and vectors, write them to `run_dir`.

    `run_dir` must be new or empty; `overwrite` empties a previous han run directory first.
    """
    progress = progress or Progress()
    run = RunDir(Path(run_dir))
    if (
        config.embeddings.source == "file" and not Path(config.embeddings.path or "").is_file()
    ):  # fail before hours of work
        raise DataError(f"{config.embeddings.path}: vectors file not found (embeddings.path)")
    run.claim(overwrite)
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    loaded = load_data(config.data, config.seed)
    seconds["load"] = time.perf_counter() - start

    start = time.perf_counter()
    nlp = build_pipeline(config.preprocess)
    text_stats = {name: TextStats() for name in loaded.splits}
    segmented = {
        name: segment_split(nlp, split, config, name, progress, text_stats[name])
        for name, split in loaded.splits.items()
    }
    seconds["segment"] = time.perf_counter() - start

    start = time.perf_counter()
    counts = Counter(word for document in segmented["train"] for sentence in document for word in sentence)
    vocab = Vocab.build(counts, config.preprocess.min_count, config.preprocess.max_vocab)
    label_index = {name: i for i, name in enumerate(loaded.label_names)}
    encoded = {
        name: EncodedSplit.from_documents(
            encode_documents(docs, vocab), [label_index[y] for y in loaded.splits[name].labels]
        )
        for name, docs in segmented.items()
    }
    seconds["encode"] = time.perf_counter() - start

    start = time.perf_counter()
    emb = config.embeddings
    if emb.source == "word2vec":
        vectors = train_word2vec([s for doc in segmented["train"] for s in doc], emb, config.seed)
    elif emb.source == "file":
        vectors = load_vectors_file(emb.path, emb.format)  # type: ignore[arg-type]
    else:
        vectors = None
    matrix, found = embedding_matrix(vocab, vectors, emb.dim, config.seed)
    seconds["embeddings"] = time.perf_counter() - start

    start = time.perf_counter()
    run.root.mkdir(parents=True, exist_ok=True)
    run.save_config(config)
    write_json_atomic(run.labels_path, {"labels": loaded.label_names})
    vocab.save(run.vocab_path)
    write_bytes_atomic(run.embeddings_path, save({"embeddings": matrix}))
    for name, split in encoded.items():
        with atomic_dir(run.data_path(name)) as tmp:
            split.save(tmp)
    run.record_artifacts(
        run.config_path, run.labels_path, run.vocab_path, run.embeddings_path, *map(run.data_path, encoded)
    )
    seconds["write"] = time.perf_counter() - start

    summary = PreprocessSummary(
        documents={name: len(split) for name, split in encoded.items()},
        label_names=loaded.label_names,
        vocab_size=len(vocab),
        vectors_found=found,
        oov_rate={
            name: float(np.mean(split.tokens == UNK_ID)) if len(split.tokens) else 0.0
            for name, split in encoded.items()
        },
        words={name: int(len(split.tokens)) for name, split in encoded.items()},
        data_fingerprint=loaded.fingerprint(),
        seconds={k: round(v, 3) for k, v in seconds.items()},
        text_handling={name: stats.as_dict() for name, stats in text_stats.items()},
    )
    run.update_manifest(
        seed=config.seed,
        data_fingerprint=summary.data_fingerprint,
        carved_splits=loaded.carved,
        preprocess=summary.as_dict(),
    )
    return summary
