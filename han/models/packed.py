"""Packed sequences and a fast CPU bidirectional GRU over them.

`PackedLayout` describes variable-length sequences packed time-major, longest first: the order of
`torch.nn.utils.rnn.PackedSequence`, so `nn.GRU` and `fused_bidirectional_gru` read the same data.

`flatten_documents` lays a batch of documents (sentences of words) out as one token sequence each,
for the flat networks and the bag of n-grams.

`fused_bidirectional_gru` computes exactly what `nn.GRU(bidirectional=True)` computes on a packed
sequence, faster on CPU:
- the input projections of every token, both directions, are one matrix multiply;
- the reverse direction runs on a mirrored copy of the packing, so both directions advance in
  lock-step with one batched matmul per time step;
- the backward pass is written by hand: per step only elementwise work (torch's fused sigmoid/tanh
  backward kernels, written straight into one gradient buffer) and one small batched matmul; the
  recurrent weight gradient is one large matmul at the end instead of one per step, and the
  gradients of positions that read the same input row are summed by one sparse (CSR) matmul per
  direction, grouped by the same sort that found the distinct rows (`distinct_rows`);
- without autograd (scoring) it runs a loop of its own that keeps nothing for a backward pass and gathers
  each step's input gates into a buffer that stays in cache (`_bidirectional_gru_scores`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PackedLayout:
    """Sequences of `lengths` packed time-major, longest first (ties keep their order)."""

    batch_sizes: torch.Tensor  # (T,) int64 on CPU: sequences still running at each time step
    sequence: torch.Tensor  # (P,) index of the sequence each packed position belongs to
    position: torch.Tensor  # (P,) time step of each packed position within its sequence
    mirror: torch.Tensor  # (P,) packed index of the same sequence at step length-1-position
    num_sequences: int

    @property
    def num_positions(self) -> int:
        return int(self.sequence.numel())

    def to(self, device: torch.device) -> PackedLayout:
        """The layout with its index tensors on `device` (batch sizes stay on the CPU, as PackedSequence needs)."""
        if self.sequence.device == torch.device(device):
            return self
        return PackedLayout(
            self.batch_sizes,
            self.sequence.to(device),
            self.position.to(device),
            self.mirror.to(device),
            self.num_sequences,
        )


def pack_layout(lengths: torch.Tensor) -> PackedLayout:
    """The packed layout of sequences with the given lengths (all >= 1)."""
    lengths = lengths.cpu()
    sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
    steps, count = int(sorted_lengths[0]), lengths.numel()
    active = torch.arange(steps)[:, None] < sorted_lengths[None, :]  # (T, N) time-major
    position, rank = active.nonzero(as_tuple=True)  # row-major over (T, N) = packed order
    packed_index = torch.full((steps, count), -1, dtype=torch.int64)
    packed_index[active] = torch.arange(position.numel())
    mirror = packed_index[sorted_lengths[rank] - 1 - position, rank]
    return PackedLayout(active.sum(1), order[rank], position, mirror, count)


@dataclass(frozen=True)
class SharedRows:
    """Which of U distinct input rows each of P packed positions reads, with the positions grouped by row.

    The grouping (`order`, `row_starts`) is what sums the positions' gradients back into their rows.
    """

    index: torch.Tensor  # (P,) row read at each packed position
    order: torch.Tensor  # (P,) positions sorted by row; ties keep position order
    row_starts: torch.Tensor  # (U + 1,) row u's positions are order[row_starts[u] : row_starts[u + 1]]

    @property
    def num_rows(self) -> int:
        return int(self.row_starts.numel()) - 1

    def sums(self, positions: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The (U, P) CSR matrix with a one at (index[p], p) for the given column order of positions.

        Multiplying a (P, K) tensor by it sums the rows of each group. `positions` is `order`, or a
        relabelling of it (the reverse direction reads position mirror[p]).
        """
        with warnings.catch_warnings():  # torch flags CSR support as beta; matmul by it is all han uses
            warnings.simplefilter("ignore")
            return torch.sparse_csr_tensor(
                self.row_starts,
                positions,
                positions.new_ones(positions.numel(), dtype=dtype),
                (self.num_rows, positions.numel()),
                check_invariants=False,
            )


def _starts(counts: torch.Tensor) -> torch.Tensor:
    """(U + 1,) where each of U consecutive groups of the given sizes starts, and the total at the end."""
    starts = torch.zeros(counts.numel() + 1, dtype=torch.int64, device=counts.device)
    torch.cumsum(counts, 0, out=starts[1:])
    return starts


