"""Every model kind (han/models/build.py): shapes, batch and padding invariance, overfitting, weights round trip,
attention, and kind linear end to end against scikit-learn (no pickle anywhere in its run directory)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import TINY_CONFIG, make_corpus, write_csv
from han.config import ModelConfig, load_config
from han.models.build import KINDS, build_model, has_attention
from han.models.hierarchical import HANOutput, ModelOutput
from han.models.linear import TfidfLinearModel
from han.store.encoded import EncodedSplit
from han.store.weights import load_weights, save_weights
from han.text.batching import collate

VOCAB, EMBED, CLASSES = 30, 6, 3
SMALL = {
    "word_hidden": 5,
    "sentence_hidden": 4,
    "attention_dim": 3,
    "dropout": 0.0,
    "cnn_widths": [2, 3],
    "cnn_maps": 4,
}
HIERARCHICAL = ("han", "han_avg", "han_max")
CELLS = ("gru", "lstm", "rnn")


def _config(kind: str, **settings: object) -> ModelConfig:
    return ModelConfig(kind=kind, **{**SMALL, **settings})


def _specs() -> list:
    specs = []
    for kind in HIERARCHICAL:
        specs += [pytest.param(_config(kind, cell=cell), id=f"{kind}-{cell}") for cell in CELLS]
    specs += [pytest.param(_config("rnn", cell=cell), id=f"rnn-{cell}-attention-bi") for cell in CELLS]
    specs += [pytest.param(_config("rnn", pooling=p), id=f"rnn-gru-{p}-bi") for p in ("last", "max")]
    specs += [
        pytest.param(_config("rnn", pooling=p, bidirectional=False), id=f"rnn-gru-{p}-uni")
        for p in ("last", "max", "attention")
    ]
    specs += [
        pytest.param(_config("rnn", cell=cell, pooling="last", bidirectional=False), id=f"rnn-{cell}-last-uni")
        for cell in ("lstm", "rnn")
    ]
    specs += [pytest.param(_config(kind), id=kind) for kind in ("cnn", "mean", "linear")]
    return specs


SPECS = _specs()
NEURAL_SPECS = [spec for spec in SPECS if spec.values[0].kind != "linear"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is fastest (and keeps the sums in one order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_kind_is_covered():
    assert {spec.values[0].kind for spec in SPECS} == set(KINDS)


def random_documents(rng: np.random.Generator, n: int, max_sentences: int, max_words: int) -> list:
    return [
        [
            [int(t) for t in rng.integers(2, VOCAB, size=rng.integers(1, max_words + 1))]
            for _ in range(rng.integers(1, max_sentences + 1))
        ]
        for _ in range(n)
    ]


def make_model(config: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """A model of `config` in eval mode; a linear one gets a random fitted n-gram table and weights."""
    torch.manual_seed(seed)
    model = build_model(config, VOCAB, EMBED, CLASSES)
    if isinstance(model, TfidfLinearModel):
        generator = torch.Generator().manual_seed(seed)
        unigrams = torch.arange(2, VOCAB)
        bigrams = VOCAB + torch.randperm(VOCAB * VOCAB, generator=generator)[:400]
        keys = torch.sort(torch.cat([unigrams, bigrams])).values
        model.set_fitted(
            torch.ones(VOCAB, dtype=torch.bool),
            keys,
            1 + torch.rand(keys.numel(), generator=generator),
            torch.randn(CLASSES, keys.numel(), generator=generator),
            torch.randn(CLASSES, generator=generator),
        )
    return model.eval()


def batch_of(documents: list, labels: list[int] | None = None):
    split = EncodedSplit.from_documents(documents, labels if labels is not None else [0] * len(documents))
    return collate(split, np.arange(len(documents)))


@torch.no_grad()
def logits_of(model: torch.nn.Module, word_ids, sentence_lengths, sentence_counts) -> torch.Tensor:
    return model(word_ids, sentence_lengths, sentence_counts).logits


# --- 1. shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("config", SPECS)
def test_logits_have_one_finite_row_per_document(config):
    documents = [[[2, 3, 4]], [[5, 6], [7, 8, 9, 10, 11], [12]], [[13], [14, 15]], [[16, 17, 18, 19]] * 4]
    batch = batch_of(documents)
    assert batch.word_ids.shape == (10, 5)  # sentences of different lengths, documents of different counts
    logits = logits_of(make_model(config), batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
    assert logits.shape == (len(documents), CLASSES)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    # the documents are read: different documents get different logits
    assert not torch.allclose(logits[0], logits[1]) and not torch.allclose(logits[2], logits[3])


# --- 2. padding and batch invariance ---------------------------------------------------------------


@pytest.mark.parametrize("config", SPECS)
def test_a_documents_logits_do_not_depend_on_batch_or_padding(config):
    model = make_model(config)
    rng = np.random.default_rng(1)
    targets = [[[4, 9, 2]], [[7], [3, 3, 11, 5]], [[6, 8], [12, 20, 2], [9]]]  # incl. shorter than the widest filter
    longer = random_documents(rng, 4, 6, 9)
    longer[0] = [[int(t) for t in rng.integers(2, VOCAB, size=9)] for _ in range(6)]  # surely longer
    for target in targets:
        alone = batch_of([target])
        expected = logits_of(model, alone.word_ids, alone.sentence_lengths, alone.sentence_counts)[0]

        # inside a batch of longer documents (more sentences, wider rows), not first
        mixed = batch_of([longer[0], target, *longer[1:]])
        assert mixed.word_ids.size(1) > alone.word_ids.size(1)
        in_batch = logits_of(model, mixed.word_ids, mixed.sentence_lengths, mixed.sentence_counts)[1]
        torch.testing.assert_close(in_batch, expected, atol=1e-5, rtol=0)

        # extra PAD columns appended to word_ids
        padded_ids = torch.nn.functional.pad(alone.word_ids, (0, 5), value=0)
        padded = logits_of(model, padded_ids, alone.sentence_lengths, alone.sentence_counts)[0]
        torch.testing.assert_close(padded, expected, atol=1e-5, rtol=0)

        padded_ids = torch.nn.functional.pad(mixed.word_ids, (0, 3), value=0)
        padded = logits_of(model, padded_ids, mixed.sentence_lengths, mixed.sentence_counts)[1]
        torch.testing.assert_close(padded, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "config",
    [pytest.param(_config(kind), id=kind) for kind in HIERARCHICAL]
    + [pytest.param(_config("rnn", pooling=p), id=f"rnn-{p}") for p in ("last", "max", "attention")],
)
def test_fused_and_torch_gru_give_the_same_logits(config):
    fused = make_model(config.model_copy(update={"rnn": "fused"}))
    reference = make_model(config.model_copy(update={"rnn": "torch"}), seed=1)
    reference.load_state_dict(fused.state_dict(), strict=True)
    batch = batch_of(random_documents(np.random.default_rng(2), 6, 5, 8))
    inputs = (batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
    torch.testing.assert_close(logits_of(fused, *inputs), logits_of(reference, *inputs), atol=1e-5, rtol=0)


# --- 3. overfitting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("config", NEURAL_SPECS)
def test_overfits_a_tiny_batch(config):
    torch.manual_seed(0)
    documents = random_documents(np.random.default_rng(3), 6, 3, 6)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    batch = batch_of(documents, labels.tolist())
    inputs = (batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
    model = build_model(config, VOCAB, EMBED, CLASSES).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(300):  # every spec needs < 40 steps (seeded, deterministic)
        loss = torch.nn.functional.cross_entropy(model(*inputs).logits, labels)
        first = loss.item() if first is None else first
        if loss.item() < 0.005:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    logits = logits_of(model, *inputs)
    final = float(torch.nn.functional.cross_entropy(logits, labels))
    assert first > 0.5  # it started out not knowing the labels
    assert final < 0.01, f"loss {first:.3f} -> {final:.4f}"
    assert torch.equal(logits.argmax(1), labels)


# --- 4. weights round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize("config", SPECS)
def test_saved_weights_load_into_a_fresh_model_with_identical_predictions(config, tmp_path):
    model = make_model(config, seed=0)
    batch = batch_of(random_documents(np.random.default_rng(4), 5, 4, 7))
    inputs = (batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
    expected = logits_of(model, *inputs)
    path = tmp_path / "weights.safetensors"
    save_weights(model, path)

    torch.manual_seed(1)
    fresh = build_model(config, VOCAB, EMBED, CLASSES).eval()
    assert not torch.equal(logits_of(fresh, *inputs), expected)  # different weights before loading
    load_weights(fresh, path)
    assert torch.equal(logits_of(fresh, *inputs), expected)
    assert fresh.state_dict().keys() == model.state_dict().keys()


# --- 6. attention ------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", SPECS)
def test_attention_kinds_carry_two_levels_of_attention_and_the_others_none(config):
    batch = batch_of([[[2, 3]], [[4], [5, 6, 7]], [[8, 9, 10]]])
    with torch.no_grad():
        output = make_model(config)(batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
    attentive = config.kind == "han" or (config.kind == "rnn" and config.pooling == "attention")
    assert has_attention(config) == attentive
    if attentive:
        assert isinstance(output, HANOutput)
        assert output.sentence_attention.shape == (3, 2)
        torch.testing.assert_close(output.sentence_attention.sum(1), torch.ones(3))
        assert output.word_attention.shape == (3, 2, 3)
        real = output.sentence_attention > 0  # (B, S) real sentences get weight; padding exactly zero
        assert real.tolist() == [[True, False], [True, True], [True, False]]
        torch.testing.assert_close(output.word_attention.sum(2)[real], torch.ones(4))
    else:
        assert isinstance(output, ModelOutput)
        assert not hasattr(output, "sentence_attention") and not hasattr(output, "word_attention")


def test_document_level_token_weights_split_exactly_into_sentence_and_word_weights():
    from han.models.flat import as_two_levels

    batch = batch_of([[[2, 3], [4]], [[5, 6, 7]]])  # tokens in flat order: 2 3 | 4 || 5 6 7
    tokens = torch.tensor([0.5, 0.2, 0.3, 0.1, 0.6, 0.3])  # each document's sum to 1
    output = as_two_levels(torch.zeros(2, 3), tokens, batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
    torch.testing.assert_close(output.sentence_attention, torch.tensor([[0.7, 0.3], [1.0, 0.0]]))
    expected_words = torch.tensor([[[5 / 7, 2 / 7, 0.0], [1.0, 0.0, 0.0]], [[0.1, 0.6, 0.3], [0.0, 0.0, 0.0]]])
    torch.testing.assert_close(output.word_attention, expected_words)
    product = (output.sentence_attention[:, :, None] * output.word_attention).flatten()
    torch.testing.assert_close(product[product > 0], tokens)  # sentence weight x word weight = token weight


# --- 5. kind linear end to end ------------------------------------------------------------------------


def _linear_run(tmp_path_factory, overrides: list[str], name: str) -> Path:
    from han.workflows.run import run_all

    # C fixed at scikit-learn's default: the reference below fits at it (auto's choice is tests/test_linear_guard.py's)
    config = load_config(TINY_CONFIG, [*overrides, "model.kind=linear", "model.linear_c=1"])
    run_dir = tmp_path_factory.mktemp("linear") / name
    run_all(config, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory, tiny_overrides) -> Path:
    return _linear_run(tmp_path_factory, tiny_overrides, "three-classes")


@pytest.fixture(scope="module")
def two_class_run(tmp_path_factory, tiny_overrides) -> Path:
    rows = [row for row in make_corpus(180, seed=5) if row["label"] in ("sport", "tech")]
    csv_path = write_csv(tmp_path_factory.mktemp("two-classes") / "corpus.csv", rows)
    return _linear_run(tmp_path_factory, [*tiny_overrides, f"data.source={csv_path}"], "two-classes")


def _check_readable_without_pickle(path: Path) -> None:
    head = path.read_bytes()[:8]
    suffix = path.suffix.lower()
    assert suffix not in (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".npy", ".npz"), path
    if suffix == ".safetensors":
        load_file(str(path))  # parses as safetensors: an 8-byte header length, a JSON header, raw tensors
        return
    assert not head.startswith(b"\x80"), f"{path} starts like a pickle"
    text_like = suffix in (".json", ".jsonl", ".yaml", ".yml", ".txt", ".md", ".csv", ".log", ".html", "")
    if suffix == ".json":
        json.loads(path.read_text(encoding="utf-8"))
    elif suffix == ".jsonl":
        for line in path.read_text(encoding="utf-8").splitlines():
            json.loads(line)
    elif suffix in (".yaml", ".yml"):
        yaml.safe_load(path.read_text(encoding="utf-8"))
    elif suffix == ".arrow":
        with pa.memory_map(str(path)) as source:
            try:
                pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                pa.ipc.open_file(source).read_all()
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.read_metadata(path)
    else:
        assert text_like, f"{path}: not JSON, YAML, safetensors, Arrow/parquet or text"
        assert "\x00" not in path.read_text(encoding="utf-8"), path


def test_linear_run_directory_holds_no_pickle(linear_run):
    files = [p for p in linear_run.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files) and any(p.suffix == ".arrow" for p in files)
    for path in files:
        _check_readable_without_pickle(path)


def test_linear_weights_load_back_with_safetensors(linear_run):
    from han.store.rundir import RunDir

    run = RunDir(linear_run)
    labels = run.load_labels()
    best = load_file(str(run.best_weights_path))
    assert set(best) == {"kept_tokens", "feature_keys", "idf", "weight", "bias"}
    features = best["feature_keys"].numel()
    assert features > 0 and best["weight"].shape == (len(labels), features) and best["idf"].shape == (features,)
    assert torch.all(best["feature_keys"][1:] > best["feature_keys"][:-1])  # sorted, distinct
    with safe_open(str(run.last_weights_path), framework="pt") as handle:
        names = sorted(handle.keys())
        assert names == sorted(best)
        assert all(torch.equal(handle.get_tensor(name), best[name]) for name in names)  # last is the same fit


def test_linear_predictions_reproduce_the_test_accuracy(linear_run):
    from han.evaluation.scoring import predict_probabilities
    from han.serving.trained import load_trained_run

    trained = load_trained_run(linear_run)
    assert isinstance(trained.model, TfidfLinearModel)
    test = trained.run.load_split("test")
    probabilities = predict_probabilities(trained.model, test, 7)
    metrics = json.loads((linear_run / "metrics.json").read_text())
    accuracy = float(np.mean(probabilities.argmax(1) == test.labels))
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-12)
    assert metrics["test"]["documents"] == len(test)


def _document_tokens(split: EncodedSplit, i: int) -> list[int]:
    start = split.sentence_offsets[split.document_offsets[i]]
    end = split.sentence_offsets[split.document_offsets[i + 1]]
    return split.tokens[start:end].tolist()


def _ngrams(tokens: list[int]) -> list[str]:
    """Unigrams and bigrams of a document's token ids (its sentences concatenated), as strings."""
    return [str(t) for t in tokens] + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]


