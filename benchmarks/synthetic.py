"""Seeded synthetic corpora shaped like IMDB reviews, as token ids or as text.

Sentences per document and words per sentence are log-normal (heavy tailed: mean ~15 sentences of
~18 words, p99 ~60 of ~60); word ids follow a Zipf law over the vocabulary, as real text does.
"""

from __future__ import annotations

import numpy as np

from han.store.encoded import EncodedSplit


def zipf_cdf(vocab_size: int, exponent: float = 1.07) -> np.ndarray:
    weights = 1.0 / np.arange(1, vocab_size + 1) ** exponent
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    return cdf


def lognormal_counts(rng: np.random.Generator, mean: float, sigma: float, size: int, cap: int) -> np.ndarray:
    mu = np.log(mean) - sigma**2 / 2  # so that the mean is `mean`
    return np.clip(np.round(rng.lognormal(mu, sigma, size=size)), 1, cap).astype(np.int64)


def id_documents(
    num_docs: int,
    vocab_size: int = 50_000,
    seed: int = 0,
    mean_sentences: float = 15.0,
    mean_words: float = 18.0,
    length_scale: float = 1.0,
    max_sentences: int = 150,
    max_words: int = 120,
) -> list[list[np.ndarray]]:
    """Documents as lists of sentences of token ids in [2, vocab_size) (0 = padding, 1 = unknown)."""
    rng = np.random.default_rng(seed)
    cdf = zipf_cdf(vocab_size - 2)
    documents = []
    sentence_counts = lognormal_counts(
        rng, mean_sentences * length_scale, 0.7, num_docs, int(max_sentences * length_scale)
    )
    for count in sentence_counts:
        lengths = lognormal_counts(rng, mean_words, 0.6, int(count), max_words)
        ids = np.searchsorted(cdf, rng.random(int(lengths.sum()))) + 2
        documents.append(np.split(ids, np.cumsum(lengths)[:-1]))
    return documents


def encoded_split(documents: list[list[np.ndarray]], num_classes: int = 5, seed: int = 0) -> EncodedSplit:
    labels = np.random.default_rng(seed).integers(0, num_classes, size=len(documents))
    return EncodedSplit.from_documents(documents, labels.tolist())


def words_for(vocab_size: int, seed: int = 0) -> list[str]:
    """Distinct pronounceable lower-case words, frequent ones short."""
    rng = np.random.default_rng(seed)
    consonants = [*"bcdfghjklmnprstvwz", "ch", "sh", "th", "st", "tr"]
    vowels = [*"aeiou", "ea", "ou", "ai"]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < vocab_size:
        syllables = 1 + min(3, int(rng.exponential(0.4 + np.log10(len(words) + 1) / 2.5)))
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def text_documents(num_docs: int, vocab_size: int = 50_000, seed: int = 0, **shape: float) -> tuple[list[str], int]:
    """The same shape of corpus as text (capitalised sentences ending in . ? !); returns texts and word count."""
    words = np.array(words_for(vocab_size, seed), dtype=object)
    rng = np.random.default_rng(seed + 1)
    texts, total = [], 0
    for document in id_documents(num_docs, vocab_size, seed, **shape):
        sentences = []
        for ids in document:
            tokens = list(words[ids - 2])
            tokens[0] = tokens[0].capitalize()
            sentences.append(" ".join(tokens) + rng.choice([".", ".", ".", "?", "!"]))
            total += len(tokens)
        texts.append(" ".join(sentences))
    return texts, total