def shared_rows(index: torch.Tensor, num_rows: int) -> SharedRows:
    """Group the packed positions of `index` (values in [0, num_rows)) by the row they read."""
    order = torch.argsort(index, stable=True)
    return SharedRows(index, order, _starts(torch.bincount(index, minlength=num_rows)))


def distinct_rows(values: torch.Tensor) -> tuple[torch.Tensor, SharedRows]:
    """The sorted distinct values (U,) of the (P,) `values`, and which of them each position reads (torch.unique's
    inverse), grouped: one sort serves both."""
    sorted_values, order = torch.sort(values, stable=True)
    distinct, counts = torch.unique_consecutive(sorted_values, return_counts=True)  # (U,), (U,)
    index = torch.empty_like(order)
    index[order] = torch.repeat_interleave(torch.arange(distinct.numel(), device=values.device), counts)
    return distinct, SharedRows(index, order, _starts(counts))


@dataclass
class FlatDocuments:
    """A batch's documents as flat token sequences (sentences concatenated in order)."""

    tokens: torch.Tensor  # (T,) token ids, document after document
    document: torch.Tensor  # (T,) the document of each token
    position: torch.Tensor  # (T,) the token's position in its document
    lengths: torch.Tensor  # (B,) tokens per document (>= 1)

    def padded(self, width: int, pad_id: int) -> torch.Tensor:
        """(B, max(L, width)) token ids, `pad_id` after each document's end."""
        grid = self.tokens.new_full((self.lengths.numel(), max(int(self.lengths.max()), width)), pad_id)
        grid[self.document, self.position] = self.tokens
        return grid


def flatten_documents(
    word_ids: torch.Tensor, sentence_lengths: torch.Tensor, sentence_counts: torch.Tensor
) -> FlatDocuments:
    """Concatenate each document's sentences into one token sequence."""
    # word_ids (N_s, W); sentence_lengths (N_s,); sentence_counts (B,)
    device = word_ids.device
    real = torch.arange(word_ids.size(1), device=device)[None, :] < sentence_lengths[:, None]  # (N_s, W)
    tokens = word_ids[real]  # (T,) row-major: sentence after sentence, so document after document
    num_docs = sentence_counts.numel()
    sentence_document = torch.repeat_interleave(torch.arange(num_docs, device=device), sentence_counts)  # (N_s,)
    document = torch.repeat_interleave(sentence_document, sentence_lengths)  # (T,)
    lengths = torch.zeros(num_docs, dtype=torch.int64, device=device).index_add(
        0, sentence_document, sentence_lengths
    )  # (B,)
    starts = torch.cumsum(lengths, 0) - lengths  # (B,)
    position = torch.arange(tokens.numel(), device=device) - starts[document]  # (T,)
    return FlatDocuments(tokens, document, position, lengths)


