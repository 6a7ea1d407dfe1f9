"""The fused GRU computes the same function as torch.nn.GRU: outputs and every gradient, in float64."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from han.config import ModelConfig
from han.models.build import build_model
from han.models.packed import distinct_rows, fused_bidirectional_gru, pack_layout, shared_rows
from han.store.encoded import EncodedSplit
from han.text.batching import collate

LENGTH_CASES = {
    "random": list(np.random.default_rng(0).integers(1, 13, size=17)),
    "length-1 sequences": [1, 1, 1, 1],
    "mixed with length 1": [1, 9, 1, 3, 1],
    "all equal": [6, 6, 6, 6, 6],
    "single sequence": [5],
    "single step": [1],
}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).norm() / b.detach().norm().clamp_min(1e-300))


def test_pack_layout_matches_torch_packing():
    lengths = torch.tensor([3, 5, 1, 5, 2])
    layout = pack_layout(lengths)
    padded = torch.arange(1, 26).reshape(5, 5)  # value = 5 * sequence + step + 1
    packed = torch.nn.utils.rnn.pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
    assert layout.batch_sizes.tolist() == packed.batch_sizes.tolist()
    assert sorted(padded[layout.sequence, layout.position].tolist()) == sorted(packed.data.tolist())
    # mirror maps (sequence, t) to (sequence, length - 1 - t) and is an involution
    assert torch.equal(layout.sequence[layout.mirror], layout.sequence)
    assert torch.equal(layout.position[layout.mirror], lengths[layout.sequence] - 1 - layout.position)
    assert torch.equal(layout.mirror[layout.mirror], torch.arange(layout.sequence.numel()))


@pytest.mark.parametrize("lengths", LENGTH_CASES.values(), ids=LENGTH_CASES.keys())
def test_fused_gru_equals_nn_gru_with_gradients(lengths):
    torch.manual_seed(0)
    gru = nn.GRU(7, 5, bidirectional=True).double()
    layout = pack_layout(torch.tensor(lengths))
    inputs = torch.randn(layout.sequence.numel(), 7, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(layout.sequence.numel(), 10, dtype=torch.float64)
    parameters = list(gru.parameters())

    expected, _ = gru(PackedSequence(inputs, layout.batch_sizes))
    expected_grads = torch.autograd.grad((expected.data * upstream).sum(), [inputs, *parameters])
    actual = fused_bidirectional_gru(inputs, layout, gru)
    actual_grads = torch.autograd.grad((actual * upstream).sum(), [inputs, *parameters])

    assert relative_error(actual, expected.data) <= 1e-6
    names = ["inputs"] + [name for name, _ in gru.named_parameters()]
    for name, got, want in zip(names, actual_grads, expected_grads, strict=True):
        assert relative_error(got, want) <= 1e-6, name


def test_whole_model_fused_equals_torch_backend():
    rng = np.random.default_rng(4)
    documents = [
        [list(rng.integers(2, 40, size=rng.integers(1, 9))) for _ in range(rng.integers(1, 7))] for _ in range(9)
    ]
    documents[0] = [[5]]  # one sentence of one word
    split = EncodedSplit.from_documents(documents, list(rng.integers(0, 3, size=9)))
    batch = collate(split, np.arange(9))
    config = ModelConfig(word_hidden=4, sentence_hidden=3, attention_dim=5, dropout=0.0, word_dropout=0.0)
    torch.manual_seed(0)
    fused = build_model(config.model_copy(update={"rnn": "fused"}), 40, 6, 3).double()
    reference = build_model(config.model_copy(update={"rnn": "torch"}), 40, 6, 3).double()
    reference.load_state_dict(fused.state_dict())  # the two backends share parameter names
    results = []
    for model in (fused, reference):
        output = model(batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
        torch.nn.functional.cross_entropy(output.logits, batch.labels).backward()
        results.append((output, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (out_f, grads_f), (out_t, grads_t) = results
    assert relative_error(out_f.logits, out_t.logits) <= 1e-6
    assert relative_error(out_f.word_attention, out_t.word_attention) <= 1e-6
    assert relative_error(out_f.sentence_attention, out_t.sentence_attention) <= 1e-6
    for name in grads_t:
        assert relative_error(grads_f[name], grads_t[name]) <= 1e-6, name


def test_fused_gru_reading_shared_rows_equals_nn_gru():
    """Positions that read the same input row (repeated words) get the gradient summed into that row."""
    torch.manual_seed(1)
    gru = nn.GRU(6, 4, bidirectional=True).double()
    layout = pack_layout(torch.tensor([4, 1, 7, 3]))
    distinct = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    rows = torch.randint(0, 5, (layout.num_positions,))
    upstream = torch.randn(layout.num_positions, 8, dtype=torch.float64)
    expected, _ = gru(PackedSequence(distinct[rows], layout.batch_sizes))
    expected_grads = torch.autograd.grad((expected.data * upstream).sum(), [distinct, *gru.parameters()])
    actual = fused_bidirectional_gru(distinct, layout, gru, shared_rows(rows, 5))
    actual_grads = torch.autograd.grad((actual * upstream).sum(), [distinct, *gru.parameters()])
    assert relative_error(actual, expected.data) <= 1e-6
    for got, want in zip(actual_grads, expected_grads, strict=True):
        assert relative_error(got, want) <= 1e-6


@pytest.mark.parametrize("lengths", LENGTH_CASES.values(), ids=LENGTH_CASES.keys())
@pytest.mark.parametrize("shared", [False, True], ids=["a row per position", "shared rows"])
def test_fused_gru_without_autograd_equals_nn_gru(lengths, shared):
    """Scoring (no autograd) runs its own loop: the same function, reading rows or positions."""
    torch.manual_seed(3)
    gru = nn.GRU(6, 4, bidirectional=True).double()
    layout = pack_layout(torch.tensor(lengths))
    rows = torch.randint(0, 5, (layout.num_positions,)) if shared else None
    inputs = torch.randn(5 if shared else layout.num_positions, 6, dtype=torch.float64)
    with torch.no_grad():
        expected, _ = gru(PackedSequence(inputs if rows is None else inputs[rows], layout.batch_sizes))
        actual = fused_bidirectional_gru(inputs, layout, gru, None if rows is None else shared_rows(rows, 5))
    assert not actual.requires_grad
    assert relative_error(actual, expected.data) <= 1e-12


def test_fused_gru_with_inputs_that_need_no_gradient():
    """Frozen embeddings: the weights still get exact gradients."""
    torch.manual_seed(2)
    gru = nn.GRU(6, 4, bidirectional=True).double()
    layout = pack_layout(torch.tensor([5, 2, 2]))
    inputs = torch.randn(layout.num_positions, 6, dtype=torch.float64)
    expected, _ = gru(PackedSequence(inputs, layout.batch_sizes))
    expected_grads = torch.autograd.grad(expected.data.sum(), list(gru.parameters()))
    actual_grads = torch.autograd.grad(fused_bidirectional_gru(inputs, layout, gru).sum(), list(gru.parameters()))
    for got, want in zip(actual_grads, expected_grads, strict=True):
        assert relative_error(got, want) <= 1e-6


def test_distinct_rows_equal_torch_unique_and_group_positions_by_row():
    """One sort gives torch.unique's values and inverse, and each row's positions in position order."""
    values = torch.tensor([7, 3, 7, 9, 3, 3, 1, 7])
    distinct, rows = distinct_rows(values)
    expected, inverse = torch.unique(values, return_inverse=True)
    assert torch.equal(distinct, expected) and torch.equal(rows.index, inverse)
    for row in range(rows.num_rows):
        group = rows.order[rows.row_starts[row] : rows.row_starts[row + 1]]
        assert torch.equal(group, torch.nonzero(inverse == row).flatten())
    assert torch.equal(rows.row_starts, shared_rows(inverse, distinct.numel()).row_starts)
    summed = rows.sums(rows.order, torch.float64) @ torch.arange(8.0, dtype=torch.float64)[:, None]
    assert summed.flatten().tolist() == [6.0, 1.0 + 4 + 5, 0.0 + 2 + 7, 3.0]
