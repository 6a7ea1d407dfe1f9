"""The preprocess stage: documents -> sentences of token ids, vocabulary and initial vectors, in the run dir."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from spacy.language import Language

from han.artifacts import RunDir, atomic_dir, atomic_path, write_json_atomic
from han.batching import EncodedSplit
from han.config import Config
from han.data import RawSplit, load_data
from han.embeddings import embedding_matrix, load_vectors_file, train_word2vec
from han.errors import DataError
from han.progress import Progress
from han.segment import Document, build_pipeline, segment
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

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def segment_split(nlp: Language, split: RawSplit, config: Config, name: str, progress: Progress) -> list[Document]:
    """Sentences of tokens for every document of a split; a document left with no token is an error."""
    progress.start(f"segment {name}", len(split))
    documents = []
    for document in segment(nlp, split.texts, config.preprocess):
        documents.append(document)
        progress.advance(1)
    progress.stop()
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
    config: Config,
    run_dir: Path,
    progress: Progress | None = None,
    segmented: dict[str, list[Document]] | None = None,
) -> PreprocessSummary:
    """Load and split the data, segment it, build vocabulary and vectors, write them to `run_dir`.

    `segmented`: the segmentation of every split, already done by shards (han/sharding.py).
    """
    progress = progress or Progress()
    run = RunDir(Path(run_dir))
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    loaded = load_data(config.data, config.seed)
    seconds["load"] = time.perf_counter() - start

    start = time.perf_counter()
    if segmented is None:
        nlp = build_pipeline(config.preprocess)
        segmented = {name: segment_split(nlp, split, config, name, progress) for name, split in loaded.splits.items()}
    elif {k: len(v) for k, v in segmented.items()} != {k: len(v) for k, v in loaded.splits.items()}:  # [sharding]
        raise DataError(f"{run.root}: the preprocess shards do not match the data; rerun every shard with this config")
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
    with atomic_path(run.embeddings_path) as tmp:
        save_file({"embeddings": matrix}, str(tmp))
    for name, split in encoded.items():
        with atomic_dir(run.data_path(name)) as tmp:
            split.save(tmp)
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
    )
    run.update_manifest(
        seed=config.seed,
        data_fingerprint=summary.data_fingerprint,
        carved_splits=loaded.carved,
        preprocess=summary.as_dict(),
    )
    return summary