class _FusedBidirectionalGRU(torch.autograd.Function):
    """Input projection, both recurrences and the output of a bidirectional GRU in one autograd node.

    Packed position p reads input row `rows.index[p]` (all rows when `rows` is None): the word encoder passes each distinct word of the
    batch once, so the input projection costs U (distinct words) rows instead of P (tokens).
    Direction 1 runs over the mirrored packing (`mirror`), so at every time step the same rows of
    both directions are active and one batched matmul serves both. Gate order is nn.GRU's:
    r = s(x_r + h_r), z = s(x_z + h_z), n = tanh(x_n + r * h_n), h' = (1 - z) n + z h.
    Buffers are reused in place, so the graph supports one backward pass (no double backward).
    """

    @staticmethod
    def forward(ctx, inputs, weight_ih, bias_ih, weight_hh, bias_hh, batch_sizes, rows, mirror):
        # inputs (U, D), or (P, D) when rows is None; weight_ih (6H, D); bias_ih (6H,); weight_hh (2, 3H, H);
        # bias_hh (2, 3H); rows a SharedRows over P positions, or None; mirror (P,)
        positions, hidden = mirror.numel(), weight_hh.size(2)
        # The h-side biases of r and z only ever add to the x side's: folded into the projection once, so
        # each step's recurrent matmul needs no bias (b_hn stays inside: it is multiplied by r).
        folded = bias_hh.clone()  # (2, 3H)
        folded[:, 2 * hidden :] = 0
        projected = torch.addmm(bias_ih + folded.reshape(-1), inputs, weight_ih.t())  # (U, 6H): both directions
        gates_x = inputs.new_empty(2, positions, 3 * hidden)  # x-side pre-activations, then r, z, n
        if rows is None:  # one input row per position
            gates_x[0] = projected[:, : 3 * hidden]
            torch.index_select(projected[:, 3 * hidden :], 0, mirror, out=gates_x[1])
        else:
            torch.index_select(projected[:, : 3 * hidden], 0, rows.index, out=gates_x[0])
            torch.index_select(projected[:, 3 * hidden :], 0, rows.index[mirror], out=gates_x[1])
        del projected
        # Each step's recurrent matmul gets a tensor of its own (a matmul writing into a strided slice of a
        # larger buffer would go through a hidden copy); elementwise results go straight into `states`.
        gates_h = []  # (2, n, 3H) per step: h W_hh^T (+ b_hn in the n part)
        states = inputs.new_empty(2, positions, hidden)  # (2, P, H): h_t of every position, both directions
        weight_hh_t, bias_n = weight_hh.transpose(1, 2), bias_hh[:, None, 2 * hidden :]  # (2, H, 3H), (2, 1, H)
        previous = inputs.new_zeros(2, batch_sizes[0], hidden)
        offset = 0
        for size in batch_sizes:
            previous = previous[:, :size]  # sequences still running are the first `size` rows
            gx = gates_x[:, offset : offset + size]
            gh = torch.bmm(previous, weight_hh_t)  # (2, n, 3H): h W_hh^T
            gh[..., 2 * hidden :].add_(bias_n)  # + b_hn
            rz = gx[..., : 2 * hidden]
            rz.add_(gh[..., : 2 * hidden]).sigmoid_()  # r, z
            n = gx[..., 2 * hidden :]
            n.addcmul_(rz[..., :hidden], gh[..., 2 * hidden :]).tanh_()  # n
            current = states[:, offset : offset + size]
            torch.lerp(n, previous, rz[..., hidden:], out=current)  # h' = n + z (h - n)
            previous = current
            gates_h.append(gh)
            offset += size
        ctx.save_for_backward(inputs, weight_ih, weight_hh, gates_x, states, mirror)
        ctx.rows = rows
        ctx.gates_h = gates_h
        ctx.batch_sizes = batch_sizes
        output = inputs.new_empty(positions, 2 * hidden)  # (P, 2H): forward | reverse, packed order
        output[:, :hidden] = states[0]
        output[:, hidden:] = states[1].index_select(0, mirror)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        inputs, weight_ih, weight_hh, gates_x, states, mirror = ctx.saved_tensors
        gates_h, batch_sizes, rows = ctx.gates_h, ctx.batch_sizes, ctx.rows
        ctx.gates_h = ctx.rows = None
        positions, hidden = mirror.numel(), weight_hh.size(2)
        grad_states = grad_output.new_empty(2, positions, hidden)
        grad_states[0] = grad_output[:, :hidden]
        grad_states[1] = grad_output[:, hidden:].index_select(0, mirror)
        # Per position, the gradients of the pre-activations in the order [h_n, r, z, n]: the h side reads the
        # first three (its weight rows reordered to match), the x side the last three (r, z, n: its own order).
        grads = grad_output.new_empty(2, positions, 4 * hidden)
        weight_hh_nrz = torch.cat([weight_hh[:, 2 * hidden :], weight_hh[:, : 2 * hidden]], dim=1)  # (2, 3H, H)
        offsets = [0]
        for size in batch_sizes:
            offsets.append(offsets[-1] + size)
        grad_state = None  # dL/dh_t flowing back in time from step t + 1: (2, batch_sizes[t + 1], H)
        for t in range(len(batch_sizes) - 1, -1, -1):
            size, offset = batch_sizes[t], offsets[t]
            step = slice(offset, offset + size)
            d = grad_states[:, step]  # dL/dh_t: the output's gradient, plus (below) what flows back
            if grad_state is not None:  # sequences whose last step is t get nothing from t + 1
                d[:, : grad_state.size(1)].add_(grad_state)
            gx, gh, g = gates_x[:, step], gates_h[t], grads[:, step]
            r, z, n = gx[..., :hidden], gx[..., hidden : 2 * hidden], gx[..., 2 * hidden :]
            d_hn, dr, dz, dn = (
                g[..., :hidden],
                g[..., hidden : 2 * hidden],
                g[..., 2 * hidden : 3 * hidden],
                g[..., 3 * hidden :],
            )
            # Fewest passes over the step's rows: torch's sigmoid/tanh backward kernels fuse s(1 - s) and 1 - n^2.
            carried = d * z  # the part of dL/dh_t that reaches h_{t-1} directly
            _tanh_backward(torch.sub(d, carried, out=dn), n, grad_input=dn)  # dL/d(x_n + r h_n) = d (1 - z)(1 - n^2)
            if t > 0:
                torch.sub(states[:, offsets[t - 1] : offsets[t - 1] + size], n, out=dz)
            else:
                torch.neg(n, out=dz)  # h_{-1} = 0
            _sigmoid_backward(dz.mul_(d), z, grad_input=dz)  # d (h_{t-1} - n) z (1 - z)
            _sigmoid_backward(torch.mul(dn, gh[..., 2 * hidden :], out=dr), r, grad_input=dr)  # dn h_n r (1 - r)
            torch.mul(dn, r, out=d_hn)
            grad_state = torch.baddbmm(carried, g[..., : 3 * hidden], weight_hh_nrz)  # dL/dh_{t-1}, (2, n, H)

        # h_{t-1} at every position: the same sequence one step earlier (zero at t = 0)
        steps_before = torch.repeat_interleave(torch.tensor([0, *batch_sizes[:-1]]), torch.tensor(batch_sizes))
        previous_states = states[:, torch.arange(positions) - steps_before]
        previous_states[:, : batch_sizes[0]] = 0
        grad_h = grads[..., : 3 * hidden]  # (2, P, 3H) in n, r, z order
        grad_weight_nrz = torch.bmm(grad_h.transpose(1, 2), previous_states)  # (2, 3H, H), one matmul
        grad_weight_hh = torch.cat([grad_weight_nrz[:, hidden:], grad_weight_nrz[:, :hidden]], dim=1)
        grad_bias_nrz = grad_h.sum(1)  # (2, 3H)
        grad_bias_hh = torch.cat([grad_bias_nrz[:, hidden:], grad_bias_nrz[:, :hidden]], dim=1)

        # x side: each direction's (r, z, n) gradients summed per input row. Direction 1 ran over the mirrored
        # packing, so its position p read row index[mirror[p]]: its grouping is `order` relabelled by mirror
        # (mirror is its own inverse).
        forward_x, reverse_x = grads[0, :, hidden:], grads[1, :, hidden:]  # (P, 3H) each
        if rows is None:  # one input row per position
            grad_projected = torch.cat([forward_x, reverse_x.index_select(0, mirror)], dim=1)  # (P, 6H)
        else:
            grad_projected = torch.cat(
                [
                    rows.sums(rows.order, forward_x.dtype) @ forward_x,
                    rows.sums(mirror[rows.order], forward_x.dtype) @ reverse_x,
                ],
                dim=1,
            )  # (U, 6H)
        grad_inputs = grad_projected @ weight_ih if ctx.needs_input_grad[0] else None  # (U, D)
        grad_weight_ih = grad_projected.t() @ inputs  # (6H, D)
        grad_bias_ih = grad_projected.sum(0)
        return grad_inputs, grad_weight_ih, grad_bias_ih, grad_weight_hh, grad_bias_hh, None, None, None


