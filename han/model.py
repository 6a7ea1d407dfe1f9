"""The hierarchical attention network of Yang et al. (NAACL 2016), top to bottom.

words --embedding--> word BiGRU --attention--> sentence vectors
sentence vectors --> sentence BiGRU --attention--> document vector --> linear --> logits

Input is a batch of real sentences only (no empty padding sentences): `word_ids` (N_s, W) with
each sentence's length, and the number of sentences of each of the B documents, in order.
Inside, words and sentences are packed (han/packed.py): no padding position exists, so padding
never enters a recurrence or an attention softmax and a document's output does not depend on its
batch. The GRUs run as `nn.GRU` on a PackedSequence or, on CPU, as the fused lock-step kernel
(`model.rnn`), with the same weights.

Shapes: B documents, S sentences per document (max), N_s sentences in the batch, W words per
sentence (max), E embedding size, H hidden size per direction, A attention size, C classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from han.config import ModelConfig
from han.errors import ConfigError
from han.packed import PackedLayout, fused_bidirectional_gru, pack_layout

# The vocabulary keeps id 0 for padding (han.vocab.PAD_ID; tests/test_layout.py holds the two equal). The
# model imports no text module, so it states the id itself.
PAD_ID = 0


@dataclass
class HANOutput:
    """Logits and attention weights of a batch of documents.

    The weights are kept packed (one per real word / sentence); `word_attention` and
    `sentence_attention` lay them out padded, with exactly zero on padding, when first read.
    """

    logits: torch.Tensor  # (B, C)
    word_weights: torch.Tensor  # (P_w,) packed like `words`; each sentence's weights sum to 1
    sentence_weights: torch.Tensor  # (P_s,) packed like `sentences`; each document's weights sum to 1
    words: PackedLayout  # sentences as sequences of words
    sentences: PackedLayout  # documents as sequences of sentences
    sentence_counts: torch.Tensor  # (B,)
    max_words: int

    @cached_property
    def sentence_attention(self) -> torch.Tensor:
        """(B, S) sentence weights of each document."""
        attention = self.sentence_weights.new_zeros(
            self.sentence_counts.numel(), int(self.sentence_counts.max())
        )  # (B, S)
        attention[self.sentences.sequence, self.sentences.position] = self.sentence_weights
        return attention

    @cached_property
    def word_attention(self) -> torch.Tensor:
        """(B, S, W) word weights of each sentence of each document."""
        counts = self.sentence_counts
        num_docs, device = counts.numel(), counts.device
        document_of = torch.repeat_interleave(torch.arange(num_docs, device=device), counts)  # (N_s,)
        first_sentence = torch.cumsum(counts, 0) - counts  # (B,)
        index_in_document = torch.arange(document_of.numel(), device=device) - first_sentence[document_of]  # (N_s,)
        attention = self.word_weights.new_zeros(num_docs, int(counts.max()), self.max_words)  # (B, S, W)
        sentence = self.words.sequence
        attention[document_of[sentence], index_in_document[sentence], self.words.position] = self.word_weights
        return attention


class BiGRUEncoder(nn.Module):
    """A bidirectional GRU over packed sequences: `nn.GRU` (cuDNN on CUDA) or the fused CPU path, same weights."""

    def __init__(self, input_size: int, hidden_size: int, backend: str = "auto") -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, bidirectional=True)
        self.backend = backend

    def forward(self, inputs: torch.Tensor, layout: PackedLayout, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Run the GRU both ways over packed `inputs` (or `inputs[rows]`); return the (P, 2H) packed states."""
        # inputs (P, D) in packed order, or distinct rows (U, D) that position p reads as inputs[rows[p]]
        backend = self.backend if self.backend != "auto" else ("torch" if inputs.is_cuda else "fused")
        if backend == "fused":
            return fused_bidirectional_gru(inputs, layout, self.gru, rows)  # (P, 2H)
        packed_inputs = inputs if rows is None else inputs[rows]  # (P, D)
        states, _ = self.gru(PackedSequence(packed_inputs, layout.batch_sizes))
        return states.data  # (P, 2H)


