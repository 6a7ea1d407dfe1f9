"""Property tests: segmentation, encoding and batching hold their invariants on arbitrary Unicode text."""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from han.config import ModelConfig, PreprocessConfig
from han.models.build import build_model
from han.store.encoded import EncodedSplit
from han.store.vocab import PAD_ID, UNK_ID, Vocab
from han.text.batching import bucketed_batches, collate
from han.text.segment import build_pipeline, clean_text, segment

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Every code point, lone surrogates included (the default leaves them out).
ANY_CHARACTER = st.characters(exclude_categories=())
PIECES = st.one_of(
    st.text(ANY_CHARACTER, max_size=12),
    st.sampled_from([". ", "! ", "? ", "\n", "\n\n", " ", "word", "Mr. Smith", "\u200b", "\x00", "\u202e", "\ufeff"]),
)
TEXTS = st.lists(PIECES, max_size=30).map("".join)
REMOVED = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2060\ufeff\u00ad\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


@lru_cache(maxsize=1)
def pipeline():
    return build_pipeline(PreprocessConfig(max_chars=100_000))


CONFIGS = st.builds(
    PreprocessConfig,
    max_sentences=st.integers(1, 6),
    max_words=st.integers(1, 8),
    max_chars=st.integers(1, 400),
    lowercase=st.booleans(),
)


@PROPERTY_SETTINGS
@given(st.lists(TEXTS, min_size=1, max_size=6), CONFIGS)
def test_segmentation_respects_caps_on_any_text(texts, config):
    documents = list(segment(pipeline(), texts, config))
    assert len(documents) == len(texts)
    for document in documents:
        assert len(document) <= config.max_sentences
        for sentence in document:
            assert 1 <= len(sentence) <= config.max_words
            for token in sentence:
                assert token and not token.isspace() and not REMOVED.search(token)
                token.encode("utf-8")  # writable to vocab.json


@PROPERTY_SETTINGS
@given(TEXTS)
def test_cleaning_is_idempotent_and_leaves_only_writable_text(text):
    cleaned = clean_text(text)
    assert clean_text(cleaned) == cleaned and not REMOVED.search(cleaned)
    cleaned.encode("utf-8")
    assert len(cleaned) <= len(text)


@PROPERTY_SETTINGS
@given(st.lists(TEXTS, min_size=2, max_size=12), CONFIGS, st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_encoding_and_batching_keep_ids_in_vocabulary_and_masks_consistent(texts, config, batch_size, seed):
    documents = [doc or [["<empty>"]] for doc in segment(pipeline(), texts, config)]
    half = documents[: len(documents) // 2]
    vocab = Vocab.build(Counter(w for doc in half for s in doc for w in s), min_count=1, max_size=50)
    encoded = [[vocab.encode(s) for s in doc] for doc in documents]
    for doc, ids in zip(documents, encoded, strict=True):
        for sentence, sentence_ids in zip(doc, ids, strict=True):
            assert all(1 <= i < len(vocab) for i in sentence_ids)  # never padding, always in range
            assert all(
                vocab.words[i] == w if i != UNK_ID else w not in vocab.index
                for i, w in zip(sentence_ids, sentence, strict=True)
            )
    split = EncodedSplit.from_documents(encoded, list(range(len(encoded))))
    batches = list(bucketed_batches(split, batch_size, np.random.default_rng(seed)))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(encoded)))
    torch.manual_seed(0)
    model = build_model(ModelConfig(word_hidden=3, sentence_hidden=3, attention_dim=4), len(vocab), 5, 2).eval()
    for indices in batches:
        batch = collate(split, indices)
        rows, width = batch.word_ids.shape
        mask = torch.arange(width)[None, :] < batch.sentence_lengths[:, None]
        assert rows == int(batch.sentence_counts.sum()) and width == int(batch.sentence_lengths.max())
        assert ((batch.word_ids >= 1) & (batch.word_ids < len(vocab)))[mask].all()
        assert (batch.word_ids[~mask] == PAD_ID).all()
        assert (batch.sentence_lengths >= 1).all() and (batch.sentence_lengths <= config.max_words).all()
        assert (batch.sentence_counts >= 1).all() and (batch.sentence_counts <= max(config.max_sentences, 1)).all()
        flat = [t for i in indices for s in encoded[i] for t in s]
        assert batch.word_ids[mask].tolist() == flat  # every word in place, in order
        with torch.no_grad():
            output = model(batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
        sentence_mask = torch.arange(output.sentence_attention.size(1))[None, :] < batch.sentence_counts[:, None]
        assert torch.allclose(output.sentence_attention.sum(1), torch.ones(len(indices)))
        assert (output.sentence_attention[~sentence_mask] == 0).all()
        word_weights = output.word_attention[sentence_mask]  # (N_s, W) real sentences, in batch order
        assert torch.allclose(word_weights.sum(1), torch.ones(rows))
        assert (word_weights[:, :width][~mask] == 0).all() and torch.isfinite(output.logits).all()


@settings(max_examples=15, deadline=None)
@given(
    st.lists(
        st.lists(st.lists(st.integers(1, 2**31 - 1), min_size=1, max_size=5), min_size=1, max_size=4),
        min_size=1,
        max_size=6,
    )
)
def test_encoded_split_round_trips_through_arrow(tmp_path_factory, documents):
    split = EncodedSplit.from_documents(documents, list(range(len(documents))))
    path = tmp_path_factory.mktemp("split") / "data"
    split.save(path)
    loaded = EncodedSplit.load(path)
    for name in ("tokens", "sentence_offsets", "document_offsets", "labels"):
        assert np.array_equal(getattr(loaded, name), getattr(split, name)), name