_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input  # grad * s (1 - s), written to grad_input
_tanh_backward = torch.ops.aten.tanh_backward.grad_input  # grad * (1 - t^2), written to grad_input


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def fused_bidirectional_gru(
    inputs: torch.Tensor, layout: PackedLayout, gru: nn.GRU, rows: SharedRows | None = None
) -> torch.Tensor:
    """Outputs (P, 2H) of the single-layer bidirectional `gru` on packed inputs, as nn.GRU would give.

    `inputs` (P, D) holds one row per packed position, or, with `rows`, the distinct rows (U, D) that
    packed position p reads as `inputs[rows.index[p]]`.
    """
    if _autocast_enabled(inputs.device.type):
        # The kernel writes into preallocated buffers of one dtype: it runs in fp32 under autocast.
        with torch.autocast(inputs.device.type, enabled=False):
            return fused_bidirectional_gru(inputs.float(), layout, gru, rows)
    p = dict(gru.named_parameters())  # typed as tensors (attribute access is typed Tensor | Module)
    weight_ih = torch.cat([p["weight_ih_l0"], p["weight_ih_l0_reverse"]])  # (6H, D)
    bias_ih = torch.cat([p["bias_ih_l0"], p["bias_ih_l0_reverse"]])  # (6H,)
    weight_hh = torch.stack([p["weight_hh_l0"], p["weight_hh_l0_reverse"]])  # (2, 3H, H)
    bias_hh = torch.stack([p["bias_hh_l0"], p["bias_hh_l0_reverse"]])  # (2, 3H)
    batch_sizes = layout.batch_sizes.tolist()
    if not torch.is_grad_enabled():  # scoring: nothing is kept for a backward pass
        return _bidirectional_gru_scores(
            inputs, weight_ih, bias_ih, weight_hh, bias_hh, batch_sizes, rows, layout.mirror
        )
    return _FusedBidirectionalGRU.apply(
        inputs, weight_ih, bias_ih, weight_hh, bias_hh, batch_sizes, rows, layout.mirror
    )


