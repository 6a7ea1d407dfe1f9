import numpy as np
import pytest
import torch

from han.config import ModelConfig
from han.models.build import build_model
from han.store.encoded import EncodedSplit
from han.text.batching import collate

CONFIG = ModelConfig(word_hidden=6, sentence_hidden=5, attention_dim=7, dropout=0.0, wide=False)


def random_documents(rng: np.random.Generator, n: int, max_sentences: int, max_words: int, vocab: int):
    return [
        [
            list(rng.integers(2, vocab, size=rng.integers(1, max_words + 1)))
            for _ in range(rng.integers(1, max_sentences + 1))
        ]
        for _ in range(n)
    ]


@pytest.fixture()
def model():
    torch.manual_seed(0)
    net = build_model(CONFIG, vocab_size=50, embedding_dim=8, num_classes=3)
    return net.eval()


def run(model, split, indices):
    batch = collate(split, np.asarray(indices))
    return model(batch.word_ids, batch.sentence_lengths, batch.sentence_counts)


def test_output_shapes_and_attention_sums(model):
    rng = np.random.default_rng(0)
    docs = random_documents(rng, 5, 4, 7, 50)
    split = EncodedSplit.from_documents(docs, [0] * 5)
    out = run(model, split, range(5))
    max_s = max(len(d) for d in docs)
    max_w = max(len(s) for d in docs for s in d)
    assert out.logits.shape == (5, 3)
    assert out.sentence_attention.shape == (5, max_s)
    assert out.word_attention.shape == (5, max_s, max_w)
    torch.testing.assert_close(out.sentence_attention.sum(1), torch.ones(5))
    for b, doc in enumerate(docs):
        torch.testing.assert_close(out.word_attention[b, : len(doc)].sum(1), torch.ones(len(doc)))


def test_padding_gets_exactly_zero_attention(model):
    rng = np.random.default_rng(1)
    docs = random_documents(rng, 8, 6, 9, 50)
    split = EncodedSplit.from_documents(docs, [0] * 8)
    out = run(model, split, range(8))
    for b, doc in enumerate(docs):
        assert torch.all(out.sentence_attention[b, len(doc) :] == 0)
        assert torch.all(out.sentence_attention[b, : len(doc)] > 0)
        assert torch.all(out.word_attention[b, len(doc) :] == 0)
        for s, sentence in enumerate(doc):
            assert torch.all(out.word_attention[b, s, len(sentence) :] == 0)
            assert torch.all(out.word_attention[b, s, : len(sentence)] > 0)


def test_document_output_does_not_depend_on_its_batch(model):
    rng = np.random.default_rng(2)
    short = [[[5, 6, 7]], [[8], [9, 10]]]  # a one-sentence document and one with a length-1 sentence
    longer = random_documents(rng, 6, 10, 20, 50)
    split = EncodedSplit.from_documents(short + longer, [0] * 8)
    together = run(model, split, range(8))
    for i, doc in enumerate(short):
        alone = run(model, split, [i])
        torch.testing.assert_close(alone.logits[0], together.logits[i], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            alone.sentence_attention[0], together.sentence_attention[i, : len(doc)], atol=1e-5, rtol=0
        )
        s, w = alone.word_attention.shape[1:]
        torch.testing.assert_close(alone.word_attention[0], together.word_attention[i, :s, :w], atol=1e-5, rtol=0)
    # ... and not on its position in the batch
    reordered = run(model, split, [4, 0, 7, 1])
    torch.testing.assert_close(reordered.logits[1], together.logits[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(reordered.logits[3], together.logits[1], atol=1e-5, rtol=0)


def test_every_parameter_gets_a_gradient_and_frozen_embeddings_do_not():
    torch.manual_seed(0)
    net = build_model(CONFIG, vocab_size=30, embedding_dim=8, num_classes=2)
    split = EncodedSplit.from_documents(random_documents(np.random.default_rng(3), 4, 3, 5, 30), [0, 1, 0, 1])
    out = run(net, split, range(4))
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 0, 1])).backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    frozen = build_model(CONFIG.model_copy(update={"freeze_embeddings": True}), 30, 8, 2)
    assert not frozen.embedding.weight.requires_grad


def test_load_embeddings_copies_the_vectors():
    net = build_model(CONFIG, vocab_size=10, embedding_dim=4, num_classes=2)
    vectors = np.arange(40, dtype=np.float32).reshape(10, 4)
    net.load_embeddings(vectors)
    assert torch.equal(net.embedding.weight.detach(), torch.from_numpy(vectors))


def test_word_dropout_leaves_out_whole_word_types_in_training_only():
    torch.manual_seed(0)
    net = build_model(CONFIG.model_copy(update={"word_dropout": 0.5}), vocab_size=50, embedding_dim=8, num_classes=3)
    rng = np.random.default_rng(1)
    docs = random_documents(rng, 6, 4, 7, 50)
    split = EncodedSplit.from_documents(docs, [0] * 6)
    inputs: list[torch.Tensor] = []
    net.word_encoder.register_forward_hook(lambda module, args, output: inputs.append(args[0].detach()))
    net.train()
    run(net, split, range(6))
    net.eval()
    run(net, split, range(6))
    dropped, full = inputs  # (U, E) each: the batch's distinct words, embedded
    zero = (dropped == 0).all(dim=1)  # (U,) a word left out: its one row (read at every position) is zero
    assert 0 < int(zero.sum()) < len(zero)
    assert torch.allclose(dropped[~zero], 2 * full[~zero])  # the kept ones scaled by 1 / (1 - p)
    torch.manual_seed(0)
    plain = build_model(CONFIG, vocab_size=50, embedding_dim=8, num_classes=3).eval()
    assert torch.equal(run(plain, split, range(6)).logits, run(net, split, range(6)).logits)  # eval: no dropout
