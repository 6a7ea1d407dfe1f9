"""The hierarchical attention network of Yang et al. (NAACL 2016), top to bottom.

words --embedding--> word BiGRU --attention--> sentence vectors
sentence vectors --> sentence BiGRU --attention--> document vector --> linear --> logits
(model.wide)       document's TF-IDF n-grams --> linear (han/models/ngrams.py) --> + logits

Input is a batch of real sentences only (no empty padding sentences): `word_ids` (N_s, W) with
each sentence's length, and the number of sentences of each of the B documents, in order.
Inside, words and sentences are packed (han/models/packed.py): no padding position exists, so padding
never enters a recurrence or an attention softmax and a document's output does not depend on its
batch. The GRUs run as `nn.GRU` on a PackedSequence or, on CPU, as the fused lock-step kernel
(`model.rnn`), with the same weights. `model.cell: lstm` (or `rnn`) swaps the recurrent cell, and the
paper's HN-AVE / HN-MAX baselines (`model.kind: han_avg | han_max`) pool by mean / max instead of
attention at both levels. The flat baselines live in han/models/flat.py and han/models/linear.py; han/models/build.py
builds the configured kind.

Shapes: B documents, S sentences per document (max), N_s sentences in the batch, W words per
sentence (max), E embedding size, H hidden size per direction, A attention size, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from han.config import ModelConfig
from han.models.ngrams import TfidfEntries, WideChannel
from han.models.packed import PackedLayout, SharedRows, distinct_rows, fused_bidirectional_gru, pack_layout

# The vocabulary keeps id 0 for padding (han.store.vocab.PAD_ID; tests/test_layout.py holds the two equal). The
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
    wide_logits: torch.Tensor | None = None  # (B, C) the wide channel's part of `logits` (model.wide), else None

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


@dataclass
class ModelOutput:
    """Logits of a batch of documents, for networks without attention weights to show."""

    logits: torch.Tensor  # (B, C)


RECURRENT_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}


class RecurrentEncoder(nn.Module):
    """A GRU, LSTM or Elman RNN over packed sequences; a bidirectional GRU may run as the fused CPU kernel.

    The torch module is registered under the cell's name (`gru`, `lstm`, `rnn`), so a GRU's weights keep
    the names han has always saved them under.
    """

    def __init__(
        self, input_size: int, hidden_size: int, cell: str = "gru", bidirectional: bool = True, backend: str = "auto"
    ) -> None:
        super().__init__()
        self.cell = cell
        self.add_module(cell, RECURRENT_CELLS[cell](input_size, hidden_size, bidirectional=bidirectional))
        self.fusable = cell == "gru" and bidirectional  # the fused kernel is a bidirectional GRU
        self.backend = backend

    def forward(self, inputs: torch.Tensor, layout: PackedLayout, rows: SharedRows | None = None) -> torch.Tensor:
        """Run the recurrence over packed `inputs` (or `inputs[rows.index]`); return the (P, D*H) packed states."""
        # inputs (P, In) in packed order, or distinct rows (U, In) that position p reads as inputs[rows.index[p]]
        module = self.get_submodule(self.cell)
        backend = self.backend if self.backend != "auto" else ("torch" if inputs.is_cuda else "fused")
        if backend == "fused" and self.fusable:
            assert isinstance(module, nn.GRU)
            return fused_bidirectional_gru(inputs, layout, module, rows)  # (P, 2H)
        packed_inputs = inputs if rows is None else inputs[rows.index]  # (P, In)
        states, _ = module(PackedSequence(packed_inputs, layout.batch_sizes))
        return states.data  # (P, D*H), D = 2 if bidirectional else 1


# Kept for code that names the hierarchical network's encoder by its first name.
BiGRUEncoder = RecurrentEncoder


def pool_segments(states: torch.Tensor, segments: torch.Tensor, num_segments: int, how: str) -> torch.Tensor:
    """Mean or max of packed `states` within each segment (every segment non-empty): (N, D)."""
    # states (P, D); segments (P,) in [0, num_segments)
    if how == "max":
        index = segments[:, None].expand_as(states)  # (P, D)
        return states.new_full((num_segments, states.size(1)), float("-inf")).scatter_reduce(
            0, index, states, "amax"
        )  # (N, D)
    totals = states.new_zeros(num_segments, states.size(1)).index_add(0, segments, states)  # (N, D)
    counts = torch.bincount(segments, minlength=num_segments).to(states.dtype)  # (N,)
    return totals / counts[:, None]  # (N, D)


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
        scores = self.projection(states).tanh_() @ self.context  # (P,)
        maxima = scores.new_full((num_segments,), float("-inf"))
        maxima = maxima.scatter_reduce(0, segments, scores.detach(), "amax")  # (N,) for a stable softmax
        # index_select, not indexing: the same gather, several times faster on the CPU
        exps = torch.exp(scores - maxima.index_select(0, segments))  # (P,)
        totals = exps.new_zeros(num_segments).index_add(0, segments, exps)  # (N,)
        weights = exps / totals.index_select(0, segments)  # (P,), sums to 1 within each segment
        pooled = states.new_zeros(num_segments, states.size(1)).index_add(
            0, segments, weights[:, None] * states
        )  # (N, D)
        return pooled, weights


class HierarchicalAttentionNetwork(nn.Module):
    """Word encoder + word pooling, sentence encoder + sentence pooling, linear classifier.

    `pooling` "attention" is HN-ATT (the output carries both levels' weights); "mean" and "max" are the
    paper's HN-AVE and HN-MAX baselines.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        num_classes: int,
        config: ModelConfig,
        sparse_embedding: bool = False,
        pooling: str = "attention",
    ) -> None:
        super().__init__()
        # sparse_embedding: row-sparse gradients, for han.training.optim.LazyAdam (training only; weights are the same)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID, sparse=sparse_embedding)
        self.embedding.weight.requires_grad_(not config.freeze_embeddings)
        self.pooling = pooling
        # Modules are made in this order so that a seed initialises the same weights as before the other kinds
        # existed (the random draws follow creation order).
        attention = pooling == "attention"
        self.word_encoder = RecurrentEncoder(embedding_dim, config.word_hidden, config.cell, True, config.rnn)
        if attention:
            self.word_attention = AdditiveAttention(2 * config.word_hidden, config.attention_dim)
        self.sentence_encoder = RecurrentEncoder(
            2 * config.word_hidden, config.sentence_hidden, config.cell, True, config.rnn
        )
        if attention:
            self.sentence_attention = AdditiveAttention(2 * config.sentence_hidden, config.attention_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.word_dropout = config.word_dropout
        self.classifier = nn.Linear(2 * config.sentence_hidden, num_classes)
        # Wide and deep: n-gram scores added to the logits (their table is fitted on the training split before training)
        self.wide = (
            WideChannel(vocab_size, num_classes, config.linear_ngrams, config.linear_sublinear_tf, sparse_embedding)
            if config.wide
            else None
        )

    def load_embeddings(self, vectors: np.ndarray) -> None:
        """Initialise the embedding table from a (vocab_size, embedding_dim) array."""
        with torch.no_grad():
            self.embedding.weight.copy_(torch.from_numpy(vectors))

    def forward(
        self,
        word_ids: torch.Tensor,
        sentence_lengths: torch.Tensor,
        sentence_counts: torch.Tensor,
        wide_entries: TfidfEntries | None = None,
        wide_scores: torch.Tensor | None = None,
    ) -> HANOutput | ModelOutput:
        """Classify a batch of documents: the logits, with the word and sentence attention weights under attention.

        `wide_entries` (model.wide): the batch's TF-IDF entries when the caller has them already; `wide_scores`
        (B, C): the channel's class scores to add in place of its own (training's out-of-fold scores)."""
        # word_ids (N_s, W); sentence_lengths (N_s,); sentence_counts (B,), sum(sentence_counts) == N_s
        device = word_ids.device
        num_docs, num_sentences = sentence_counts.numel(), word_ids.size(0)
        words = pack_layout(sentence_lengths).to(device)  # sentences as sequences of words
        sentences = pack_layout(sentence_counts).to(device)  # documents as sequences of sentences
        first_sentence = torch.cumsum(sentence_counts, 0) - sentence_counts  # (B,)

        # Each distinct word of the batch is embedded (and projected into the GRU) once.
        packed_ids = word_ids.reshape(-1).index_select(0, words.sequence * word_ids.size(1) + words.position)  # (P_w,)
        distinct_words, word_rows = distinct_rows(packed_ids)  # (U,), rows of P_w
        embedded = self.embedding(distinct_words)  # (U, E)
        if self.training and self.word_dropout > 0:  # a word left out is left out at every position in the batch
            kept = torch.rand(embedded.size(0), 1, device=device) >= self.word_dropout  # (U, 1)
            embedded = embedded * kept / (1 - self.word_dropout)  # (U, E)
        word_states = self.word_encoder(embedded, words, word_rows)  # (P_w, 2H_w)
        if self.pooling == "attention":
            sentence_vectors, word_weights = self.word_attention(
                word_states, words.sequence, num_sentences
            )  # (N_s, 2H_w), (P_w,)
        else:
            sentence_vectors = pool_segments(word_states, words.sequence, num_sentences, self.pooling)  # (N_s, 2H_w)

        sentence_inputs = self.dropout(sentence_vectors).index_select(
            0, first_sentence[sentences.sequence] + sentences.position
        )  # (P_s, 2H_w)
        sentence_states = self.sentence_encoder(sentence_inputs, sentences)  # (P_s, 2H_s)
        wide_logits = wide_scores  # (B, C) when the caller has the channel's scores
        if wide_logits is None and self.wide is not None:
            wide_logits = self.wide(word_ids, sentence_lengths, sentence_counts, wide_entries)  # (B, C)
        if self.pooling != "attention":
            document_vectors = pool_segments(sentence_states, sentences.sequence, num_docs, self.pooling)  # (B, 2H_s)
            logits = self.classifier(self.dropout(document_vectors))  # (B, C)
            return ModelOutput(logits if wide_logits is None else logits + wide_logits)
        document_vectors, sentence_weights = self.sentence_attention(
            sentence_states, sentences.sequence, num_docs
        )  # (B, 2H_s), (P_s,)
        logits = self.classifier(self.dropout(document_vectors))  # (B, C)
        if wide_logits is not None:
            logits = logits + wide_logits

        return HANOutput(
            logits, word_weights, sentence_weights, words, sentences, sentence_counts, word_ids.size(1), wide_logits
        )
