"""Fast segmentation: texts -> sentences of word ids in flat arrays, in worker processes, then vocabulary ids.

`han.segment.segment` is the reference: it yields each document as sentences of token strings.
This module produces exactly the same tokens (tested), but in a form that is cheap to move between
processes and to hold for large corpora:

- A worker runs the spaCy pipeline over a chunk of texts and reads every token's lower-cased (or
  verbatim) form, whitespace flag and sentence-start flag with one `Doc.to_array` call per document;
  numpy then drops whitespace tokens and empty sentences and numbers the chunk's distinct words.
  It returns small int32 arrays plus the chunk's distinct words, never one Python string per token.
- The parent gives every distinct word a corpus-wide id (`WordTable`) and keeps a split as three flat
  arrays (`TokenisedSplit`, uncapped). Caps are applied with numpy, the vocabulary is counted on the
  capped training split with `np.bincount`, and ids are mapped to vocabulary ids with one lookup.

spaCy's own `n_process` was slower than one process on 2 cores in our measurements (it pickles whole
`Doc`s back); a fork pool whose workers return compact arrays was faster. See `segment_and_encode`.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from spacy.attrs import IS_SPACE, LOWER, ORTH, SENT_START
from spacy.language import Language

from han.config import PreprocessConfig
from han.progress import Progress
from han.segment import build_pipeline
from han.vocab import UNK_ID, Vocab

CHUNK_DOCUMENTS = 1000  # texts per task sent to a worker
PARALLEL_MIN_DOCUMENTS = 2000  # below this, `workers=None` uses one process (pool start-up is not worth it)


@dataclass
class ChunkTokens:
    """One chunk of documents as returned by a worker: ids are local to the chunk (index into `words`)."""

    local_ids: np.ndarray  # (T,) int32
    sentence_lengths: np.ndarray  # (S,) int32, every sentence has >= 1 token
    sentence_counts: np.ndarray  # (D,) int32, a document may have 0 sentences
    words: list[str]  # distinct words of the chunk


@dataclass
class TokenisedSplit:
    """A split's documents as sentences of word ids (ids into a `WordTable`), in flat arrays."""

    ids: np.ndarray  # (T,) int32
    sentence_lengths: np.ndarray  # (S,) int64
    sentence_counts: np.ndarray  # (D,) int64

    def __len__(self) -> int:
        return len(self.sentence_counts)

    @property
    def sentence_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.sentence_lengths)]).astype(np.int64)

    @property
    def document_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.sentence_counts)]).astype(np.int64)

    @property
    def document_lengths(self) -> np.ndarray:
        """Tokens per document."""
        sentence_ends = np.cumsum(self.sentence_lengths)
        document_offsets = self.document_offsets
        totals = np.concatenate([[0], sentence_ends])[document_offsets]
        return np.diff(totals)

    def capped(self, max_sentences: int, max_words: int) -> TokenisedSplit:
        """The first `max_sentences` sentences of each document, each cut to its first `max_words` tokens."""
        if (self.sentence_counts <= max_sentences).all() and (self.sentence_lengths <= max_words).all():
            return self  # nothing to cut (arrays shared, not copied)
        # rank of each sentence within its document, rank of each token within its sentence
        # (int32 when the split is small enough: these temporaries are the largest arrays here)
        index = np.int32 if len(self.ids) < 2**31 - 1 else np.int64
        document_offsets = self.document_offsets.astype(index)
        sentence_rank = np.arange(len(self.sentence_lengths), dtype=index)
        sentence_rank -= np.repeat(document_offsets[:-1], self.sentence_counts)
        keep_sentence = sentence_rank < max_sentences
        del sentence_rank
        token_rank = np.arange(len(self.ids), dtype=index)
        token_rank -= np.repeat(self.sentence_offsets.astype(index)[:-1], self.sentence_lengths)
        keep_token = token_rank < max_words
        del token_rank
        keep_token &= np.repeat(keep_sentence, self.sentence_lengths)
        return TokenisedSplit(
            ids=self.ids[keep_token],
            sentence_lengths=np.minimum(self.sentence_lengths, max_words)[keep_sentence],
            sentence_counts=np.minimum(self.sentence_counts, max_sentences),
        )

    def select(self, keep: np.ndarray) -> TokenisedSplit:
        """Only the documents where the boolean mask `keep` is true."""
        sentence_mask = np.repeat(keep, self.sentence_counts)
        token_mask = np.repeat(sentence_mask, self.sentence_lengths)
        return TokenisedSplit(self.ids[token_mask], self.sentence_lengths[sentence_mask], self.sentence_counts[keep])

    def documents(self, words: Sequence[str]) -> list[list[list[str]]]:
        """Documents as sentences of word strings (the format of `han.segment.segment`); for tests and small data."""
        table = np.asarray(words, dtype=object)
        sentence_offsets = self.sentence_offsets
        sentences = [table[self.ids[a:b]].tolist() for a, b in zip(sentence_offsets[:-1], sentence_offsets[1:])]
        document_offsets = self.document_offsets
        return [sentences[a:b] for a, b in zip(document_offsets[:-1], document_offsets[1:])]


