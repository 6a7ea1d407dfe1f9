import copy

import pytest
import torch
from torch import nn

from han.training.optim import LazyAdam, clip_grad_norm, coalesced


def small_net(sparse: bool) -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict({"embedding": nn.Embedding(20, 4, padding_idx=0, sparse=sparse), "linear": nn.Linear(4, 3)})


def loss_of(net: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return net["linear"](net["embedding"](ids)).pow(2).sum()


BATCHES = [torch.tensor([0, 3, 3, 7]), torch.tensor([1, 7, 9]), torch.tensor([3, 12, 0, 12])]


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_dense_parameters_follow_torch_adam(weight_decay):
    ours_net, torch_net = small_net(False), small_net(False)
    ours = LazyAdam(ours_net.parameters(), lr=0.01, weight_decay=weight_decay)
    reference = torch.optim.Adam(torch_net.parameters(), lr=0.01, weight_decay=weight_decay)
    for ids in BATCHES:
        for net, optimizer in ((ours_net, ours), (torch_net, reference)):
            optimizer.zero_grad()
            loss_of(net, ids).backward()
            optimizer.step()
    for (name, a), (_, b) in zip(ours_net.named_parameters(), torch_net.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_sparse_embedding_follows_sparse_adam_and_leaves_other_rows():
    ours_net = small_net(True)
    reference_net = copy.deepcopy(ours_net)
    initial = ours_net["embedding"].weight.detach().clone()
    ours = LazyAdam([ours_net["embedding"].weight], lr=0.01)
    reference = torch.optim.SparseAdam([reference_net["embedding"].weight], lr=0.01)
    for ids in BATCHES:
        for net, optimizer in ((ours_net, ours), (reference_net, reference)):
            optimizer.zero_grad()
            loss_of(net, ids).backward()
            optimizer.step()
    torch.testing.assert_close(ours_net["embedding"].weight, reference_net["embedding"].weight, rtol=1e-6, atol=1e-7)
    used = torch.unique(torch.cat(BATCHES))
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[used] = False
    untouched[0] = True  # padding row never changes
    assert torch.equal(ours_net["embedding"].weight[untouched], initial[untouched])
    assert not torch.equal(ours_net["embedding"].weight[3], initial[3])


def test_first_sparse_step_equals_dense_adam():
    sparse_net, dense_net = small_net(True), small_net(False)
    for net in (sparse_net, dense_net):
        optimizer = LazyAdam(net.parameters(), lr=0.05)
        loss_of(net, BATCHES[0]).backward()
        optimizer.step()
    torch.testing.assert_close(sparse_net["embedding"].weight, dense_net["embedding"].weight, rtol=1e-6, atol=1e-7)


def test_clip_grad_norm_matches_torch_and_handles_sparse():
    sparse_net, dense_net, reference = small_net(True), small_net(False), small_net(False)
    for net in (sparse_net, dense_net, reference):
        loss_of(net, torch.tensor([2, 2, 5, 0])).backward()
    expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
    assert clip_grad_norm(dense_net.parameters(), 0.5) == pytest.approx(float(expected), rel=1e-6)
    assert clip_grad_norm(sparse_net.parameters(), 0.5) == pytest.approx(float(expected), rel=1e-6)
    for (name, a), (_, b) in zip(sparse_net.named_parameters(), reference.named_parameters(), strict=True):
        got = a.grad.to_dense() if a.grad.is_sparse else a.grad
        torch.testing.assert_close(got, b.grad, rtol=1e-6, atol=1e-7, msg=name)


def test_coalesced_sums_each_rows_entries_as_torch_does():
    generator = torch.Generator().manual_seed(2)
    rows = torch.randint(0, 50, (300,), generator=generator)  # many rows repeated, in no order
    grad = torch.sparse_coo_tensor(rows[None], torch.randn(300, 4, generator=generator), (60, 4), check_invariants=True)
    ours, torchs = coalesced(grad), grad.coalesce()
    assert ours.is_coalesced() and torch.equal(ours.indices(), torchs.indices())
    torch.testing.assert_close(ours.values(), torchs.values())