def _sklearn_reference(run_dir: Path):
    """The trained model, the train/test splits and scikit-learn's TF-IDF + LinearSVC fitted on the same ids."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from han.serving.trained import load_trained_run

    trained = load_trained_run(run_dir)
    assert trained.config.model.linear_ngrams == 2 and trained.config.model.linear_tokens == "all"
    train, test = trained.run.load_split("train"), trained.run.load_split("test")
    min_df = trained.config.model.linear_min_df
    vectorizer = TfidfVectorizer(analyzer=_ngrams, norm="l2", smooth_idf=True, lowercase=False, min_df=min_df)
    train_x = vectorizer.fit_transform([_document_tokens(train, i) for i in range(len(train))])
    test_x = vectorizer.transform([_document_tokens(test, i) for i in range(len(test))])
    classifier = LinearSVC(C=1.0, random_state=trained.config.seed).fit(train_x, train.labels)
    return trained, test, vectorizer, test_x, classifier


def _key_name(key: int, vocab_size: int) -> str:
    if key < vocab_size:
        return str(key)
    first, second = divmod(key - vocab_size, vocab_size)
    return f"{first} {second}"


def test_linear_tfidf_rows_and_predictions_agree_with_scikit_learn(linear_run):
    trained, test, vectorizer, test_x, classifier = _sklearn_reference(linear_run)
    model = trained.model
    names = vectorizer.get_feature_names_out()
    assert len(names) == model.feature_keys.numel()  # the same n-gram table

    indices = np.arange(min(len(test), 12))
    batch = collate(test, indices)
    with torch.no_grad():
        row, column, value = model.features(batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
    vocab_size = model.vocab_size
    for b, i in enumerate(indices):
        ours = {
            _key_name(int(model.feature_keys[c]), vocab_size): float(v)
            for c, v in zip(column[row == b], value[row == b], strict=True)
        }
        sk_row = test_x.getrow(int(i))
        theirs = {str(names[c]): float(v) for c, v in zip(sk_row.indices, sk_row.data, strict=True)}
        assert ours.keys() == theirs.keys(), f"test document {i}: different nonzero n-grams"
        assert len(ours) > 0
        np.testing.assert_allclose(
            [ours[k] for k in sorted(ours)], [theirs[k] for k in sorted(ours)], atol=1e-6, rtol=0
        )

    from han.evaluation.scoring import predict_probabilities

    ours_predicted = predict_probabilities(model, test, 16).argmax(1)
    assert np.array_equal(ours_predicted, classifier.predict(test_x))
    assert classifier.coef_.shape == (len(trained.label_names), len(names))
    whole = collate(test, np.arange(len(test)))
    with torch.no_grad():
        logits = model(whole.word_ids, whole.sentence_lengths, whole.sentence_counts).logits.double().numpy()
    np.testing.assert_allclose(logits, classifier.decision_function(test_x), atol=1e-4)


def test_linear_two_classes_match_scikit_learns_single_row(two_class_run):
    trained, test, vectorizer, test_x, classifier = _sklearn_reference(two_class_run)
    model = trained.model
    assert trained.label_names == ["sport", "tech"]
    assert set(np.unique(test.labels)) == {0, 1}
    assert classifier.coef_.shape == (1, len(vectorizer.get_feature_names_out()))  # one row: class 1's margin
    assert model.weight.shape[0] == 2

    from han.evaluation.scoring import predict_probabilities

    predicted = predict_probabilities(model, test, 16).argmax(1)
    assert np.array_equal(predicted, classifier.predict(test_x))
    batch = collate(test, np.arange(len(test)))
    with torch.no_grad():
        logits = model(batch.word_ids, batch.sentence_lengths, batch.sentence_counts).logits.double().numpy()
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], classifier.decision_function(test_x), atol=1e-4)


def test_a_vocabulary_too_large_to_number_its_trigrams_is_refused_before_any_work():
    from han.errors import ConfigError

    trigrams = ModelConfig(kind="linear", linear_ngrams=3)
    build_model(trigrams, 2_000_000, 8, 3)  # 2e6^3 + 2e6^2 + 2e6 < 2^63: numbered exactly
    with pytest.raises(ConfigError, match="linear_ngrams 3"):
        build_model(trigrams, 2_100_000, 8, 3)
    build_model(ModelConfig(kind="linear", linear_ngrams=2), 2_100_000, 8, 3)