class WordTable:
    """Corpus-wide ids for every distinct word seen, in order of first appearance (by chunk)."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.words)

    def add(self, chunk: ChunkTokens) -> np.ndarray:
        """The chunk's tokens as corpus-wide ids (int32)."""
        index, words = self.index, self.words
        lookup = np.empty(len(chunk.words), dtype=np.int32)
        for i, word in enumerate(chunk.words):
            j = index.get(word)
            if j is None:
                j = index[word] = len(words)
                words.append(word)
            lookup[i] = j
        return lookup[chunk.local_ids]


def tokenise_chunk(nlp: Language, texts: Sequence[str], lowercase: bool, batch_size: int) -> ChunkTokens:
    """Sentences of tokens of `texts` (whitespace tokens and empty sentences dropped, no caps), chunk-local ids."""
    attributes = [LOWER if lowercase else ORTH, IS_SPACE, SENT_START]
    arrays = []
    token_counts = np.zeros(len(texts), dtype=np.int64)
    for i, doc in enumerate(nlp.pipe(texts, batch_size=batch_size)):
        token_counts[i] = len(doc)
        if len(doc):
            arrays.append(doc.to_array(attributes))
    if not arrays:
        empty = np.zeros(0, dtype=np.int32)
        return ChunkTokens(empty, empty, np.zeros(len(texts), dtype=np.int32), [])
    table = np.concatenate(arrays)  # (N, 3) uint64: word hash, is_space, sent_start (1 = starts a sentence)
    starts = table[:, 2] == 1
    document_starts = (np.cumsum(token_counts) - token_counts)[token_counts > 0]
    starts[document_starts] = True  # a document's first token always starts a sentence (as in Doc.sents)
    sentence_of_token = np.cumsum(starts) - 1
    document_of_token = np.repeat(np.arange(len(texts)), token_counts)
    keep = table[:, 1] == 0
    hashes = table[keep, 0]
    kept_sentences = sentence_of_token[keep]
    # kept tokens of one sentence are contiguous: new sentence wherever the sentence number changes
    boundaries = np.flatnonzero(np.diff(kept_sentences)) + 1
    sentence_starts = np.concatenate([[0], boundaries]) if len(hashes) else np.zeros(0, dtype=np.int64)
    sentence_lengths = np.diff(np.concatenate([sentence_starts, [len(hashes)]]))
    sentence_counts = np.bincount(document_of_token[keep][sentence_starts], minlength=len(texts))
    unique, local_ids = np.unique(hashes, return_inverse=True)
    strings = nlp.vocab.strings
    return ChunkTokens(
        local_ids.astype(np.int32).ravel(),
        sentence_lengths.astype(np.int32),
        sentence_counts.astype(np.int32),
        [strings[int(h)] for h in unique],
    )


# --- worker processes ------------------------------------------------------------------------------

_worker_state: dict[str, Any] = {}


def _init_worker(config: dict[str, Any]) -> None:
    preprocess = PreprocessConfig.model_validate(config)
    _worker_state["nlp"] = build_pipeline(preprocess)
    _worker_state["config"] = preprocess


def _tokenise_in_worker(texts: list[str]) -> ChunkTokens:
    config: PreprocessConfig = _worker_state["config"]
    return tokenise_chunk(_worker_state["nlp"], texts, config.lowercase, config.pipe_batch_size)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | None, documents: int) -> int:
    """Worker processes to use: the configured number, or (None) every core for large inputs and 1 for small."""
    if workers is not None:
        return workers
    return available_cores() if documents >= PARALLEL_MIN_DOCUMENTS else 1


