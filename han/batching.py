"""Encoded documents in flat arrays, their Arrow storage, and length-bucketed batches.

A split is held as three flat arrays: every token id of every sentence in order, the offsets of
sentences into that token array, and the offsets of documents into the sentence list. Batches
carry only real sentences, padded to the longest sentence of the batch; the model scatters them
back to documents.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import torch

from han.errors import RunDirError
from han.vocab import PAD_ID

ENCODED_FEATURES = datasets.Features(
    {"ids": datasets.List(datasets.List(datasets.Value("int32"))), "label": datasets.Value("int64")}
)


@dataclass
class EncodedSplit:
    """Token ids of a split's documents in flat arrays."""

    tokens: np.ndarray  # (T,) int64 token ids
    sentence_offsets: np.ndarray  # (N_sent + 1,) into tokens
    document_offsets: np.ndarray  # (N_doc + 1,) into sentences
    labels: np.ndarray  # (N_doc,) int64 class ids; -1 when unknown

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def sentence_counts(self) -> np.ndarray:
        return np.diff(self.document_offsets)

    @property
    def document_lengths(self) -> np.ndarray:
        """Tokens per document."""
        return self.sentence_offsets[self.document_offsets[1:]] - self.sentence_offsets[self.document_offsets[:-1]]

    @classmethod
    def from_documents(cls, documents: Sequence[Sequence[Sequence[int]]], labels: Sequence[int]) -> EncodedSplit:
        sentence_lengths = [len(s) for doc in documents for s in doc]
        tokens = np.fromiter(
            (t for doc in documents for s in doc for t in s), dtype=np.int64, count=sum(sentence_lengths)
        )
        sentence_offsets = np.zeros(len(sentence_lengths) + 1, dtype=np.int64)
        np.cumsum(sentence_lengths, out=sentence_offsets[1:])
        document_offsets = np.zeros(len(documents) + 1, dtype=np.int64)
        np.cumsum([len(doc) for doc in documents], out=document_offsets[1:])
        return cls(tokens, sentence_offsets, document_offsets, np.asarray(labels, dtype=np.int64))

    def arrow_table(self) -> pa.Table:
        """One row per document: nested ids and label, in the schema of ENCODED_FEATURES."""
        sentences = pa.ListArray.from_arrays(
            pa.array(self.sentence_offsets, pa.int32()), pa.array(self.tokens, pa.int32())
        )
        documents = pa.ListArray.from_arrays(pa.array(self.document_offsets, pa.int32()), sentences)
        table = pa.table({"ids": documents, "label": pa.array(self.labels, pa.int64())})
        return table.cast(ENCODED_FEATURES.arrow_schema)

    def save(self, path: Path) -> None:
        """Write as an Arrow dataset (one row per document: nested ids and label)."""
        datasets.Dataset(self.arrow_table()).save_to_disk(str(path))

    @classmethod
    def load(cls, path: Path) -> EncodedSplit:
        try:
            dataset = datasets.load_from_disk(str(path))
        except FileNotFoundError:
            raise RunDirError(f"{path}: encoded split missing; run `han preprocess` first") from None
        table = dataset.with_format("arrow")[:]
        documents = table.column("ids").combine_chunks()
        sentences = documents.flatten()
        tokens = sentences.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        sentence_offsets = sentences.offsets.to_numpy().astype(np.int64)
        document_offsets = documents.offsets.to_numpy().astype(np.int64)
        labels = table.column("label").to_numpy().astype(np.int64)
        return cls(tokens, sentence_offsets - sentence_offsets[0], document_offsets - document_offsets[0], labels)


class EncodedSplitWriter:
    """Writes a split part by part into the dataset folder `EncodedSplit.load` reads, in bounded memory.

    The parts go to an Arrow stream file, which `datasets` then memory-maps and saves as a dataset.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.stream_path = self.path.parent / f".{self.path.name}.arrow"
        self.writer = pa.ipc.new_stream(str(self.stream_path), ENCODED_FEATURES.arrow_schema)

    def write(self, part: EncodedSplit) -> None:
        self.writer.write_table(part.arrow_table())

    def __enter__(self) -> EncodedSplitWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        """Turn the stream into the dataset folder; on an error, only remove the stream file."""
        self.writer.close()
        try:
            if exc_type is None:
                datasets.Dataset.from_file(str(self.stream_path)).save_to_disk(str(self.path))
        finally:
            self.stream_path.unlink(missing_ok=True)


@dataclass
class Batch:
    """Documents ready for the model. Only real sentences are present."""

    word_ids: torch.Tensor  # (N_s, W) int64, PAD_ID beyond each sentence's length
    sentence_lengths: torch.Tensor  # (N_s,) int64, words per sentence (>= 1)
    sentence_counts: torch.Tensor  # (B,) int64, sentences per document (>= 1)
    labels: torch.Tensor  # (B,) int64
    indices: np.ndarray  # (B,) positions of these documents in their split

    def to(self, device: torch.device) -> Batch:
        """The batch with its tensors on `device` (itself when they are there already)."""
        if self.word_ids.device == torch.device(device):
            return self
        return Batch(
            self.word_ids.to(device),
            self.sentence_lengths.to(device),
            self.sentence_counts.to(device),
            self.labels.to(device),
            self.indices,
        )


def collate(split: EncodedSplit, indices: np.ndarray) -> Batch:
    """Gather documents `indices` of `split` into a padded `Batch`."""
    first = split.document_offsets[indices]
    last = split.document_offsets[indices + 1]
    sentence_ids = np.concatenate([np.arange(a, b) for a, b in zip(first, last)])
    starts = split.sentence_offsets[sentence_ids]
    lengths = split.sentence_offsets[sentence_ids + 1] - starts
    width = int(lengths.max())
    word_ids = np.full((len(sentence_ids), width), PAD_ID, dtype=np.int64)
    columns = np.arange(width)
    valid = columns[None, :] < lengths[:, None]  # (N_s, W)
    word_ids[valid] = split.tokens[(starts[:, None] + columns[None, :])[valid]]
    return Batch(
        word_ids=torch.from_numpy(word_ids),
        sentence_lengths=torch.from_numpy(lengths),
        sentence_counts=torch.from_numpy(last - first),
        labels=torch.from_numpy(split.labels[indices]),
        indices=indices,
    )


def bucketed_batches(
    split: EncodedSplit, batch_size: int, rng: np.random.Generator | None, pool_batches: int = 50
) -> Iterator[np.ndarray]:
    """Index arrays of batches of documents of similar length.

    With `rng`, documents are shuffled, sorted by length within pools of `pool_batches` batches
    and the batch order is shuffled (seeded, different every epoch). Without it, batches follow
    length order, which is deterministic and fastest for evaluation.
    """
    n = len(split)
    # Sort key: sentences per document, then tokens per document.
    key = split.sentence_counts * 100_000 + split.document_lengths
    if rng is None:
        order = np.argsort(key, kind="stable")
        yield from (order[i : i + batch_size] for i in range(0, n, batch_size))
        return
    order = rng.permutation(n)
    pool = batch_size * pool_batches
    batches = []
    for start in range(0, n, pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(key[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    for b in rng.permutation(len(batches)):
        yield batches[b]
