"""TF-IDF of word n-grams computed from token ids, in torch: the bag of n-grams of the linear kind and of the
wide channel beside the HAN's document vector (`model.wide`).

The features are those of scikit-learn's `TfidfVectorizer(ngram_range=(1, n))`: counts of the word
n-grams of each document (sentences concatenated), n-grams seen in the training split only,
smoothed idf = ln((1 + N) / (1 + df)) + 1, each row L2-normalised. The table (which n-grams, their idf)
is fitted on the training split (han/training/fit_linear.py) and saved with the weights, so prediction reads a
document exactly as training did.

An n-gram of token ids t_1..t_n is the integer key offset_n + (((t_1 V) + t_2) V + ...) with V the
vocabulary size, so a sorted key table and `searchsorted` map a batch's n-grams to feature columns.

Shapes: B documents, T real tokens in the batch, K n-gram occurrences, F features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from han.models.packed import flatten_documents

TfidfEntries = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (document (K',), feature (K',), value (K',))


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
    if not keys:  # no token at all
        return document[:0], tokens[:0]
    return torch.cat(documents), torch.cat(keys)


class TfidfFeatures(nn.Module):
    """The TF-IDF rows of a batch of documents, from a fitted table of n-grams and their idf.

    Until `set_table` is called no n-gram is known. Loading saved weights takes the table's size from them.
    """

    def __init__(self, vocab_size: int, max_n: int, sublinear_tf: bool) -> None:
        super().__init__()
        self.vocab_size, self.max_n, self.sublinear = vocab_size, max_n, sublinear_tf
        self.register_buffer("kept_tokens", torch.ones(vocab_size, dtype=torch.bool))  # (V,) tokens read
        self.register_buffer("feature_keys", torch.zeros(0, dtype=torch.int64))  # (F,) sorted n-gram keys
        self.register_buffer("idf", torch.zeros(0))  # (F,)

    @property
    def num_features(self) -> int:
        return int(self.feature_keys.numel())

    def set_table(self, kept_tokens: torch.Tensor, keys: torch.Tensor, idf: torch.Tensor) -> None:
        """Install the fitted n-grams (sorted keys), their idf and which vocabulary ids are read."""
        self.kept_tokens = kept_tokens.bool()
        self.feature_keys, self.idf = keys.long(), idf.float()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # The number of features is known only once fitted: take the saved tensors' shapes.
        for name in ("feature_keys", "idf"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def features(
        self, word_ids: torch.Tensor, sentence_lengths: torch.Tensor, sentence_counts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The nonzero TF-IDF entries of a batch: (document (K',), feature (K',), value (K',)), rows L2-normalised,
        ordered by document."""
        docs = flatten_documents(word_ids, sentence_lengths, sentence_counts)
        keep = self.kept_tokens.index_select(0, docs.tokens)  # (T,)
        document, key = ngram_keys(docs.tokens[keep], docs.document[keep], self.vocab_size, self.max_n)  # (K,)
        return self.tfidf(document, key, docs.lengths.numel())

    def tfidf(
        self, document: torch.Tensor, key: torch.Tensor, num_docs: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """TF-IDF entries of n-gram occurrences (document, key), n-grams outside the table dropped."""
        row, column, counts = feature_counts(document, key, self.feature_keys)  # (K',) each
        tf = counts.to(self.idf.dtype)
        if self.sublinear:
            tf = 1 + torch.log(tf)
        value = tf * self.idf[column]  # (K',)
        norm = torch.zeros(num_docs, dtype=value.dtype, device=value.device).index_add(0, row, value * value)  # (B,)
        return row, column, value / torch.sqrt(norm[row])


def feature_counts(
    document: torch.Tensor, key: torch.Tensor, feature_keys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(document, column, count) of each distinct (document, n-gram in the table) pair of the occurrences
    (document, key), ordered by document, then column."""
    if feature_keys.numel() == 0:  # not fitted yet: no n-gram is known
        empty = key[:0]
        return empty, empty, empty
    if key.device.type == "cpu":
        return _feature_counts_numpy(document, key, feature_keys)
    return _feature_counts_torch(document, key, feature_keys)


def _feature_counts_torch(
    document: torch.Tensor, key: torch.Tensor, feature_keys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    num_features = feature_keys.numel()
    column = torch.searchsorted(feature_keys, key).clamp(max=num_features - 1)  # (K,)
    known = feature_keys[column] == key  # (K,) the key is in the table
    pair, counts = torch.unique(document[known] * num_features + column[known], return_counts=True)  # (K',)
    return pair // num_features, pair % num_features, counts


def _feature_counts_numpy(
    document: torch.Tensor, key: torch.Tensor, feature_keys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # The same as the torch path in half the time on the CPU: numpy's sorts are several times faster than
    # torch's, and a binary search of keys in sorted order walks the table in order.
    num_features = feature_keys.numel()
    keys, documents, table = key.numpy(), document.numpy(), feature_keys.numpy()
    if keys.size == 0:
        return document[:0], key[:0], key[:0]
    key_space = max(int(table[-1]), int(keys.max())) + 1  # every key is below it
    num_docs = int(documents.max()) + 1
    if num_docs * key_space < 2**62:
        # One sort: the distinct (document, key) pairs and their counts, then only those looked up in the table
        # (in document, then key order, so the columns come out sorted within each document).
        pair, counts = np.unique(documents * key_space + keys, return_counts=True)  # (K'',)
        pair_keys = pair % key_space
        found = np.searchsorted(table, pair_keys).clip(max=num_features - 1)  # (K'',)
        known = table[found] == pair_keys
        return (
            torch.from_numpy(pair[known] // key_space),
            torch.from_numpy(found[known]),
            torch.from_numpy(counts[known]),
        )
    order = np.argsort(keys)  # (K,)
    sorted_keys = keys[order]
    found = np.searchsorted(table, sorted_keys).clip(max=num_features - 1)  # (K,)
    in_table = table[found] == sorted_keys  # (K,)
    pair, counts = np.unique(documents[order][in_table] * num_features + found[in_table], return_counts=True)
    pair_t = torch.from_numpy(pair)  # (K',)
    return pair_t // num_features, pair_t % num_features, torch.from_numpy(counts)


class WideChannel(TfidfFeatures):
    """Wide-and-deep's wide part: class scores linear in a document's TF-IDF n-grams, learnt with the network.

    The weights are an `nn.EmbeddingBag` (F, C) summing each document's features weighted by their TF-IDF
    values: with `sparse` its gradient touches only the rows of the n-grams a batch holds (han.training.optim.LazyAdam).
    Learnt, they start at zero, so the network begins as the HAN alone; fitted (`hold_weights`), they are a
    linear classifier's and stay fixed.
    """

    def __init__(self, vocab_size: int, num_classes: int, max_n: int, sublinear_tf: bool, sparse: bool = False) -> None:
        super().__init__(vocab_size, max_n, sublinear_tf)
        self.num_classes, self.sparse = num_classes, sparse
        self.scores = self._bag(0)

    def _bag(self, num_features: int) -> nn.EmbeddingBag:
        bag = nn.EmbeddingBag(max(num_features, 1), self.num_classes, mode="sum", sparse=self.sparse)
        nn.init.zeros_(bag.weight)
        return bag

    def set_table(self, kept_tokens: torch.Tensor, keys: torch.Tensor, idf: torch.Tensor) -> None:
        """Install the fitted table; the per-n-gram class weights restart at zero."""
        super().set_table(kept_tokens, keys, idf)
        self.scores = self._bag(self.num_features).to(self.idf.device)

    def hold_weights(self, weight: torch.Tensor) -> None:
        """Install fitted class weights (C, F) of the table's n-grams and keep them out of training."""
        with torch.no_grad():
            self.scores.weight.copy_(weight.T)
        self.scores.weight.requires_grad_(False)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        saved = state_dict.get(prefix + "scores.weight")
        if saved is not None and saved.shape != self.scores.weight.shape:  # same shape: keep the optimizer's tensor
            self.scores = self._bag(saved.size(0)).to(self.scores.weight.device)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(
        self,
        word_ids: torch.Tensor,
        sentence_lengths: torch.Tensor,
        sentence_counts: torch.Tensor,
        entries: TfidfEntries | None = None,
    ) -> torch.Tensor:
        """(B, C) class scores of a batch (zero for a document with no known n-gram).

        `entries`: the batch's TF-IDF entries, as `features` gives them, when the caller has them already
        (training reads each document's once, not once an epoch); else they are computed here."""
        if entries is None:
            entries = self.features(word_ids, sentence_lengths, sentence_counts)
        row, column, value = entries  # (K',) each, by document
        num_docs = sentence_counts.numel()
        offsets = torch.searchsorted(row, torch.arange(num_docs, device=row.device))  # (B,) each document's first entry
        return self.scores(column, offsets, per_sample_weights=value.to(self.scores.weight.dtype))  # (B, C)
