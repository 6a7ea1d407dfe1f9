"""Segmenting many documents: worker processes, chunking, and whole datasets with their fingerprint.

Workers run `han.text.segment.segment_chunk` on chunks of texts and return small int32 arrays plus the
chunk's distinct words, never one Python string per token; the parent numbers the words corpus-wide
and keeps each split as a `han.text.corpus.SegmentedSplit` (optionally capped as it arrives and spilled
to memory-mapped files). spaCy's own `n_process` was slower than one process on 2 cores in our
measurements (it pickles whole `Doc`s back); a fork pool whose workers return compact arrays was faster.

`segment_loaded` segments every split of a `han.data.splits.LoadedData`, hashing the texts on the way (the
data fingerprint), and `drop_tokenless` applies the bad-row policy to documents without a token.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from han.config import Config, PreprocessConfig
from han.data.fingerprint import SplitDigest, combine_digests
from han.data.records import iter_input_texts, text_batches
from han.data.rows import NO_TOKENS
from han.errors import DataError
from han.progress import Progress
from han.text.corpus import Corpus, SegmentedSplit, WordTable, _MemoryArrays, _SpilledArrays, build_corpus, tally_cuts
from han.text.segment import ChunkTokens, Document, TextStats, build_pipeline, prepare_texts, segment_chunk
from han.util.cpus import available_cores

if TYPE_CHECKING:
    from spacy.language import Language

    from han.data.splits import LoadedData

log = logging.getLogger(__name__)

CHUNK_DOCUMENTS = 1000  # texts per task sent to a worker
PARALLEL_MIN_DOCUMENTS = 2000  # below this, `workers=None` uses one process (pool start-up is not worth it)


# --- worker processes ------------------------------------------------------------------------------

_worker_state: dict[str, Any] = {}


def _init_worker(config: dict[str, Any]) -> None:
    preprocess = PreprocessConfig.model_validate(config)
    _worker_state["nlp"] = build_pipeline(preprocess)
    _worker_state["config"] = preprocess


def _segment_in_worker(texts: list[str]) -> ChunkTokens:
    config: PreprocessConfig = _worker_state["config"]
    return segment_chunk(_worker_state["nlp"], texts, config.lowercase, config.pipe_batch_size)


def resolve_workers(workers: int | None, documents: int) -> int:
    """Worker processes to use: the configured number, or (None) every core for large inputs and 1 for small."""
    if workers is not None:
        return workers
    return available_cores() if documents >= PARALLEL_MIN_DOCUMENTS else 1


class ParallelSegmenter:
    """Segments splits into one shared `WordTable`, in `workers` processes (1: in this process).

    Use as a context manager so the pool is closed. At most `2 * workers` chunks are in flight, so
    memory does not grow with the input even when it is read lazily from disk.
    """

    def __init__(self, config: PreprocessConfig, workers: int = 1) -> None:
        self.config = config
        self.workers = workers
        self.table = WordTable()
        self._pool: Any = None
        self._nlp: Language | None = None

    def __enter__(self) -> ParallelSegmenter:
        if self.workers > 1:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            self._pool = mp.get_context(method).Pool(
                self.workers, initializer=_init_worker, initargs=(self.config.model_dump(),)
            )
        else:
            self._nlp = build_pipeline(self.config)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            if exc[0] is None:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()
            self._pool = None

    def _chunks(self, chunks: Iterable[list[str]]) -> Iterator[ChunkTokens]:
        if self._pool is None:
            assert self._nlp is not None, "use ParallelSegmenter as a context manager"
            for texts in chunks:
                yield segment_chunk(self._nlp, texts, self.config.lowercase, self.config.pipe_batch_size)
            return
        pending: deque = deque()
        for texts in chunks:
            pending.append(self._pool.apply_async(_segment_in_worker, (texts,)))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def segment(
        self,
        chunks: Iterable[list[str]],
        progress: Progress | None = None,
        caps: tuple[int, int] | None = None,
        spill: Path | None = None,
        stats: TextStats | None = None,
    ) -> SegmentedSplit:
        """All documents of `chunks` (lists of texts, in order) as one `SegmentedSplit`.

        `caps` (max_sentences, max_words) caps every chunk as it arrives (None: uncapped). With
        `spill`, a folder, the arrays are appended chunk by chunk to files there and come back
        memory-mapped, so memory does not grow with the corpus. What the caps cut is counted in `stats`.
        """
        store = _SpilledArrays(spill) if spill is not None else _MemoryArrays()
        for chunk in self._chunks(chunks):
            part = SegmentedSplit(
                self.table.add(chunk), chunk.sentence_lengths.astype(np.int64), chunk.sentence_counts.astype(np.int64)
            )
            if caps is not None:
                capped = part.capped(*caps)
                if stats is not None:
                    tally_cuts(part, capped, stats)
                part = capped
            store.append(part)
            if progress is not None:
                progress.advance(len(chunk.sentence_counts))
        return store.finish()


def chunked(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    """Lists of at most `size` consecutive texts."""
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def chunk_size_for(documents: int, workers: int) -> int:
    """Texts per task: `CHUNK_DOCUMENTS`, smaller when there are too few documents to keep every worker busy."""
    if workers <= 1:
        return CHUNK_DOCUMENTS
    return max(1, min(CHUNK_DOCUMENTS, math.ceil(documents / (4 * workers))))


def segment_splits(
    texts_by_split: Mapping[str, Iterable[list[str]]],
    config: PreprocessConfig,
    workers: int,
    sizes: Mapping[str, int] | None = None,
    progress: Progress | None = None,
    capped: bool = False,
    spill: Path | None = None,
    stats: Mapping[str, TextStats] | None = None,
) -> tuple[list[str], dict[str, SegmentedSplit]]:
    """`SegmentedSplit`s of chunked texts (one iterable of text lists per split) and their word table.

    Uncapped unless `capped`; with `spill`, a folder, each split's arrays go to files there (memory-mapped).
    """
    progress = progress or Progress()
    results = {}
    caps = (config.max_sentences, config.max_words) if capped else None
    with ParallelSegmenter(config, workers) as segmenter:
        for name, chunks in texts_by_split.items():
            progress.start(f"segment {name}", (sizes or {}).get(name))
            results[name] = segmenter.segment(
                chunks, progress, caps, spill / name if spill is not None else None, (stats or {}).get(name)
            )
            progress.stop()
        return segmenter.table.words, results


def segment_and_encode(
    texts_by_split: Mapping[str, Sequence[str]],
    config: PreprocessConfig,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Corpus:
    """Segment, cap and encode every split; the vocabulary is built from the "train" split.

    `workers`: processes for tokenisation (None: every core when there are at least
    `PARALLEL_MIN_DOCUMENTS` documents). The output does not depend on `workers` (tested).
    `corpus.encoded(name)` gives an `EncodedSplit`; `corpus.vocab` the vocabulary.
    """
    total = sum(len(texts) for texts in texts_by_split.values())
    workers = resolve_workers(workers, total)
    size = chunk_size_for(total, workers)
    words, uncapped = segment_splits(
        {name: chunked(texts, size) for name, texts in texts_by_split.items()},
        config,
        workers,
        {name: len(texts) for name, texts in texts_by_split.items()},
        progress,
    )
    return build_corpus(words, uncapped, config)


@dataclass
class SegmentedData:
    """Every split of a `LoadedData` tokenised (uncapped), with throughput and the data fingerprint."""

    words: list[str]
    splits: dict[str, SegmentedSplit]
    data_fingerprint: str
    seconds: float
    workers: int
    text_stats: dict[str, TextStats] = field(default_factory=dict)  # per split: cut at max_chars or cleaned

    @property
    def documents(self) -> int:
        return sum(len(s) for s in self.splits.values())

    @property
    def tokens(self) -> int:
        return sum(len(s.ids) for s in self.splits.values())


def segment_loaded(
    loaded: LoadedData,
    config: Config,
    progress: Progress | None = None,
    spill: Path | None = None,
    capped: bool = True,
) -> SegmentedData:
    """Tokenise every split of `loaded` (in `preprocess.workers` processes), hashing the data on the way.

    Documents are capped as they are tokenised unless `capped` is false (inspection measures the
    uncapped lengths). With `spill`, a folder, the token arrays are written there chunk by chunk
    and memory-mapped, so memory does not grow with the data.
    """

    total = sum(len(split) for split in loaded.splits.values())
    workers = resolve_workers(config.preprocess.workers, total)
    size = chunk_size_for(total, workers)
    digests = {name: SplitDigest() for name in loaded.splits}
    text_stats = {name: TextStats() for name in loaded.splits}

    def chunks(name: str):
        split = loaded.splits[name]
        start = 0
        for texts in text_batches(split.texts, size):
            digests[name].update(texts, split.labels[start : start + len(texts)])
            start += len(texts)
            # capped at max_chars and cleaned here, before any worker sees them
            yield list(prepare_texts(texts, config.preprocess, text_stats[name]))

    begin = time.perf_counter()
    words, splits = segment_splits(
        {name: chunks(name) for name in loaded.splits},
        config.preprocess,
        workers,
        {name: len(split) for name, split in loaded.splits.items()},
        progress,
        capped=capped,
        spill=spill,
        stats=text_stats,
    )
    return SegmentedData(words, splits, combine_digests(digests), time.perf_counter() - begin, workers, text_stats)


def segmented_from_documents(loaded: LoadedData, segmented: dict[str, list[Document]]) -> SegmentedData:
    """Segmentations done elsewhere (preprocess shards) in the flat form `tokenise_loaded` returns."""

    words: list[str] = []
    index: dict[str, int] = {}
    splits = {}
    for name, documents in segmented.items():
        ids = [index.setdefault(w, len(index)) for doc in documents for sentence in doc for w in sentence]
        splits[name] = SegmentedSplit(
            np.asarray(ids, dtype=np.int32),
            np.asarray([len(s) for doc in documents for s in doc], dtype=np.int64),
            np.asarray([len(doc) for doc in documents], dtype=np.int64),
        )
    words = list(index)
    return SegmentedData(words, splits, loaded.fingerprint(), 0.0, 1)


def drop_tokenless(loaded: LoadedData, segmented: SegmentedData, config: Config) -> None:
    """Documents with no token after preprocessing: an error naming their rows, or dropped (`data.bad_rows`)."""

    for name, split in segmented.splits.items():
        empty = split.sentence_counts == 0
        if not empty.any():
            continue
        raw = loaded.splits[name]
        rows = [raw.rows[i] for i in np.flatnonzero(empty)]
        where = f"{config.data.source} [{name}]"
        message = f"{len(rows)} document(s) have no tokens after preprocessing, at {raw.describe_rows(rows)}"
        if config.data.bad_rows == "error":
            raise DataError(f"{where}: {message}; set data.bad_rows=drop to drop them, or fix the data")
        log.warning("%s: dropped %s", where, message)
        loaded.counts.drop(name, NO_TOKENS, len(rows))
        segmented.splits[name] = split.select(~empty)
        loaded.splits[name] = raw.subset(np.flatnonzero(~empty).tolist())
        if len(loaded.splits[name]) == 0:
            raise DataError(f"{where}: no documents left after dropping the ones without tokens")


def segment_text_files(
    paths: Sequence[Path], config: Config, progress: Progress | None = None, spill: Path | None = None
) -> tuple[list[str], SegmentedSplit]:
    """Unlabelled documents of text files (`embeddings.extra_text.files`), read as `han predict` reads its input
    (.txt one document a line, or the run's text columns), cut at max_chars and cleaned, tokenised uncapped: their
    word table and `SegmentedSplit`."""
    stats = TextStats()

    def chunks() -> Iterator[list[str]]:
        for path in paths:
            texts = iter_input_texts(path, config.data, max_chars=config.preprocess.max_chars)
            for texts_chunk in chunked(texts, CHUNK_DOCUMENTS):
                yield list(prepare_texts(texts_chunk, config.preprocess, stats))

    workers = resolve_workers(config.preprocess.workers, PARALLEL_MIN_DOCUMENTS)  # the size is not known before
    words, splits = segment_splits({"extra text": chunks()}, config.preprocess, workers, None, progress, spill=spill)
    return words, splits["extra text"]
