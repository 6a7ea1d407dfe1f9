import numpy as np

from han.store.encoded import EncodedSplit
from han.store.vocab import PAD_ID
from han.text.batching import bucketed_batches, collate


def make_split(n=100, seed=0):
    rng = np.random.default_rng(seed)
    docs = [[list(rng.integers(2, 99, size=rng.integers(1, 12))) for _ in range(rng.integers(1, 9))] for _ in range(n)]
    return docs, EncodedSplit.from_documents(docs, list(rng.integers(0, 3, size=n)))


def test_save_and_load_round_trip(tmp_path):
    docs, split = make_split()
    split.save(tmp_path / "train")
    loaded = EncodedSplit.load(tmp_path / "train")
    for name in ("tokens", "sentence_offsets", "document_offsets", "labels"):
        assert np.array_equal(getattr(loaded, name), getattr(split, name)), name
    assert list(loaded.sentence_counts) == [len(d) for d in docs]


def test_collate_places_every_word(tmp_path):
    docs, split = make_split(20)
    indices = np.array([3, 0, 17])
    batch = collate(split, indices)
    sentences = [s for i in indices for s in docs[i]]
    assert batch.word_ids.shape == (len(sentences), max(len(s) for s in sentences))
    assert batch.sentence_counts.tolist() == [len(docs[i]) for i in indices]
    for row, sentence in enumerate(sentences):
        assert batch.word_ids[row, : len(sentence)].tolist() == [int(t) for t in sentence]
        assert (batch.word_ids[row, len(sentence) :] == PAD_ID).all()
        assert batch.sentence_lengths[row] == len(sentence)
    assert batch.labels.tolist() == split.labels[indices].tolist()


def test_batches_cover_every_document_once_and_group_by_length():
    _, split = make_split(500)
    for rng in (None, np.random.default_rng(0)):
        batches = list(bucketed_batches(split, 16, rng))
        seen = np.concatenate(batches)
        assert sorted(seen.tolist()) == list(range(500))

    # bucketing keeps padding small compared with random batches
    def padded_slots(batches):
        return sum(len(b) * split.sentence_counts[b].max() for b in batches)

    random_batches = np.array_split(np.random.default_rng(0).permutation(500), 500 // 16)
    assert padded_slots(list(bucketed_batches(split, 16, np.random.default_rng(0)))) < 0.8 * padded_slots(
        random_batches
    )


def test_shuffle_is_seeded_and_changes_between_epochs():
    _, split = make_split(300)
    first = [b.tolist() for b in bucketed_batches(split, 16, np.random.default_rng(7))]
    again = [b.tolist() for b in bucketed_batches(split, 16, np.random.default_rng(7))]
    assert first == again
    rng = np.random.default_rng(7)
    epoch1 = [b.tolist() for b in bucketed_batches(split, 16, rng)]
    epoch2 = [b.tolist() for b in bucketed_batches(split, 16, rng)]
    assert epoch1 != epoch2


def test_scoring_batches_end_at_a_token_budget_or_a_document_count():
    rng = np.random.default_rng(4)
    documents = [
        [list(range(2, 2 + int(rng.integers(1, 40)))) for _ in range(int(rng.integers(1, 8)))] for _ in range(300)
    ]
    documents.append([list(range(2, 302))])  # one document longer than the budget: a batch of its own
    split = EncodedSplit.from_documents(documents, [0] * len(documents))
    lengths = split.document_lengths
    batches = list(bucketed_batches(split, 20, rng=None, max_tokens=250))
    order = np.concatenate(batches)
    key = split.sentence_counts * 100_000 + lengths
    assert sorted(order.tolist()) == list(range(len(documents)))
    assert order.tolist() == np.argsort(key, kind="stable").tolist()  # length order, as without a budget
    for batch, following in zip(batches, [*batches[1:], None], strict=True):
        assert 1 <= len(batch) <= 20
        assert len(batch) == 1 or lengths[batch].sum() <= 250
        if following is not None and len(batch) < 20:  # a batch ends only when the next document would not fit
            assert lengths[batch].sum() + lengths[following[0]] > 250
    assert [len(b) for b in batches if lengths[b].sum() > 250] == [1]
