"""TF-IDF n-grams and a linear classifier (kind linear): the baseline every practitioner runs first.

The features are scikit-learn's `TfidfVectorizer(ngram_range=(1, n))`, computed from token ids by
han/models/ngrams.py (the wide channel of `model.wide` reads the same ones). The weights come from
scikit-learn (han/training/fit_linear.py: LinearSVC or LogisticRegression); this module computes the features
from token ids and applies the weights, in torch, so it scores through the same batches, loop and
safetensors file as every other kind (no pickle).

Shapes: B documents, T real tokens in the batch, K n-gram occurrences, F features, C classes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from han.config import ModelConfig
from han.models.hierarchical import ModelOutput
from han.models.ngrams import TfidfFeatures


class TfidfLinearModel(TfidfFeatures):
    """Logits = W . tfidf(document) + b, with the n-gram table, idf and weights fitted by scikit-learn."""

    def __init__(self, vocab_size: int, num_classes: int, config: ModelConfig) -> None:
        super().__init__(vocab_size, config.linear_ngrams, config.linear_sublinear_tf)
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.zeros(num_classes, 0), requires_grad=False)  # (C, F)
        self.bias = nn.Parameter(torch.zeros(num_classes), requires_grad=False)  # (C,)

    def set_fitted(
        self, kept_tokens: torch.Tensor, keys: torch.Tensor, idf: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
    ) -> None:
        """Install the fitted vocabulary of n-grams, their idf and the classifier's weights."""
        self.set_table(kept_tokens, keys, idf)
        self.weight = nn.Parameter(weight.float(), requires_grad=False)
        self.bias = nn.Parameter(bias.float(), requires_grad=False)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # The number of features is known only once fitted: take the saved weight's shape (the table's: base class).
        if prefix + "weight" in state_dict:
            self.weight = nn.Parameter(torch.empty_like(state_dict[prefix + "weight"]), requires_grad=False)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(
        self, word_ids: torch.Tensor, sentence_lengths: torch.Tensor, sentence_counts: torch.Tensor
    ) -> ModelOutput:
        """Classify a batch of documents (a document with no known n-gram gets the bias alone)."""
        row, column, value = self.features(word_ids, sentence_lengths, sentence_counts)
        logits = self.bias.expand(sentence_counts.numel(), -1).clone()  # (B, C)
        logits.index_add_(0, row, value[:, None] * self.weight.t()[column])  # (B, C)
        return ModelOutput(logits)
