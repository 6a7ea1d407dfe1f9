"""Flat document models: one network over each document's whole (capped) token sequence.

They take the same batch as the hierarchical network (real sentences, `word_ids` (N_s, W), sentence
lengths and counts) and read each document as its sentences' tokens concatenated, so training,
scoring and the run directory are the same for every kind.

- `FlatRecurrentNetwork` (kind rnn): a GRU, LSTM or Elman RNN, one or both directions, pooled by the
  last state, max over time or additive attention. Packed, so padding never enters it. Its attention
  over tokens is returned as sentence and word weights (`as_two_levels`), so the reports show it.
- `ConvolutionalNetwork` (kind cnn): Kim (2014), filters of several widths, ReLU, max over time.
- `MeanEmbeddingNetwork` (kind mean): the average word vector and a linear layer (fastText-style).

Shapes: B documents, N_s sentences in the batch, W words per sentence (max), T real tokens in the
batch, L tokens of the longest document, E embedding size, H hidden size, C classes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from han.config import ModelConfig
from han.models.hierarchical import PAD_ID, AdditiveAttention, HANOutput, ModelOutput, RecurrentEncoder, pool_segments
from han.models.packed import distinct_rows, flatten_documents, pack_layout


def as_two_levels(
    logits: torch.Tensor,
    token_weights: torch.Tensor,
    word_ids: torch.Tensor,
    sentence_lengths: torch.Tensor,
    sentence_counts: torch.Tensor,
) -> HANOutput:
    """Document-level attention over tokens, shown as the hierarchical network shows its attention.

    A sentence's weight is the sum of its tokens' weights (so a document's sentence weights sum to 1) and
    a word's weight is its share of its sentence's weight: sentence weight x word weight = the token's
    weight, exactly. The reports then read this output like HN-ATT's.
    """
    # token_weights (T,) in flat order, each document's summing to 1
    device = word_ids.device
    num_sentences = sentence_lengths.numel()
    sentence_of_token = torch.repeat_interleave(torch.arange(num_sentences, device=device), sentence_lengths)  # (T,)
    sentence_totals = token_weights.new_zeros(num_sentences).index_add(0, sentence_of_token, token_weights)  # (N_s,)
    total = sentence_totals[sentence_of_token]  # (T,)
    uniform = 1.0 / sentence_lengths[sentence_of_token].to(token_weights.dtype)  # a sentence whose weight underflowed
    within = torch.where(total > 0, token_weights / total.clamp_min(torch.finfo(total.dtype).tiny), uniform)  # (T,)
    words = pack_layout(sentence_lengths).to(device)  # sentences as sequences of words
    sentences = pack_layout(sentence_counts).to(device)  # documents as sequences of sentences
    sentence_start = torch.cumsum(sentence_lengths, 0) - sentence_lengths  # (N_s,)
    first_sentence = torch.cumsum(sentence_counts, 0) - sentence_counts  # (B,)
    word_weights = within[sentence_start[words.sequence] + words.position]  # (P_w,)
    sentence_weights = sentence_totals[first_sentence[sentences.sequence] + sentences.position]  # (P_s,)
    return HANOutput(logits, word_weights, sentence_weights, words, sentences, sentence_counts, word_ids.size(1))


class _Embedded(nn.Module):
    """The embedding table every flat network starts with (same name and init as the hierarchical one)."""

    def __init__(self, vocab_size: int, embedding_dim: int, config: ModelConfig, sparse_embedding: bool) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID, sparse=sparse_embedding)
        self.embedding.weight.requires_grad_(not config.freeze_embeddings)
        self.dropout = nn.Dropout(config.dropout)

    def load_embeddings(self, vectors: np.ndarray) -> None:
        """Initialise the embedding table from a (vocab_size, embedding_dim) array."""
        with torch.no_grad():
            self.embedding.weight.copy_(torch.from_numpy(vectors))


class FlatRecurrentNetwork(_Embedded):
    """A recurrent network over the whole document, pooled (last state, max or attention), then linear."""

    def __init__(
        self, vocab_size: int, embedding_dim: int, num_classes: int, config: ModelConfig, sparse_embedding: bool = False
    ) -> None:
        super().__init__(vocab_size, embedding_dim, config, sparse_embedding)
        directions = 2 if config.bidirectional else 1
        self.bidirectional, self.pooling = config.bidirectional, config.pooling
        self.encoder = RecurrentEncoder(
            embedding_dim, config.word_hidden, config.cell, config.bidirectional, config.rnn
        )
        if config.pooling == "attention":
            self.attention = AdditiveAttention(directions * config.word_hidden, config.attention_dim)
        self.classifier = nn.Linear(directions * config.word_hidden, num_classes)

    def forward(
        self, word_ids: torch.Tensor, sentence_lengths: torch.Tensor, sentence_counts: torch.Tensor
    ) -> HANOutput | ModelOutput:
        """Classify a batch of documents; under attention pooling, with the attention as two levels (`as_two_levels`)."""
        docs = flatten_documents(word_ids, sentence_lengths, sentence_counts)
        layout = pack_layout(docs.lengths).to(word_ids.device)  # documents as sequences of tokens
        starts = torch.cumsum(docs.lengths, 0) - docs.lengths  # (B,)
        flat_index = starts[layout.sequence] + layout.position  # (P,) packed position -> token
        distinct, rows = distinct_rows(docs.tokens[flat_index])  # (U,), rows of P
        states = self.encoder(self.embedding(distinct), layout, rows)  # (P, D*H)
        num_docs = docs.lengths.numel()
        if self.pooling == "attention":
            document_vectors, token_weights = self.attention(states, layout.sequence, num_docs)  # (B, D*H), (P,)
            logits = self.classifier(self.dropout(document_vectors))  # (B, C)
            flat_weights = token_weights.new_zeros(docs.tokens.numel())
            flat_weights[flat_index] = token_weights  # (T,) in flat (sentence after sentence) order
            return as_two_levels(logits, flat_weights, word_ids, sentence_lengths, sentence_counts)
        elif self.pooling == "max":
            document_vectors = pool_segments(states, layout.sequence, num_docs, "max")  # (B, D*H)
        else:  # last: the forward state at each document's end, the backward state at its start
            hidden = self.classifier.in_features // (2 if self.bidirectional else 1)
            at_end = layout.position == docs.lengths[layout.sequence] - 1  # (P,)
            document_vectors = states.new_zeros(num_docs, states.size(1))  # (B, D*H)
            document_vectors[layout.sequence[at_end], :hidden] = states[at_end, :hidden]
            if self.bidirectional:
                at_start = layout.position == 0  # (P,)
                document_vectors[layout.sequence[at_start], hidden:] = states[at_start, hidden:]
        return ModelOutput(self.classifier(self.dropout(document_vectors)))  # (B, C)


class ConvolutionalNetwork(_Embedded):
    """Kim (2014): convolutions of several widths over the word vectors, ReLU, max over time, dropout, linear."""

    def __init__(
        self, vocab_size: int, embedding_dim: int, num_classes: int, config: ModelConfig, sparse_embedding: bool = False
    ) -> None:
        super().__init__(vocab_size, embedding_dim, config, sparse_embedding)
        self.widths = list(config.cnn_widths)
        self.convolutions = nn.ModuleList(nn.Conv1d(embedding_dim, config.cnn_maps, width) for width in self.widths)
        self.classifier = nn.Linear(len(self.widths) * config.cnn_maps, num_classes)

    def forward(
        self, word_ids: torch.Tensor, sentence_lengths: torch.Tensor, sentence_counts: torch.Tensor
    ) -> ModelOutput:
        """Classify a batch of documents."""
        docs = flatten_documents(word_ids, sentence_lengths, sentence_counts)
        widest = max(self.widths)
        # A document shorter than the widest filter is read padded to that width (the padding vector is
        # zero), so every filter has at least one window and no window ever depends on the batch.
        grid = docs.padded(widest, PAD_ID)  # (B, L')
        readable = torch.clamp(docs.lengths, min=widest)  # (B,) positions a window may cover
        embedded = self.embedding(grid).transpose(1, 2)  # (B, E, L')
        pooled = []
        for width, convolution in zip(self.widths, self.convolutions, strict=True):
            maps = torch.relu(convolution(embedded))  # (B, M, L' - width + 1)
            starts = torch.arange(maps.size(2), device=maps.device)  # window start positions
            inside = starts[None, :] + width <= readable[:, None]  # (B, L' - width + 1) windows within the document
            maps = maps.masked_fill(~inside[:, None, :], float("-inf"))
            pooled.append(maps.max(dim=2).values)  # (B, M)
        return ModelOutput(self.classifier(self.dropout(torch.cat(pooled, dim=1))))  # (B, C)


class MeanEmbeddingNetwork(_Embedded):
    """The average of a document's word vectors, then a linear layer (fastText's classifier, unigrams)."""

    def __init__(
        self, vocab_size: int, embedding_dim: int, num_classes: int, config: ModelConfig, sparse_embedding: bool = False
    ) -> None:
        super().__init__(vocab_size, embedding_dim, config, sparse_embedding)
        self.classifier = nn.Linear(embedding_dim, num_classes)

    def forward(
        self, word_ids: torch.Tensor, sentence_lengths: torch.Tensor, sentence_counts: torch.Tensor
    ) -> ModelOutput:
        """Classify a batch of documents."""
        docs = flatten_documents(word_ids, sentence_lengths, sentence_counts)
        document_vectors = pool_segments(
            self.embedding(docs.tokens), docs.document, docs.lengths.numel(), "mean"
        )  # (B, E)
        return ModelOutput(self.classifier(self.dropout(document_vectors)))  # (B, C)
