"""A segmented corpus in flat arrays: word table, capped splits, vocabulary and vocabulary ids.

`han.text.segment.segment_chunk` yields chunks of documents with chunk-local word ids; here every distinct
word gets a corpus-wide id (`WordTable`) and a split is kept as three flat arrays (`SegmentedSplit`),
in memory or spilled to memory-mapped files. Caps are applied with numpy, the vocabulary is counted
on the capped training split with `np.bincount`, and ids map to vocabulary ids with one lookup
(`Corpus`), which writes each split as an `han.store.encoded.EncodedSplit`.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from han.config import PreprocessConfig
from han.store.encoded import EncodedSplit, EncodedSplitWriter, label_array
from han.store.vocab import UNK_ID, Vocab
from han.text.segment import ChunkTokens, TextStats
from han.util.atomic import storage_errors


@dataclass
class SegmentedSplit:
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

    def capped(self, max_sentences: int, max_words: int) -> SegmentedSplit:
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
        return SegmentedSplit(
            ids=self.ids[keep_token],
            sentence_lengths=np.minimum(self.sentence_lengths, max_words)[keep_sentence],
            sentence_counts=np.minimum(self.sentence_counts, max_sentences),
        )

    def select(self, keep: np.ndarray) -> SegmentedSplit:
        """Only the documents where the boolean mask `keep` is true."""
        sentence_mask = np.repeat(keep, self.sentence_counts)
        token_mask = np.repeat(sentence_mask, self.sentence_lengths)
        return SegmentedSplit(self.ids[token_mask], self.sentence_lengths[sentence_mask], self.sentence_counts[keep])

    def documents(self, words: Sequence[str]) -> list[list[list[str]]]:
        """Documents as sentences of word strings (the format of `han.text.segment.segment`); for tests and small data."""
        table = np.asarray(words, dtype=object)
        sentence_offsets = self.sentence_offsets
        sentences = [table[self.ids[a:b]].tolist() for a, b in itertools.pairwise(sentence_offsets)]
        document_offsets = self.document_offsets
        return [sentences[a:b] for a, b in itertools.pairwise(document_offsets)]


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


class _MemoryArrays:
    """Chunks of a split kept in memory, concatenated at the end."""

    def __init__(self) -> None:
        self.parts: list[SegmentedSplit] = []

    def append(self, part: SegmentedSplit) -> None:
        self.parts.append(part)

    def finish(self) -> SegmentedSplit:
        if not self.parts:
            return SegmentedSplit(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64))
        return SegmentedSplit(
            np.concatenate([p.ids for p in self.parts]).astype(np.int32, copy=False),
            np.concatenate([p.sentence_lengths for p in self.parts]).astype(np.int64, copy=False),
            np.concatenate([p.sentence_counts for p in self.parts]).astype(np.int64, copy=False),
        )


class _SpilledArrays:
    """Chunks of a split appended to three files in `folder`, read back memory-mapped."""

    FIELDS = (("ids", np.int32), ("sentence_lengths", np.int64), ("sentence_counts", np.int64))

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths = {name: folder / f"{name}.bin" for name, _ in self.FIELDS}
        self.files: dict[str, BinaryIO] = {}
        with self._writing():
            folder.mkdir(parents=True, exist_ok=True)
            for name, path in self.paths.items():
                # kept open across append() calls and closed in finish(), so no context manager
                self.files[name] = open(path, "wb")  # noqa: SIM115

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A failed write (disk full, ...) closes every file, so none flushes again later, and is a `StorageError`."""
        try:
            with storage_errors(self.folder):
                yield
        except BaseException:
            for handle in self.files.values():
                with suppress(OSError):
                    handle.close()
            raise

    def append(self, part: SegmentedSplit) -> None:
        with self._writing():
            for name, dtype in self.FIELDS:
                self.files[name].write(np.ascontiguousarray(getattr(part, name), dtype=dtype).tobytes())

    def finish(self) -> SegmentedSplit:
        with self._writing():
            for handle in self.files.values():
                handle.close()  # flushes the last chunk: where a full disk shows
        arrays = {}
        for name, dtype in self.FIELDS:
            size = self.paths[name].stat().st_size
            arrays[name] = np.memmap(self.paths[name], dtype=dtype, mode="r") if size else np.zeros(0, dtype)
        return SegmentedSplit(arrays["ids"], arrays["sentence_lengths"], arrays["sentence_counts"])


