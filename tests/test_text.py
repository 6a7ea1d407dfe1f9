from collections import Counter

import numpy as np
import pytest

from han.config import EmbeddingsConfig, PreprocessConfig
from han.errors import ConfigError, DataError
from han.store.vocab import PAD, PAD_ID, UNK, UNK_ID, Vocab
from han.text.embeddings import embedding_matrix, load_vectors_file, train_word2vec
from han.text.segment import build_pipeline, segment


def test_sentencizer_splits_lowercases_and_drops_whitespace():
    config = PreprocessConfig()
    nlp = build_pipeline(config)
    (doc,) = segment(nlp, ["Hello World. This is\nhan!  Is it?"], config)
    assert doc == [["hello", "world", "."], ["this", "is", "han", "!"], ["is", "it", "?"]]
    (cased,) = segment(nlp, ["Hello World."], config.model_copy(update={"lowercase": False}))
    assert cased == [["Hello", "World", "."]]


def test_caps_limit_sentences_and_words():
    config = PreprocessConfig(max_sentences=2, max_words=3)
    (doc,) = segment(build_pipeline(config), ["One two three four five. Six seven. Eight nine. Ten."], config)
    assert doc == [["one", "two", "three"], ["six", "seven", "."]]


def test_empty_text_gives_no_sentences():
    config = PreprocessConfig()
    assert list(segment(build_pipeline(config), ["   \n  "], config)) == [[]]


def test_unknown_language_and_missing_pipeline_are_config_errors():
    with pytest.raises(ConfigError, match=r"preprocess\.lang"):
        build_pipeline(PreprocessConfig(lang="zz-not-a-language"))
    with pytest.raises(ConfigError, match="not installed"):
        build_pipeline(PreprocessConfig(spacy_model="xx_surely_missing_pipeline"))


def test_vocab_counts_caps_and_round_trips(tmp_path):
    counts = Counter({"the": 10, "cat": 3, "sat": 3, "rare": 1, "mat": 2})
    vocab = Vocab.build(counts, min_count=2, max_size=5)
    assert vocab.words == [PAD, UNK, "the", "cat", "sat"]  # ties alphabetical, capped at 5 ids
    assert vocab.encode(["the", "mat", "rare"]) == [2, UNK_ID, UNK_ID]
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json").words == vocab.words


def test_word2vec_is_deterministic_with_one_worker():
    sentences = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog", "sat", "on", "a", "log"]] * 30
    config = EmbeddingsConfig(dim=8, epochs=2, min_count=1, workers=1)
    first, second = train_word2vec(sentences, config, seed=1), train_word2vec(sentences, config, seed=1)
    assert np.array_equal(first["cat"], second["cat"])
    assert first.vector_size == 8


