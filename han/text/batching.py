"""Length-bucketed batches of an encoded split, collated for the model.

Batches carry only real sentences, padded to the longest sentence of the batch; the model scatters
them back to documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from han.store.encoded import EncodedSplit
from han.store.vocab import PAD_ID


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
    sentence_ids = np.concatenate([np.arange(a, b) for a, b in zip(first, last, strict=True)])
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
    split: EncodedSplit,
    batch_size: int,
    rng: np.random.Generator | None,
    pool_batches: int = 50,
    max_tokens: int | None = None,
) -> Iterator[np.ndarray]:
    """Index arrays of batches of documents of similar length.

    With `rng`, documents are shuffled, sorted by length within pools of `pool_batches` batches
    and the batch order is shuffled (seeded, different every epoch). Without it, batches follow
    length order, which is deterministic and fastest for evaluation; `max_tokens` then also ends a
    batch before its tokens pass that many (a batch holds at least one document).
    """
    n = len(split)
    # Sort key: sentences per document, then tokens per document.
    key = split.sentence_counts * 100_000 + split.document_lengths
    if rng is None:
        order = np.argsort(key, kind="stable")
        if max_tokens is None:
            yield from (order[i : i + batch_size] for i in range(0, n, batch_size))
            return
        start, tokens = 0, 0
        for i, length in enumerate(split.document_lengths[order].tolist()):
            if i > start and (i - start == batch_size or tokens + length > max_tokens):
                yield order[start:i]
                start, tokens = i, 0
            tokens += length
        if start < n:
            yield order[start:]
        return
    order = rng.permutation(n)
    pool = batch_size * pool_batches
    batches: list[np.ndarray] = []
    for start in range(0, n, pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(key[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    for b in rng.permutation(len(batches)):
        yield batches[b]