def _bidirectional_gru_scores(
    inputs: torch.Tensor,
    weight_ih: torch.Tensor,
    bias_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor,
    batch_sizes: list[int],
    rows: SharedRows | None,
    mirror: torch.Tensor,
) -> torch.Tensor:
    """`_FusedBidirectionalGRU.forward` without autograd, for scoring: the same arithmetic, less memory traffic.

    Each step gathers its own input gates (both directions, one `index_select`) into a small buffer that
    stays in cache, instead of all positions' gates into one large buffer first; and the hidden state
    carries a constant 1 in an extra column, so the step's matmul adds b_hn itself.
    """
    positions, hidden = mirror.numel(), weight_hh.size(2)
    folded = bias_hh.clone()  # (2, 3H): b_hr and b_hz join the x side, as in the autograd kernel
    folded[:, 2 * hidden :] = 0
    projected = torch.addmm(bias_ih + folded.reshape(-1), inputs, weight_ih.t())  # (U, 6H)
    table = projected.view(-1, 3 * hidden)  # (2U, 3H): row 2u forward gates of input u, 2u + 1 its reverse
    source = rows.index if rows is not None else torch.arange(positions, device=inputs.device)  # (P,)
    sizes = torch.tensor(batch_sizes, device=inputs.device)  # (T,)
    starts = torch.cumsum(sizes, 0) - sizes  # (T,) first packed position of each step
    step = torch.repeat_interleave(torch.arange(len(batch_sizes), device=inputs.device), sizes)  # (P,)
    # Step t's gates sit at [2 start_t, 2 start_t + 2 n_t): its n_t forward rows, then its n_t reverse rows.
    gather = torch.empty(2 * positions, dtype=torch.int64, device=inputs.device)  # (2P,)
    slot = torch.arange(positions, device=inputs.device) + starts[step]  # (P,)
    gather[slot] = 2 * source
    gather[slot + sizes[step]] = 2 * source[mirror] + 1
    # h W_hh^T + b_hn in one matmul: [h, 1] @ [[W_hh^T], [0, 0, b_hn]]
    weight_hh_t = torch.cat([weight_hh.transpose(1, 2), inputs.new_zeros(2, 1, 3 * hidden)], dim=1)  # (2, H+1, 3H)
    weight_hh_t[:, hidden, 2 * hidden :] = bias_hh[:, 2 * hidden :]
    states = inputs.new_empty(2, positions, hidden + 1)  # (2, P, H+1): h_t of every position, and the 1
    states[..., hidden] = 1
    previous = inputs.new_zeros(2, batch_sizes[0], hidden + 1)  # (2, n_0, H+1): h_{-1} = 0
    previous[..., hidden] = 1
    gates = inputs.new_empty(2 * batch_sizes[0], 3 * hidden)  # (2 n_0, 3H) the step's input gates
    offset = 0
    for size in batch_sizes:
        previous = previous[:, :size]  # sequences still running are the first `size` rows
        gx = torch.index_select(table, 0, gather[2 * offset : 2 * (offset + size)], out=gates[: 2 * size])
        gx = gx.view(2, size, 3 * hidden)  # (2, n, 3H)
        gh = torch.bmm(previous, weight_hh_t)  # (2, n, 3H): h W_hh^T, + b_hn in the n part
        rz = gx[..., : 2 * hidden]
        rz.add_(gh[..., : 2 * hidden]).sigmoid_()  # r, z
        n = gx[..., 2 * hidden :]
        n.addcmul_(rz[..., :hidden], gh[..., 2 * hidden :]).tanh_()  # n
        current = states[:, offset : offset + size]
        torch.lerp(n, previous[..., :hidden], rz[..., hidden:], out=current[..., :hidden])  # h' = n + z (h - n)
        previous = current
        offset += size
    output = inputs.new_empty(positions, 2 * hidden)  # (P, 2H): forward | reverse, packed order
    output[:, :hidden] = states[0, :, :hidden]
    output[:, hidden:] = states[1].index_select(0, mirror)[:, :hidden]
    return output