def write_vectors(path, header: bool):
    lines = ["3 2"] if header else []
    lines += ["hello 0.5 -0.5", "world 1.0 2.0", "zebra 3 3"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_vectors_files_word2vec_and_glove(tmp_path):
    vocab = Vocab([PAD, UNK, "hello", "world", "unseen"])
    for header, fmt in ((True, "word2vec"), (False, "glove")):
        vectors = load_vectors_file(write_vectors(tmp_path / f"v{fmt}.txt", header), fmt)
        matrix, found = embedding_matrix(vocab, vectors, 2, seed=0)
        assert found == 2 and matrix.shape == (5, 2) and matrix.dtype == np.float32
        assert np.allclose(matrix[2], [0.5, -0.5]) and np.allclose(matrix[3], [1.0, 2.0])
        assert np.all(matrix[PAD_ID] == 0) and np.any(matrix[4] != 0)


def test_vector_dimension_mismatch_and_missing_file(tmp_path):
    vectors = load_vectors_file(write_vectors(tmp_path / "v.txt", True), "word2vec")
    with pytest.raises(DataError, match=r"embeddings\.dim=2"):
        embedding_matrix(Vocab([PAD, UNK]), vectors, 5, seed=0)
    with pytest.raises(DataError, match="not found"):
        load_vectors_file(tmp_path / "none.txt", "word2vec")


SUBWORD_SENTENCES = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog", "sat", "on", "a", "log"]] * 40


def test_fasttext_bin_gives_listed_words_their_vectors_and_unlisted_words_their_ngrams(tmp_path):
    from gensim.models import FastText
    from gensim.models.fasttext import save_facebook_model

    model = FastText(sentences=SUBWORD_SENTENCES, vector_size=4, min_count=1, epochs=2, workers=1, seed=1, bucket=500)
    save_facebook_model(model, str(tmp_path / "model.bin"))
    vectors = load_vectors_file(tmp_path / "model.bin", "fasttext_binary")
    vocab = Vocab([PAD, UNK, "cat", "cats"])  # "cats" is not in the model's list: its n-grams are
    matrix, found = embedding_matrix(vocab, vectors, 4, seed=0)
    assert found == 2 and np.allclose(matrix[2], model.wv["cat"], atol=1e-6)
    assert np.allclose(matrix[3], model.wv["cats"], atol=1e-6) and not np.allclose(matrix[3], matrix[2])
    assert np.all(matrix[PAD_ID] == 0)
    # the same vocabulary from the word2vec text format (fastText's .vec): no n-grams, "cats" stays random
    model.wv.save_word2vec_format(str(tmp_path / "model.vec"))
    matrix_vec, found_vec = embedding_matrix(vocab, load_vectors_file(tmp_path / "model.vec", "word2vec"), 4, seed=0)
    assert found_vec == 1 and np.allclose(matrix_vec[2], model.wv["cat"], atol=1e-5)


@pytest.mark.parametrize("content", [b"", b"garbage" * 10])
def test_a_bad_fasttext_bin_is_a_data_error_naming_the_file(tmp_path, content):
    (tmp_path / "bad.bin").write_bytes(content)
    with pytest.raises(DataError, match=r"bad\.bin: not a fasttext_binary vectors file"):
        load_vectors_file(tmp_path / "bad.bin", "fasttext_binary")


def test_subwords_trains_fasttext_whose_ngrams_reach_rare_words():
    config = EmbeddingsConfig(dim=8, epochs=2, min_count=2, workers=1, subwords=True)
    sentences = [*SUBWORD_SENTENCES, ["the", "cats", "sat"]]  # "cats" once: under min_count, not listed
    vectors = train_word2vec(sentences, config, seed=1)
    assert "cats" not in vectors.key_to_index and "cat" in vectors.key_to_index
    matrix, found = embedding_matrix(Vocab([PAD, UNK, "cat", "cats"]), vectors, 8, seed=0)
    assert found == 2 and np.allclose(matrix[3], vectors.get_vector("cats"))
    _, plain_found = embedding_matrix(
        Vocab([PAD, UNK, "cat", "cats"]),
        train_word2vec(sentences, config.model_copy(update={"subwords": False}), 1),
        8,
        0,
    )
    assert plain_found == 1  # plain word2vec knows no vector for the rare word


SENTENCE_EDGES = [
    "",
    ".",
    "...",
    "Hello. World",
    "Hello.World",
    "Wait... what?! Yes.",
    'He said "stop." Then left.',
    "(Really?) Yes!",
    "Mr. Smith went to Washington. He stayed.",
    "one\n\ntwo. three",
    ". . leading dots then words",
    "trailing punctuation only !!!",
    "¿Qué? ¡Sí! 你好。再见\uff01 नमस्ते। ok",
    "a; b: c, d - e... f",
    "Emoji :) after. and 🙂 before!",
]


def test_the_default_pipelines_sentence_rule_is_spacys_sentencizer(monkeypatch):
    import random

    import han.text.segment as segment_module
    from han.text.segment import segment_chunk

    rng = random.Random(5)
    pieces = ["word", "Big", ".", "!", "?", "...", ";", ",", '"', "(", ")", "\n\n", " ", "。", "…", "?!", "'", "-"]
    texts = SENTENCE_EDGES + [" ".join(rng.choices(pieces, k=rng.randint(0, 40))) for _ in range(300)]
    texts += ["".join(rng.choices(pieces, k=rng.randint(0, 40))) for _ in range(300)]
    nlp = build_pipeline(PreprocessConfig())
    for lowercase, surface in [(True, False), (False, True)]:
        by_rule = segment_chunk(nlp, texts, lowercase, 32, surface)
        monkeypatch.setattr(segment_module, "sentencizer_punctuation", lambda nlp: None)  # spaCy's component
        by_spacy = segment_chunk(nlp, texts, lowercase, 32, surface)
        monkeypatch.undo()
        for name in ("local_ids", "sentence_lengths", "sentence_counts", "surface_ids", "space_after"):
            ours, theirs = getattr(by_rule, name), getattr(by_spacy, name)
            assert (ours is None and theirs is None) or np.array_equal(ours, theirs), name
        assert by_rule.words == by_spacy.words and by_rule.surface_words == by_spacy.surface_words
        assert by_rule.sentence_counts.sum() > len(texts)  # the texts do have several sentences