# --- vocabulary and encoding -------------------------------------------------------------------------


def word_counts(split: SegmentedSplit, words: Sequence[str]) -> Counter[str]:
    """Occurrences of each word in `split`."""
    counts = np.zeros(len(words), dtype=np.int64)
    step = 1 << 22  # in slices: bincount copies its input to int64, 8 bytes a token for a whole split
    for start in range(0, len(split.ids), step):
        counts += np.bincount(split.ids[start : start + step], minlength=len(words))
    present = np.flatnonzero(counts)
    return Counter(dict(zip((words[int(i)] for i in present), counts[present].tolist(), strict=True)))


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

    def __init__(self, split: SegmentedSplit, words: Sequence[str]) -> None:
        self.split = split
        self.table = np.asarray(words, dtype=object)

    def __len__(self) -> int:
        return len(self.split.sentence_lengths)

    def __iter__(self) -> Iterator[list[str]]:
        offsets = self.split.sentence_offsets
        ids, table = self.split.ids, self.table
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            yield table[ids[a:b]].tolist()


class ChainedSentences:
    """Several sentence iterables one after the other; iterable many times if each of them is."""

    def __init__(self, parts: Sequence[Iterable[Sequence[str]]]) -> None:
        self.parts = list(parts)

    def __iter__(self) -> Iterator[Sequence[str]]:
        for part in self.parts:
            yield from part


@dataclass
class Corpus:
    """Every split segmented, capped and counted: the word table, the capped splits and the vocabulary."""

    words: list[str]
    splits: dict[str, SegmentedSplit]  # capped
    vocab: Vocab
    lookup: np.ndarray  # word-table id -> vocabulary id

    def encoded(self, name: str, labels: Sequence[int] | np.ndarray | None = None) -> EncodedSplit:
        """A split as an `EncodedSplit` of vocabulary ids (labels -1 when not given)."""
        split = self.splits[name]
        ids = label_array(labels, len(split))
        return EncodedSplit(self.lookup[split.ids], split.sentence_offsets, split.document_offsets, ids)

    def sentences(self, *names: str) -> ChainedSentences:
        """The sentences of splits `names`, one after the other, as lists of word strings, iterable many times (for
        gensim)."""
        return ChainedSentences([SplitSentences(self.splits[name], self.words) for name in names])

    def write_encoded(
        self, name: str, labels: np.ndarray, path: Path, part_documents: int = 50_000
    ) -> tuple[int, int, int]:
        """Write a split as vocabulary ids to the dataset folder `path`, `part_documents` at a time.

        Memory stays bounded by the part size, however large the (memory-mapped) split is.
        Returns (documents, tokens, unknown tokens).
        """

        split = self.splits[name]
        sentence_start = token_start = unknown = 0
        with EncodedSplitWriter(path, labels.shape[1] if labels.ndim == 2 else None) as writer:
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


def tally_cuts(before: SegmentedSplit, after: SegmentedSplit, stats: TextStats) -> None:
    """Count in `stats` what capping `before` into `after` cut: tokens, documents touched, whole sentences."""
    stats.tokens += len(before.ids)
    stats.tokens_cut += len(before.ids) - len(after.ids)
    stats.sentences_cut += len(before.sentence_lengths) - len(after.sentence_lengths)
    if after is not before:
        stats.capped_documents += int(np.count_nonzero(before.document_lengths != after.document_lengths))


def build_corpus(
    words: list[str],
    uncapped: Mapping[str, SegmentedSplit],
    config: PreprocessConfig,
    vocab_split: str = "train",
    stats: dict[str, TextStats] | None = None,
) -> Corpus:
    """Cap every split (counting the cuts in `stats`, per split), count the vocabulary on `vocab_split` and
    map the word table to vocabulary ids."""
    splits = {name: split.capped(config.max_sentences, config.max_words) for name, split in uncapped.items()}
    for name in splits if stats is not None else ():
        if splits[name] is not uncapped[name]:  # splits capped as they were segmented arrive here unchanged
            tally_cuts(uncapped[name], splits[name], stats.setdefault(name, TextStats()))  # type: ignore[union-attr]
    vocab = Vocab.build(word_counts(splits[vocab_split], words), config.min_count, config.max_vocab)
    return Corpus(words, splits, vocab, vocab_lookup(vocab, words))