class AdditiveAttention(nn.Module):
    """Attention against a learned context vector: a = softmax(c . tanh(W h + b)) within each segment.

    Positions are packed (no padding exists), so only real words or sentences ever get weight.
    """

    def __init__(self, input_size: int, attention_size: int) -> None:
        super().__init__()
        self.projection = nn.Linear(input_size, attention_size)
        self.context = nn.Parameter(torch.empty(attention_size).uniform_(-0.1, 0.1))

    def forward(
        self, states: torch.Tensor, segments: torch.Tensor, num_segments: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool `states` within each segment by attention; return the (N, D) pooled vectors and the (P,) weights."""
        # states (P, D); segments (P,) in [0, num_segments), every segment non-empty
        scores = torch.tanh(self.projection(states)) @ self.context  # (P,)
        maxima = scores.new_full((num_segments,), float("-inf"))
        maxima = maxima.scatter_reduce(0, segments, scores.detach(), "amax")  # (N,) for a stable softmax
        exps = torch.exp(scores - maxima[segments])  # (P,)
        totals = exps.new_zeros(num_segments).index_add(0, segments, exps)  # (N,)
        weights = exps / totals[segments]  # (P,), sums to 1 within each segment
        pooled = states.new_zeros(num_segments, states.size(1)).index_add(
            0, segments, weights[:, None] * states
        )  # (N, D)
        return pooled, weights


class HierarchicalAttentionNetwork(nn.Module):
    """Word encoder + word attention, sentence encoder + sentence attention, linear classifier."""

    def __init__(
        self, vocab_size: int, embedding_dim: int, num_classes: int, config: ModelConfig, sparse_embedding: bool = False
    ) -> None:
        super().__init__()
        # sparse_embedding: row-sparse gradients, for han.optim.LazyAdam (training only; weights are the same)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID, sparse=sparse_embedding)
        self.embedding.weight.requires_grad_(not config.freeze_embeddings)
        self.word_encoder = BiGRUEncoder(embedding_dim, config.word_hidden, config.rnn)
        self.word_attention = AdditiveAttention(2 * config.word_hidden, config.attention_dim)
        self.sentence_encoder = BiGRUEncoder(2 * config.word_hidden, config.sentence_hidden, config.rnn)
        self.sentence_attention = AdditiveAttention(2 * config.sentence_hidden, config.attention_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(2 * config.sentence_hidden, num_classes)

    def load_embeddings(self, vectors: np.ndarray) -> None:
        """Initialise the embedding table from a (vocab_size, embedding_dim) array."""
        with torch.no_grad():
            self.embedding.weight.copy_(torch.from_numpy(vectors))

    def forward(
        self, word_ids: torch.Tensor, sentence_lengths: torch.Tensor, sentence_counts: torch.Tensor
    ) -> HANOutput:
        """Classify a batch of documents: the logits with the word and sentence attention weights."""
        # word_ids (N_s, W); sentence_lengths (N_s,); sentence_counts (B,), sum(sentence_counts) == N_s
        device = word_ids.device
        num_docs, num_sentences = sentence_counts.numel(), word_ids.size(0)
        words = pack_layout(sentence_lengths).to(device)  # sentences as sequences of words
        sentences = pack_layout(sentence_counts).to(device)  # documents as sequences of sentences
        first_sentence = torch.cumsum(sentence_counts, 0) - sentence_counts  # (B,)

        # Each distinct word of the batch is embedded (and projected into the GRU) once.
        distinct_words, word_rows = torch.unique(
            word_ids[words.sequence, words.position], return_inverse=True
        )  # (U,), (P_w,)
        embedded = self.embedding(distinct_words)  # (U, E)
        word_states = self.word_encoder(embedded, words, word_rows)  # (P_w, 2H_w)
        sentence_vectors, word_weights = self.word_attention(
            word_states, words.sequence, num_sentences
        )  # (N_s, 2H_w), (P_w,)

        sentence_inputs = self.dropout(sentence_vectors)[
            first_sentence[sentences.sequence] + sentences.position
        ]  # (P_s, 2H_w)
        sentence_states = self.sentence_encoder(sentence_inputs, sentences)  # (P_s, 2H_s)
        document_vectors, sentence_weights = self.sentence_attention(
            sentence_states, sentences.sequence, num_docs
        )  # (B, 2H_s), (P_s,)
        logits = self.classifier(self.dropout(document_vectors))  # (B, C)

        return HANOutput(logits, word_weights, sentence_weights, words, sentences, sentence_counts, word_ids.size(1))


def parameter_counts(config: ModelConfig, vocab_size: int, embedding_dim: int, num_classes: int) -> dict[str, int]:
    """Parameters of each part of the network, by the settings that size it (exactly what the modules allocate)."""
    E, Hw, Hs, A, C = embedding_dim, config.word_hidden, config.sentence_hidden, config.attention_dim, num_classes

    def bigru(inputs: int, hidden: int) -> int:  # two directions of W_ih, W_hh, b_ih, b_hh, three gates each
        return 2 * 3 * hidden * (inputs + hidden + 2)

    return {
        "preprocess.max_vocab or embeddings.dim": vocab_size * E,  # the embedding table
        "model.word_hidden": bigru(E, Hw) + 2 * Hw * A,  # word encoder, word attention projection
        "model.sentence_hidden": bigru(2 * Hw, Hs) + 2 * Hs * A + 2 * Hs * C + C,  # and the classifier
        "model.attention_dim": 4 * A,  # the attention biases and context vectors
    }


def available_memory_bytes() -> int | None:
    """Memory this process can still allocate: MemAvailable (or free pages), capped by a cgroup v2 limit; None if unknown."""
    available: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return available


def check_model_fits(
    config: ModelConfig, vocab_size: int, embedding_dim: int, num_classes: int, training: bool = False
) -> None:
    """Raise `ConfigError` naming the largest setting when the network would not fit in the available memory.

    Counted: the fp32 weights, and for `training` also their gradients and two optimizer moments (4 copies).
    """
    counts = parameter_counts(config, vocab_size, embedding_dim, num_classes)
    copies = 4 if training else 1
    needed = sum(counts.values()) * 4 * copies  # 4 bytes a float32
    available = available_memory_bytes()
    if available is None or needed <= available:
        return
    largest = max(counts, key=lambda name: counts[name])
    parts = {
        "preprocess.max_vocab or embeddings.dim": f"the embedding table, {vocab_size:,} words x {embedding_dim}",
        "model.word_hidden": f"the word encoder, model.word_hidden={config.word_hidden}",
        "model.sentence_hidden": f"the sentence encoder, model.sentence_hidden={config.sentence_hidden}",
        "model.attention_dim": f"the attention, model.attention_dim={config.attention_dim}",
    }
    what = "weights, gradients and optimizer state" if training else "weights"
    raise ConfigError(
        f"the model would need {_size(needed)} ({what} of {sum(counts.values()):,} parameters) but only "
        f"{_size(max(available, 0))} of memory is available; lower {largest} ({parts[largest]}, is the largest part)"
    )


def _size(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def build_model(
    config: ModelConfig,
    vocab_size: int,
    embedding_dim: int,
    num_classes: int,
    sparse_embedding: bool = False,
    *,
    training: bool = False,
) -> HierarchicalAttentionNetwork:
    """A freshly initialised network of the configured sizes, once `check_model_fits` has found memory for it.

    `training` (implied by `sparse_embedding`, which only training uses) also counts gradients and optimizer state.
    """
    check_model_fits(config, vocab_size, embedding_dim, num_classes, training=training or sparse_embedding)
    return HierarchicalAttentionNetwork(vocab_size, embedding_dim, num_classes, config, sparse_embedding)
