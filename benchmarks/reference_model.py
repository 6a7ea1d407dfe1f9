"""The straightforward HAN the fast path is measured against: nn.GRU over padded real sentences.

This is how a HAN is usually written: only real sentences (no empty padding sentences), each padded
to the longest sentence of the batch and fed to `nn.GRU(batch_first=True)`; sentence vectors padded
to the longest document; masked softmax attention; dense Adam. (Without packing, the reverse
direction reads padding, so its outputs depend on the batch: it is a throughput baseline only.)
"""

from __future__ import annotations

import torch
from torch import nn

from han.text.batching import Batch


class MaskedAttention(nn.Module):
    def __init__(self, input_size: int, attention_size: int) -> None:
        super().__init__()
        self.projection = nn.Linear(input_size, attention_size)
        self.context = nn.Parameter(torch.empty(attention_size).uniform_(-0.1, 0.1))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # states (N, L, D); mask (N, L)
        scores = (torch.tanh(self.projection(states)) @ self.context).masked_fill(~mask, float("-inf"))  # (N, L)
        return torch.bmm(torch.softmax(scores, dim=1).unsqueeze(1), states).squeeze(1)  # (N, D)


class PaddedHAN(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int, hidden: int, attention: int, num_classes: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.word_gru = nn.GRU(embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.word_attention = MaskedAttention(2 * hidden, attention)
        self.sentence_gru = nn.GRU(2 * hidden, hidden, batch_first=True, bidirectional=True)
        self.sentence_attention = MaskedAttention(2 * hidden, attention)
        self.classifier = nn.Linear(2 * hidden, num_classes)

    def forward(self, batch: Batch) -> torch.Tensor:
        word_ids, counts = batch.word_ids, batch.sentence_counts
        word_mask = torch.arange(word_ids.size(1))[None, :] < batch.sentence_lengths[:, None]  # (N_s, W)
        word_states, _ = self.word_gru(self.embedding(word_ids))  # (N_s, W, 2H)
        sentence_vectors = self.word_attention(word_states, word_mask)  # (N_s, 2H)
        sentence_mask = torch.arange(int(counts.max()))[None, :] < counts[:, None]  # (B, S)
        documents = sentence_vectors.new_zeros(counts.numel(), int(counts.max()), sentence_vectors.size(1))
        documents[sentence_mask] = sentence_vectors  # (B, S, 2H)
        sentence_states, _ = self.sentence_gru(documents)  # (B, S, 2H)
        return self.classifier(self.sentence_attention(sentence_states, sentence_mask))  # (B, C)
