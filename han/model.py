"""The hierarchical attention network of Yang et al. (NAACL 2016), top to bottom.

words --embedding--> word BiGRU --attention--> sentence vectors
sentence vectors --> sentence BiGRU --attention--> document vector --> linear --> logits

Input is a batch of real sentences only (no empty padding sentences): `word_ids` (N_s, W) with
each sentence's length, and the number of sentences of each of the B documents, in order.
The GRUs run on packed sequences, so padding never enters a recurrence, and attention masks
padding to exactly zero weight: a document's output does not depend on its batch.

Shapes: B documents, S sentences per document (max), N_s sentences in the batch, W words per
sentence (max), E embedding size, H hidden size per direction, A attention size, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from han.config import ModelConfig
from han.vocab import PAD_ID


@dataclass
class HANOutput:
    """Logits and attention weights (zero on padding) of a batch of documents."""

    logits: torch.Tensor  # (B, C)
    word_attention: torch.Tensor  # (B, S, W); each real sentence's weights sum to 1
    sentence_attention: torch.Tensor  # (B, S); each document's weights sum to 1


class BiGRUEncoder(nn.Module):
    """A bidirectional GRU over padded sequences, run packed so padding is never read."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True, bidirectional=True)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # inputs (N, L, D), lengths (N,) >= 1
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        states, _ = self.gru(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=inputs.size(1))
        return states  # (N, L, 2H), zero beyond each length


class AdditiveAttention(nn.Module):
    """Attention against a learned context vector: a = softmax(c . tanh(W h + b)) over unmasked positions."""

    def __init__(self, input_size: int, attention_size: int) -> None:
        super().__init__()
        self.projection = nn.Linear(input_size, attention_size)
        self.context = nn.Parameter(torch.empty(attention_size).uniform_(-0.1, 0.1))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # states (N, L, D); mask (N, L) bool, True on real positions, at least one per row
        keys = torch.tanh(self.projection(states))  # (N, L, A)
        scores = keys @ self.context  # (N, L)
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: padding gets exactly zero weight
        weights = torch.softmax(scores, dim=1)  # (N, L)
        pooled = torch.bmm(weights.unsqueeze(1), states).squeeze(1)  # (N, D)
        return pooled, weights


class HierarchicalAttentionNetwork(nn.Module):
    """Word encoder + word attention, sentence encoder + sentence attention, linear classifier."""

    def __init__(self, vocab_size: int, embedding_dim: int, num_classes: int, config: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.embedding.weight.requires_grad_(not config.freeze_embeddings)
        self.word_encoder = BiGRUEncoder(embedding_dim, config.word_hidden)
        self.word_attention = AdditiveAttention(2 * config.word_hidden, config.attention_dim)
        self.sentence_encoder = BiGRUEncoder(2 * config.word_hidden, config.sentence_hidden)
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
        # word_ids (N_s, W); sentence_lengths (N_s,); sentence_counts (B,), sum(sentence_counts) == N_s
        num_docs, max_words = sentence_counts.numel(), word_ids.size(1)
        max_sentences = int(sentence_counts.max())
        word_mask = torch.arange(max_words, device=word_ids.device) < sentence_lengths[:, None]  # (N_s, W)
        sentence_mask = torch.arange(max_sentences, device=word_ids.device) < sentence_counts[:, None]  # (B, S)

        embedded = self.embedding(word_ids)  # (N_s, W, E)
        word_states = self.word_encoder(embedded, sentence_lengths)  # (N_s, W, 2H_w)
        sentence_vectors, word_weights = self.word_attention(word_states, word_mask)  # (N_s, 2H_w), (N_s, W)

        # Sentences arrive document by document, so a row-major boolean scatter places them.
        documents = sentence_vectors.new_zeros(num_docs, max_sentences, sentence_vectors.size(1))  # (B, S, 2H_w)
        documents[sentence_mask] = self.dropout(sentence_vectors)
        sentence_states = self.sentence_encoder(documents, sentence_counts)  # (B, S, 2H_s)
        document_vectors, sentence_weights = self.sentence_attention(
            sentence_states, sentence_mask
        )  # (B, 2H_s), (B, S)
        logits = self.classifier(self.dropout(document_vectors))  # (B, C)

        word_attention = word_weights.new_zeros(num_docs, max_sentences, max_words)  # (B, S, W)
        word_attention[sentence_mask] = word_weights
        return HANOutput(logits=logits, word_attention=word_attention, sentence_attention=sentence_weights)


def build_model(
    config: ModelConfig, vocab_size: int, embedding_dim: int, num_classes: int
) -> HierarchicalAttentionNetwork:
    """A freshly initialised network of the configured sizes."""
    return HierarchicalAttentionNetwork(vocab_size, embedding_dim, num_classes, config)
