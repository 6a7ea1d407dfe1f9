"""TF-IDF n-grams and a linear classifier (kind linear): the baseline every practitioner runs first.

The features are those of scikit-learn's `TfidfVectorizer(ngram_range=(1, n))`: counts of the word
n-grams of each document (sentences concatenated), n-grams seen in the training split only,
smoothed idf = ln((1 + N) / (1 + df)) + 1, each row L2-normalised. The weights come from
scikit-learn (han/fitting.py: LinearSVC or LogisticRegression); this module computes the features
from token ids and applies the weights, in torch, so it scores through the same batches, loop and
safetensors file as every other kind (no pickle).

An n-gram of token ids t_1..t_n is the integer key offset_n + (((t_1 V) + t_2) V + ...) with V the
vocabulary size, so a sorted key table and `searchsorted` map a batch's n-grams to feature columns.

Shapes: B documents, T real tokens in the batch, K n-gram occurrences, F features, C classes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from han.config import ModelConfig
from han.flat import flatten_documents
from han.model import ModelOutput


def ngram_offsets(vocab_size: int, max_n: int) -> list[int]:
    """The first key of each n-gram length 1..max_n: unigrams [0, V), bigrams [V, V + V^2), ..."""
    offsets, start = [], 0
    for n in range(1, max_n + 1):
        offsets.append(start)
        start += vocab_size**n
    return offsets


def ngram_keys(
    tokens: torch.Tensor, document: torch.Tensor, vocab_size: int, max_n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every n-gram (n = 1..max_n) of consecutive `tokens` within a document: (document (K,), key (K,))."""
    # tokens (T,), document (T,) non-decreasing
    documents, keys = [], []
    for n, offset in enumerate(ngram_offsets(vocab_size, max_n), start=1):
        count = tokens.numel() - n + 1
        if count <= 0:
            break
        same = document[:count] == document[n - 1 :]  # (T-n+1,) the n tokens lie in one document
        key = tokens[:count].clone()
        for k in range(1, n):
            key = key * vocab_size + tokens[k : k + count]
        documents.append(document[:count][same])
        keys.append(key[same] + offset)
    return torch.cat(documents), torch.cat(keys)


class TfidfLinearModel(nn.Module):
    """Logits = W . tfidf(document) + b, with the n-gram table, idf and weights fitted by scikit-learn."""

    def __init__(self, vocab_size: int, num_classes: int, config: ModelConfig) -> None:
        super().__init__()
        self.vocab_size, self.max_n, self.sublinear = vocab_size, config.linear_ngrams, config.linear_sublinear_tf
        self.num_classes = num_classes
        self.register_buffer("kept_tokens", torch.ones(vocab_size, dtype=torch.bool))  # (V,) tokens read
        self.register_buffer("feature_keys", torch.zeros(0, dtype=torch.int64))  # (F,) sorted n-gram keys
        self.register_buffer("idf", torch.zeros(0))  # (F,)
        self.weight = nn.Parameter(torch.zeros(num_classes, 0), requires_grad=False)  # (C, F)
        self.bias = nn.Parameter(torch.zeros(num_classes), requires_grad=False)  # (C,)

    def set_fitted(
        self, kept_tokens: torch.Tensor, keys: torch.Tensor, idf: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> None:
        """Install the fitted vocabulary of n-grams, their idf and the classifier's weights."""
        self.kept_tokens = kept_tokens.bool()
        self.feature_keys, self.idf = keys.long(), idf.float()
        self.weight = nn.Parameter(weight.float(), requires_grad=False)
        self.bias = nn.Parameter(bias.float(), requires_grad=False)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # The number of features is known only once fitted: take the saved tensors' shapes.
        for name in ("feature_keys", "idf"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        if prefix + "weight" in state_dict:
            self.weight = nn.Parameter(torch.empty_like(state_dict[prefix + "weight"]), requires_grad=False)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def features(
        self, word_ids: torch.Tensor, sentence_lengths: torch.Tensor, sentence_counts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The nonzero TF-IDF entries of a batch: (document (K',), feature (K',), value (K',)), rows L2-normalised."""
        docs = flatten_documents(word_ids, sentence_lengths, sentence_counts)
        keep = self.kept_tokens[docs.tokens]  # (T,)
        document, key = ngram_keys(docs.tokens[keep], docs.document[keep], self.vocab_size, self.max_n)  # (K,)
        return self.tfidf(document, key, docs.lengths.numel())

    def tfidf(
        self, document: torch.Tensor, key: torch.Tensor, num_docs: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """TF-IDF entries of n-gram occurrences (document, key), n-grams outside the table dropped."""
        num_features = self.feature_keys.numel()
        if num_features == 0:  # not fitted yet: no n-gram is known
            document, key = document[:0], key[:0]
        column = torch.searchsorted(self.feature_keys, key).clamp(max=max(num_features - 1, 0))  # (K,)
        known = self.feature_keys[column] == key  # (K,) the key is in the table
        pair, counts = torch.unique(document[known] * num_features + column[known], return_counts=True)  # (K',)
        row, column = pair // max(num_features, 1), pair % max(num_features, 1)
        tf = counts.to(self.idf.dtype)
        if self.sublinear:
            tf = 1 + torch.log(tf)
        value = tf * self.idf[column]  # (K',)
        norm = torch.zeros(num_docs, dtype=value.dtype, device=value.device).index_add(0, row, value * value)  # (B,)
        return row, column, value / torch.sqrt(norm[row])

    def forward(
        self, word_ids: torch.Tensor, sentence_lengths: torch.Tensor, sentence_counts: torch.Tensor
    ) -> ModelOutput:
        """Classify a batch of documents (a document with no known n-gram gets the bias alone)."""
        row, column, value = self.features(word_ids, sentence_lengths, sentence_counts)
        logits = self.bias.expand(sentence_counts.numel(), -1).clone()  # (B, C)
        logits.index_add_(0, row, value[:, None] * self.weight.t()[column])  # (B, C)
        return ModelOutput(logits)