class Tokeniser:
    """Tokenises splits into one shared `WordTable`, in `workers` processes (1: in this process).

    Use as a context manager so the pool is closed. At most `2 * workers` chunks are in flight, so
    memory does not grow with the input even when it is read lazily from disk.
    """

    def __init__(self, config: PreprocessConfig, workers: int = 1) -> None:
        self.config = config
        self.workers = workers
        self.table = WordTable()
        self._pool: Any = None
        self._nlp: Language | None = None

    def __enter__(self) -> Tokeniser:
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
            assert self._nlp is not None, "use Tokeniser as a context manager"
            for texts in chunks:
                yield tokenise_chunk(self._nlp, texts, self.config.lowercase, self.config.pipe_batch_size)
            return
        pending: deque = deque()
        for texts in chunks:
            pending.append(self._pool.apply_async(_tokenise_in_worker, (texts,)))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def tokenise(
        self,
        chunks: Iterable[list[str]],
        progress: Progress | None = None,
        caps: tuple[int, int] | None = None,
        spill: Path | None = None,
    ) -> TokenisedSplit:
        """All documents of `chunks` (lists of texts, in order) as one `TokenisedSplit`.

        `caps` (max_sentences, max_words) caps every chunk as it arrives (None: uncapped). With
        `spill`, a folder, the arrays are appended chunk by chunk to files there and come back
        memory-mapped, so memory does not grow with the corpus.
        """
        store = _SpilledArrays(spill) if spill is not None else _MemoryArrays()
        for chunk in self._chunks(chunks):
            part = TokenisedSplit(
                self.table.add(chunk), chunk.sentence_lengths.astype(np.int64), chunk.sentence_counts.astype(np.int64)
            )
            if caps is not None:
                part = part.capped(*caps)
            store.append(part)
            if progress is not None:
                progress.advance(len(chunk.sentence_counts))
        return store.finish()


class _MemoryArrays:
    """Chunks of a split kept in memory, concatenated at the end."""

    def __init__(self) -> None:
        self.parts: list[TokenisedSplit] = []

    def append(self, part: TokenisedSplit) -> None:
        self.parts.append(part)

    def finish(self) -> TokenisedSplit:
        if not self.parts:
            return TokenisedSplit(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64))
        return TokenisedSplit(
            np.concatenate([p.ids for p in self.parts]).astype(np.int32, copy=False),
            np.concatenate([p.sentence_lengths for p in self.parts]).astype(np.int64, copy=False),
            np.concatenate([p.sentence_counts for p in self.parts]).astype(np.int64, copy=False),
        )


class _SpilledArrays:
    """Chunks of a split appended to three files in `folder`, read back memory-mapped."""

    FIELDS = (("ids", np.int32), ("sentence_lengths", np.int64), ("sentence_counts", np.int64))

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = {name: folder / f"{name}.bin" for name, _ in self.FIELDS}
        self.files = {name: open(path, "wb") for name, path in self.paths.items()}  # noqa: SIM115

    def append(self, part: TokenisedSplit) -> None:
        for name, dtype in self.FIELDS:
            self.files[name].write(np.ascontiguousarray(getattr(part, name), dtype=dtype).tobytes())

    def finish(self) -> TokenisedSplit:
        arrays = {}
        for name, dtype in self.FIELDS:
            self.files[name].close()
            size = self.paths[name].stat().st_size
            arrays[name] = np.memmap(self.paths[name], dtype=dtype, mode="r") if size else np.zeros(0, dtype)
        return TokenisedSplit(arrays["ids"], arrays["sentence_lengths"], arrays["sentence_counts"])


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


# --- vocabulary and encoding -------------------------------------------------------------------------


def word_counts(split: TokenisedSplit, words: Sequence[str]) -> Counter[str]:
    """Occurrences of each word in `split`."""
    counts = np.zeros(len(words), dtype=np.int64)
    step = 1 << 22  # in slices: bincount copies its input to int64, 8 bytes a token for a whole split
    for start in range(0, len(split.ids), step):
        counts += np.bincount(split.ids[start : start + step], minlength=len(words))
    present = np.flatnonzero(counts)
    return Counter(dict(zip((words[i] for i in present), counts[present].tolist())))


def vocab_lookup(vocab: Vocab, words: Sequence[str]) -> np.ndarray:
    """(len(words),) int64: the vocabulary id of every word of a word table (UNK_ID when absent)."""
    lookup = np.full(len(words), UNK_ID, dtype=np.int64)
    get = vocab.index.get
    for i, word in enumerate(words):
        j = get(word)
        if j is not None:
            lookup[i] = j
    return lookup


class SplitSentences:
    """The sentences of a split as lists of word strings; iterable many times (what gensim needs)."""

    def __init__(self, split: TokenisedSplit, words: Sequence[str]) -> None:
        self.split = split
        self.table = np.asarray(words, dtype=object)

    def __len__(self) -> int:
        return len(self.split.sentence_lengths)

    def __iter__(self) -> Iterator[list[str]]:
        offsets = self.split.sentence_offsets
        ids, table = self.split.ids, self.table
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
            yield table[ids[a:b]].tolist()


