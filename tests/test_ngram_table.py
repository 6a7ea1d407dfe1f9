"""The n-gram table of the linear kind and the wide channel (han/training/fit_linear.py), counted a chunk of
documents at a time: the same table as a straightforward count over whole documents, and scikit-learn's."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch

from conftest import record_callers
from han.config import ModelConfig
from han.models.ngrams import TfidfFeatures, ngram_offsets
from han.store.encoded import EncodedSplit
from han.store.vocab import PAD, UNK, Vocab
from han.training.fit_linear import document_chunks, document_frequencies, ngram_table, split_ngrams, tfidf_rows

WORDS = [PAD, UNK, "good", "bad", "a", "film", "!", "plot", "x", "actors", "very", "it"]  # "a", "!", "x": not words


def corpus(documents: int = 60, seed: int = 0) -> EncodedSplit:
    """Documents of 1-4 sentences of 1-9 tokens drawn from a few ids, so n-grams repeat within and across them."""
    rng = np.random.default_rng(seed)
    sentence_lengths = [rng.integers(1, 10, rng.integers(1, 5)) for _ in range(documents)]
    lengths = np.concatenate(sentence_lengths)
    tokens = rng.integers(1, len(WORDS), int(lengths.sum()))
    return EncodedSplit(
        tokens=tokens.astype(np.int64),
        sentence_offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        document_offsets=np.r_[0, np.cumsum([len(s) for s in sentence_lengths])].astype(np.int64),
        labels=rng.integers(0, 2, documents).astype(np.int64),
    )


def reference_table(split: EncodedSplit, keep: set[int], max_n: int, min_df: int = 1) -> tuple[list[int], torch.Tensor]:
    """Each document's set of n-gram keys, counted one document at a time in Python: (sorted keys in at least
    `min_df` documents, idf)."""
    vocab_size, offsets = len(WORDS), ngram_offsets(len(WORDS), max_n)
    token_offsets = split.sentence_offsets[split.document_offsets]
    frequency: Counter[int] = Counter()
    for first, last in itertools.pairwise(token_offsets):
        tokens = [int(t) for t in split.tokens[first:last] if int(t) in keep]  # sentences joined, dropped tokens out
        seen = set()
        for n in range(1, max_n + 1):
            for start in range(len(tokens) - n + 1):
                key = 0
                for token in tokens[start : start + n]:
                    key = key * vocab_size + token
                seen.add(offsets[n - 1] + key)
        frequency.update(seen)
    keys = sorted(key for key, documents in frequency.items() if documents >= min_df)
    df = torch.tensor([frequency[k] for k in keys], dtype=torch.float64)
    return keys, torch.log((1 + len(split)) / (1 + df)) + 1


@pytest.mark.parametrize("min_df", [1, 2, 3])
@pytest.mark.parametrize("tokens", ["all", "words"])
@pytest.mark.parametrize("max_n", [1, 2, 3])
def test_the_chunked_table_is_the_count_over_whole_documents(monkeypatch, tokens, max_n, min_df):
    split = corpus()
    # chunks of ~20 tokens: many chunks, and merges of the running table with several pending ones
    monkeypatch.setattr("han.training.fit_linear.CHUNK_TOKENS", 20)
    config = ModelConfig(linear_ngrams=max_n, linear_tokens=tokens, linear_min_df=min_df)
    table = ngram_table(split, Vocab(WORDS), config)
    keep = {i for i, word in enumerate(WORDS) if tokens == "all" or word == UNK or (len(word) >= 2 and word.isalnum())}
    keys, idf = reference_table(split, keep, max_n, min_df)
    assert table.keys.tolist() == keys
    if min_df > 1 and max_n == 3:  # the rare trigrams are gone
        assert len(keys) < len(reference_table(split, keep, max_n)[0])
    assert torch.equal(table.idf, idf)  # every n-gram of the training split in min_df documents: no cap on features
    assert set(torch.nonzero(table.keep).flatten().tolist()) == keep


@pytest.mark.parametrize("max_tokens", [1, 7, 50, 10**9])
def test_document_frequencies_do_not_depend_on_the_chunk_size(max_tokens):
    split, keep = corpus(seed=1), torch.ones(len(WORDS), dtype=torch.bool)
    keys, frequency = document_frequencies(split, keep, len(WORDS), 2, max_tokens)
    whole_keys, whole_frequency = document_frequencies(split, keep, len(WORDS), 2, 10**9)
    assert np.array_equal(keys, whole_keys) and np.array_equal(frequency, whole_frequency)
    chunks = list(document_chunks(split, max_tokens))
    assert chunks[0][0] == 0 and chunks[-1][1] == len(split)
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in itertools.pairwise(chunks))


@pytest.mark.parametrize("min_df", [1, 2])
def test_the_table_is_scikit_learns_tfidf_vocabulary_and_idf(min_df):
    from sklearn.feature_extraction.text import TfidfVectorizer

    split = corpus(seed=2)
    table = ngram_table(split, Vocab(WORDS), ModelConfig(linear_ngrams=2, linear_min_df=min_df))
    token_offsets = split.sentence_offsets[split.document_offsets]
    texts = [" ".join(f"w{t}" for t in split.tokens[a:b]) for a, b in itertools.pairwise(token_offsets)]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"\S+", lowercase=False, min_df=min_df).fit(texts)
    vocab_size = len(WORDS)

    def ngram(key: int) -> str:
        n, key = (1, key) if key < vocab_size else (2, key - vocab_size)
        return " ".join(f"w{t}" for t in ([key] if n == 1 else [key // vocab_size, key % vocab_size]))

    ours = {ngram(k): float(i) for k, i in zip(table.keys.tolist(), table.idf.tolist(), strict=True)}
    theirs = {name: float(vectorizer.idf_[column]) for name, column in vectorizer.vocabulary_.items()}
    assert ours.keys() == theirs.keys()
    assert all(abs(ours[name] - theirs[name]) < 1e-12 for name in ours)


def test_tfidf_rows_counted_in_chunks_are_those_of_the_whole_split(monkeypatch):
    split = corpus(seed=3)
    table = ngram_table(split, Vocab(WORDS), ModelConfig(linear_ngrams=2))
    features = TfidfFeatures(len(WORDS), 2, sublinear_tf=True)
    features.set_table(table.keep, table.keys, table.idf)
    whole = tfidf_rows(features, split)
    monkeypatch.setattr("han.training.fit_linear.CHUNK_TOKENS", 15)
    chunked = tfidf_rows(features, split)
    document, key = split_ngrams(split, table.keep, len(WORDS), 2)
    row, column, value = features.tfidf(document, key, len(split))
    assert np.array_equal(whole.indptr, chunked.indptr) and np.array_equal(whole.indices, chunked.indices)
    assert np.array_equal(whole.data, chunked.data) and np.array_equal(whole.data, value.numpy())
    assert np.array_equal(whole.indices, column.numpy())
    assert np.array_equal(np.diff(whole.indptr), np.bincount(row.numpy(), minlength=len(split)))


def test_the_table_and_rows_counted_side_by_side_are_those_counted_here(monkeypatch, tmp_path):
    """With several chunks and cores, the chunks are counted in forked workers, one a core: the same numbers."""
    import os

    from han.training import fit_linear

    log = tmp_path / "counted_by.txt"
    record_callers(monkeypatch, fit_linear, "split_ngrams", log)
    monkeypatch.setattr(fit_linear, "CHUNK_TOKENS", 40)
    split, config = corpus(seed=4), ModelConfig(linear_ngrams=2, linear_min_df=2)
    counted = {}
    for cores in (1, 2):
        monkeypatch.setattr("han.util.forked.cores_per_process", lambda cores=cores: cores)
        log.unlink(missing_ok=True)
        table = ngram_table(split, Vocab(WORDS), config)
        features = TfidfFeatures(len(WORDS), 2, sublinear_tf=False)
        features.set_table(table.keep, table.keys, table.idf)
        counted[cores] = (table, tfidf_rows(features, split))
        pids = log.read_text().split()
        assert len(pids) == 2 * len(list(document_chunks(split, 40))) > 4  # each chunk once for each
        assert (str(os.getpid()) in pids) == (cores == 1)  # two cores: every chunk in a worker
    (table_here, rows_here), (table_forked, rows_forked) = counted[1], counted[2]
    assert torch.equal(table_here.keys, table_forked.keys) and torch.equal(table_here.idf, table_forked.idf)
    assert np.array_equal(rows_here.indptr, rows_forked.indptr)
    assert np.array_equal(rows_here.indices, rows_forked.indices) and np.array_equal(rows_here.data, rows_forked.data)


def test_a_min_df_no_ngram_reaches_is_a_config_error():
    from han.errors import ConfigError

    split = corpus()
    with pytest.raises(ConfigError, match=r"model.linear_min_df 100000: no n-gram is in that many of the \d+ training"):
        ngram_table(split, Vocab(WORDS), ModelConfig(linear_min_df=100_000))
