"""The preprocess stage: documents -> sentences of token ids, vocabulary and initial vectors, in the run dir.

Texts are read lazily from Arrow, segmented in worker processes (`han.text.segment_datasets`) and kept as
flat int arrays, so memory holds token ids, not raw text or token strings. The output is keyed by
`han.data.fingerprint.preprocess_key` (input content + output-relevant settings): when the run directory
already holds preprocessing with the same key, it is reused ("reused cached preprocessing").
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from han.config import Config
from han.data.fingerprint import preprocess_key
from han.errors import DataError, RunDirError
from han.progress import Progress
from han.store.rundir import RunDir
from han.util.atomic import TEMPORARY_MARK, atomic_dir, storage_errors, write_bytes_atomic
from han.util.files import check_user_file
from han.util.lock import folder_lock
from han.util.memory import PeakMemory
from han.util.signals import signals_deferred

if TYPE_CHECKING:
    from han.data.splits import LoadedData
    from han.text.segment import Document

# torch, spaCy, gensim and datasets are imported where they are used, not here: a preprocess whose
# output is cached must answer in a fraction of a second, and importing them takes seconds.

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
    rows_in: int = 0
    rows_kept: int = 0
    rows_dropped: dict[str, int] = field(default_factory=dict)  # by reason
    rows_dropped_by_split: dict[str, dict[str, int]] = field(default_factory=dict)
    docs_per_second: float = 0.0  # tokenisation throughput
    tokens_per_second: float = 0.0
    workers: int = 1
    cache_key: str = ""
    reused: bool = False  # True when the run directory's preprocessing was reused as is
    text_handling: dict[str, dict[str, int]] | None = None  # per split: documents truncated at max_chars / cleaned
    task: str = "multiclass"
    rare_labels: dict[str, int] | None = None  # multilabel: labels with few training documents -> their count
    labels_per_document: dict[str, float] | None = None  # multilabel: mean label-set size per split
    # split -> label -> documents (a document counts once per label of its set); the model card's counts
    label_counts: dict[str, dict[str, int]] | None = None
    # embeddings.source word2vec: the epochs and worker threads it ran, the splits whose text it read and their words
    word2vec: dict[str, Any] | None = None

    def as_dict(self) -> dict:
        """The summary's fields as a dict (a shallow copy)."""
        return self.__dict__.copy()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSummary:
        """A summary from a dict such as `as_dict` gives, ignoring keys that are not fields."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def source_paths(config: Config) -> list[Path]:
    """The local files or folder the data source names (none for a hub id): inputs han never removes."""
    from han.data.sources import expand_files, is_glob, resolve_source

    source = config.data.source
    try:
        if isinstance(source, dict):
            return [path for files in source.values() for path in expand_files(files)]
        if isinstance(source, list) or is_glob(source):
            return expand_files(source)
        path = resolve_source(source)
    except DataError:
        return []
    return [path] if path is not None else []


def extra_text_files(config: Config) -> list[Path]:
    """The files of `embeddings.extra_text.files` (globs expanded), when word2vec reads them; a DataError names a
    missing one."""
    from han.data.sources import expand_files

    files = config.embeddings.extra_text.files
    if config.embeddings.source != "word2vec" or not files:
        return []
    return expand_files(files, "embeddings.extra_text.files")


def _cached_summary(run: RunDir, key: str) -> PreprocessSummary | None:
    manifest = run.read_manifest()
    if manifest.get("preprocess_key") != key or not isinstance(manifest.get("preprocess"), dict):
        return None
    needed = [run.config_path, run.labels_path, run.vocab_path, run.embeddings_path]
    needed += [run.data_path(name) for name in manifest["preprocess"].get("documents", {})]
    if not all(path.exists() for path in needed):
        return None
    try:
        run.verify_artifacts(*needed)
    except RunDirError as error:
        log.warning("cached preprocessing is damaged and will be rebuilt: %s", error)
        return None
    return PreprocessSummary.from_dict(manifest["preprocess"])


def preprocess(
    config: Config,
    run_dir: Path,
    progress: Progress | None = None,
    segmented: dict[str, list[Document]] | None = None,
    *,
    overwrite: bool = False,
) -> PreprocessSummary:
    """Load and split the data, segment it, build vocabulary and vectors, write them to `run_dir`.

    Reuses the run directory's output when its cache key matches (`preprocess.cache`). Otherwise
    `run_dir` must be new or empty (but for the shards of a sharded preprocess); `overwrite` empties
    a previous han run directory first. `segmented`: every split's segmentation, already done by
    shards (han/workflows/sharding.py). The run directory's lock is held throughout (han.util.lock); the
    stage's peak memory goes into the manifest's "stage_peak_memory" (han.util.memory).
    """
    with folder_lock(Path(run_dir), "han preprocess"):
        return _preprocess(config, Path(run_dir), progress, segmented, overwrite)


def _preprocess(
    config: Config,
    run_dir: Path,
    progress: Progress | None,
    segmented: dict[str, list[Document]] | None,
    overwrite: bool,
) -> PreprocessSummary:
    progress = progress or Progress()
    run = RunDir(Path(run_dir))
    if config.embeddings.source == "file":  # before hours of work: a missing file, a pipe or a device is named now
        check_user_file(Path(config.embeddings.path or ""), "vectors file", DataError, option="embeddings.path")
    extra_files = extra_text_files(config)  # a missing file is named now, before hours of work
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    key = preprocess_key(config)
    seconds["fingerprint"] = time.perf_counter() - start
    if config.preprocess.cache:
        cached = _cached_summary(run, key)
        if cached is not None:
            with signals_deferred():  # never config.json without its manifest entry
                run.save_config(config)  # may differ in settings that do not change the output (workers, ...)
                run.record_artifacts(run.config_path)
            log.info("reused cached preprocessing in %s (inputs and settings unchanged; key %s)", run.root, key[:12])
            cached.reused = True
            cached.seconds = {k: round(v, 3) for k, v in seconds.items()}
            return cached
    from han.data.splits import load_data

    with PeakMemory() as peak:  # recorded only when the work is done (a reused cache writes nothing new)
        start = time.perf_counter()
        loaded = load_data(
            config.data, config.seed, config.multilabel
        )  # the new data is checked before anything is removed
        seconds["load"] = time.perf_counter() - start
        run.claim(overwrite, keep=("shards",), inputs=[*source_paths(config), *extra_files])
        with _spill_folder(run) as spill:
            summary = _build(config, run, key, seconds, progress, segmented, loaded, extra_files, spill)
    run.record_stage_peaks(preprocess=peak.as_dict())
    run.update_manifest(
        seed=config.seed,
        data_fingerprint=summary.data_fingerprint,
        preprocess=summary.as_dict(),
        preprocess_key=key,  # written last: only complete preprocessing is ever reused
    )
    return summary


@contextmanager
def _spill_folder(run: RunDir) -> Iterator[Path]:
    """A scratch folder in the run directory for spilled token arrays, removed afterwards."""
    with storage_errors(run.root):  # it cannot be made: disk full, read-only, ...
        scratch = tempfile.TemporaryDirectory(prefix=f".tokens{TEMPORARY_MARK}", suffix=".tmp", dir=run.root)
    with scratch as spill:
        yield Path(spill)


def _build(
    config: Config,
    run: RunDir,
    key: str,
    seconds: dict[str, float],
    progress: Progress,
    segmented: dict[str, list[Document]] | None,
    loaded: LoadedData,
    extra_files: list[Path],  # embeddings.extra_text.files, expanded
    spill: Path,
) -> PreprocessSummary:
    from safetensors.numpy import save

    from han.data.label_sets import label_matrix
    from han.text.corpus import SplitSentences, build_corpus
    from han.text.embeddings import (
        embedding_matrix,
        load_vectors_file,
        train_word2vec,
        word2vec_epochs,
        word2vec_workers,
    )
    from han.text.segment_datasets import drop_tokenless, segment_loaded, segment_text_files, segmented_from_documents

    start = time.perf_counter()
    if segmented is None:
        segmented_data = segment_loaded(loaded, config, progress, spill)
    else:  # [sharding]
        if {k: len(v) for k, v in segmented.items()} != {k: len(v) for k, v in loaded.splits.items()}:
            raise DataError(
                f"{run.root}: the preprocess shards do not match the data; rerun every shard with this config"
            )
        segmented_data = segmented_from_documents(loaded, segmented)
    drop_tokenless(loaded, segmented_data, config)
    seconds["segment"] = time.perf_counter() - start

    start = time.perf_counter()
    corpus = build_corpus(
        segmented_data.words, segmented_data.splits, config.preprocess, stats=segmented_data.text_stats
    )
    throughput = (
        segmented_data.documents / max(segmented_data.seconds, 1e-9),
        segmented_data.tokens / max(segmented_data.seconds, 1e-9),
    )
    segmented_data.splits.clear()  # the uncapped ids are no longer needed: free them before encoding
    label_index = {name: i for i, name in enumerate(loaded.label_names)}
    documents, words, oov_rate = {}, {}, {}
    run.save_config(config)
    progress.start("encode", sum(len(loaded.splits[name].labels) for name in corpus.splits))
    emb = config.embeddings
    word2vec_splits = ["train", *emb.extra_text.splits] if emb.source == "word2vec" else []
    per_document: dict[str, float] = {}
    label_counts: dict[str, dict[str, int]] = {}
    for name in list(corpus.splits):  # part by part: memory does not grow with the split
        if loaded.multilabel:
            labels = label_matrix(loaded.splits[name].labels, loaded.label_names)
            per_document[name] = round(float(labels.sum(axis=1).mean()), 4) if len(labels) else 0.0
        else:
            labels = np.fromiter((label_index[y] for y in loaded.splits[name].labels), dtype=np.int64)
        counts = labels.sum(axis=0) if loaded.multilabel else np.bincount(labels, minlength=len(loaded.label_names))
        label_counts[name] = dict(zip(loaded.label_names, map(int, counts), strict=True))
        with atomic_dir(run.data_path(name)) as tmp:
            documents[name], words[name], unknown = corpus.write_encoded(name, labels, tmp)
        progress.advance(len(labels))
        oov_rate[name] = unknown / words[name] if words[name] else 0.0
        if name not in word2vec_splits:
            del corpus.splits[name]  # word2vec reads only the training split and embeddings.extra_text's
    progress.stop()
    seconds["encode"] = time.perf_counter() - start

    start = time.perf_counter()
    word2vec: dict[str, Any] | None = None
    if emb.source == "word2vec":  # `auto` settings resolved once: what trains is what the manifest records
        sentences = corpus.sentences(*word2vec_splits)  # text only, never labels
        text_words = sum(words[name] for name in word2vec_splits)
        if extra_files:  # embeddings.extra_text.files, after the splits
            file_words, file_split = segment_text_files(extra_files, config, progress, spill)
            sentences.parts.append(SplitSentences(file_split, file_words))
            text_words += len(file_split.ids)
        passes = {"epochs": word2vec_epochs(emb.epochs, text_words), "workers": word2vec_workers(emb.workers)}
        vectors = train_word2vec(sentences, emb.model_copy(update=passes), config.seed, progress)
        word2vec = {**passes, "splits": word2vec_splits, "words": text_words}
        if extra_files:
            word2vec["files"] = [str(path) for path in extra_files]
        if emb.subwords:
            word2vec["model"] = "fasttext"
    elif emb.source == "file":
        vectors = load_vectors_file(emb.path, emb.format)  # type: ignore[arg-type]
    else:
        vectors = None
    matrix, found = embedding_matrix(corpus.vocab, vectors, emb.dim, config.seed)
    seconds["embeddings"] = time.perf_counter() - start

    start = time.perf_counter()
    run.save_labels(loaded.label_names)
    corpus.vocab.save(run.vocab_path)
    write_bytes_atomic(run.embeddings_path, save({"embeddings": matrix}))
    run.record_artifacts(
        run.config_path, run.labels_path, run.vocab_path, run.embeddings_path, *map(run.data_path, documents)
    )
    seconds["write"] = time.perf_counter() - start

    rows = loaded.counts.as_dict()
    summary = PreprocessSummary(
        documents=documents,
        label_names=loaded.label_names,
        vocab_size=len(corpus.vocab),
        vectors_found=found,
        oov_rate=oov_rate,
        words=words,
        data_fingerprint=segmented_data.data_fingerprint,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        rows_in=rows["rows_in"],
        rows_kept=rows["rows_kept"],
        rows_dropped=rows["rows_dropped"],
        rows_dropped_by_split=rows["rows_dropped_by_split"],
        docs_per_second=round(throughput[0], 1),
        tokens_per_second=round(throughput[1], 1),
        workers=segmented_data.workers,
        cache_key=key,
        text_handling={name: stats.as_dict() for name, stats in segmented_data.text_stats.items()},
        task=config.task,
        rare_labels=loaded.rare_labels if loaded.multilabel else None,
        labels_per_document=per_document if loaded.multilabel else None,
        label_counts=label_counts,
        word2vec=word2vec,
    )
    run.update_manifest(carved_splits=loaded.carved)
    return summary


def preprocessing_complete(run: RunDir) -> bool:
    """True when a previous preprocess finished in `run` and its outputs are intact."""
    if "preprocess" not in run.read_manifest():
        return False
    splits = [run.data_path(name) for name in run.splits()]
    try:
        run.verify_artifacts(run.config_path, run.labels_path, run.vocab_path, run.embeddings_path, *splits)
    except RunDirError as error:
        log.warning("preprocessing will be redone: %s", error)
        return False
    return True