@dataclass
class SegmentedCorpus:
    """Every split segmented, capped and counted: the word table, the capped splits and the vocabulary."""

    words: list[str]
    splits: dict[str, TokenisedSplit]  # capped
    vocab: Vocab
    lookup: np.ndarray  # word-table id -> vocabulary id

    def encoded(self, name: str, labels: Sequence[int] | None = None):
        """A split as an `EncodedSplit` of vocabulary ids (labels -1 when not given)."""
        from han.batching import EncodedSplit

        split = self.splits[name]
        labels = np.full(len(split), -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        return EncodedSplit(self.lookup[split.ids], split.sentence_offsets, split.document_offsets, labels)

    def sentences(self, name: str) -> SplitSentences:
        return SplitSentences(self.splits[name], self.words)

    def write_encoded(
        self, name: str, labels: np.ndarray, path: Path, part_documents: int = 50_000
    ) -> tuple[int, int, int]:
        """Write a split as vocabulary ids to the dataset folder `path`, `part_documents` at a time.

        Memory stays bounded by the part size, however large the (memory-mapped) split is.
        Returns (documents, tokens, unknown tokens).
        """
        from han.batching import EncodedSplit, EncodedSplitWriter

        split = self.splits[name]
        sentence_start = token_start = unknown = 0
        with EncodedSplitWriter(path) as writer:
            for start in range(0, len(split), part_documents):
                counts = np.asarray(split.sentence_counts[start : start + part_documents], dtype=np.int64)
                sentences = int(counts.sum())
                lengths = np.asarray(
                    split.sentence_lengths[sentence_start : sentence_start + sentences], dtype=np.int64
                )
                tokens = int(lengths.sum())
                ids = self.lookup[split.ids[token_start : token_start + tokens]]
                unknown += int(np.count_nonzero(ids == UNK_ID))
                sentence_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
                document_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
                writer.write(
                    EncodedSplit(ids, sentence_offsets, document_offsets, labels[start : start + part_documents])
                )
                sentence_start, token_start = sentence_start + sentences, token_start + tokens
        return len(split), token_start, unknown


def tokenise_splits(
    texts_by_split: Mapping[str, Iterable[list[str]]],
    config: PreprocessConfig,
    workers: int,
    sizes: Mapping[str, int] | None = None,
    progress: Progress | None = None,
    capped: bool = False,
    spill: Path | None = None,
) -> tuple[list[str], dict[str, TokenisedSplit]]:
    """`TokenisedSplit`s of chunked texts (one iterable of text lists per split) and their word table.

    Uncapped unless `capped`; with `spill`, a folder, each split's arrays go to files there (memory-mapped).
    """
    progress = progress or Progress()
    results = {}
    caps = (config.max_sentences, config.max_words) if capped else None
    with Tokeniser(config, workers) as tokeniser:
        for name, chunks in texts_by_split.items():
            progress.start(f"tokenise {name}", (sizes or {}).get(name))
            results[name] = tokeniser.tokenise(chunks, progress, caps, spill / name if spill is not None else None)
            progress.stop()
        return tokeniser.table.words, results


def build_corpus(
    words: list[str], uncapped: Mapping[str, TokenisedSplit], config: PreprocessConfig, vocab_split: str = "train"
) -> SegmentedCorpus:
    """Cap every split, count the vocabulary on `vocab_split` and map the word table to vocabulary ids."""
    splits = {name: split.capped(config.max_sentences, config.max_words) for name, split in uncapped.items()}
    vocab = Vocab.build(word_counts(splits[vocab_split], words), config.min_count, config.max_vocab)
    return SegmentedCorpus(words, splits, vocab, vocab_lookup(vocab, words))


def segment_and_encode(
    texts_by_split: Mapping[str, Sequence[str]],
    config: PreprocessConfig,
    workers: int | None = None,
    progress: Progress | None = None,
) -> SegmentedCorpus:
    """Segment, cap and encode every split; the vocabulary is built from the "train" split.

    `workers`: processes for tokenisation (None: every core when there are at least
    `PARALLEL_MIN_DOCUMENTS` documents). The output does not depend on `workers` (tested).
    `corpus.encoded(name)` gives an `EncodedSplit`; `corpus.vocab` the vocabulary.
    """
    total = sum(len(texts) for texts in texts_by_split.values())
    workers = resolve_workers(workers, total)
    size = chunk_size_for(total, workers)
    words, uncapped = tokenise_splits(
        {name: chunked(texts, size) for name, texts in texts_by_split.items()},
        config,
        workers,
        {name: len(texts) for name, texts in texts_by_split.items()},
        progress,
    )
    return build_corpus(words, uncapped, config)
