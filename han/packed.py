"""Packed sequences and a fast CPU bidirectional GRU over them.

`PackedLayout` describes variable-length sequences packed time-major, longest first: the order of
`torch.nn.utils.rnn.PackedSequence`, so `nn.GRU` and `fused_bidirectional_gru` read the same data.

`fused_bidirectional_gru` computes exactly what `nn.GRU(bidirectional=True)` computes on a packed
sequence, faster on CPU:
- the input projections of every token, both directions, are one matrix multiply;
- the reverse direction runs on a mirrored copy of the packing, so both directions advance in
  lock-step with one batched matmul per time step;
- the backward pass is written by hand: per step only elementwise work and one small batched matmul,
  and the recurrent weight gradient is one large matmul at the end instead of one per step.
"""

from __future__ import annotations

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


class _FusedBidirectionalGRU(torch.autograd.Function):
    """Input projection, both recurrences and the output of a bidirectional GRU in one autograd node.

    Packed position p reads input row `rows[p]`: the word encoder passes each distinct word of the
    batch once, so the input projection costs U (distinct words) rows instead of P (tokens).
    Direction 1 runs over the mirrored packing (`mirror`), so at every time step the same rows of
    both directions are active and one batched matmul serves both. Gate order is nn.GRU's:
    r = s(x_r + h_r), z = s(x_z + h_z), n = tanh(x_n + r * h_n), h' = (1 - z) n + z h.
    Buffers are reused in place, so the graph supports one backward pass (no double backward).
    """

    @staticmethod
    def forward(ctx, inputs, weight_ih, bias_ih, weight_hh, bias_hh, batch_sizes, rows, mirror):
        # inputs (U, D); weight_ih (6H, D); bias_ih (6H,); weight_hh (2, 3H, H); bias_hh (2, 3H); rows, mirror (P,)
        positions, hidden = rows.numel(), weight_hh.size(2)
        mirror_rows = rows[mirror]
        # The h-side biases of r and z only ever add to the x side's: folded into the projection once, so
        # each step's recurrent matmul needs no bias (b_hn stays inside: it is multiplied by r).
        folded = bias_hh.clone()  # (2, 3H)
        folded[:, 2 * hidden :] = 0
        projected = torch.addmm(bias_ih + folded.reshape(-1), inputs, weight_ih.t())  # (U, 6H): both directions
        gates_x = inputs.new_empty(2, positions, 3 * hidden)  # x-side pre-activations, then r, z, n
        torch.index_select(projected[:, : 3 * hidden], 0, rows, out=gates_x[0])
        torch.index_select(projected[:, 3 * hidden :], 0, mirror_rows, out=gates_x[1])
        del projected
        # Per-step results get tensors of their own: a matmul writing into a strided slice of a
        # larger buffer would go through a hidden copy at every step.
        gates_h = []  # (2, n, 3H) per step: h W_hh^T (+ b_hn in the n part; the r, z parts are overwritten in backward)
        step_states = []  # (2, n, H) per step
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
            previous = torch.lerp(n, previous, rz[..., hidden:])  # h' = n + z (h - n)
            gates_h.append(gh)
            step_states.append(previous)
            offset += size
        states = torch.cat(step_states, dim=1)  # (2, P, H)
        ctx.save_for_backward(inputs, weight_ih, weight_hh, gates_x, states, rows, mirror, mirror_rows)
        ctx.gates_h = gates_h
        ctx.batch_sizes = batch_sizes
        output = inputs.new_empty(positions, 2 * hidden)  # (P, 2H): forward | reverse, packed order
        output[:, :hidden] = states[0]
        output[:, hidden:] = states[1].index_select(0, mirror)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        inputs, weight_ih, weight_hh, gates_x, states, rows, mirror, mirror_rows = ctx.saved_tensors
        gates_h, batch_sizes = ctx.gates_h, ctx.batch_sizes
        ctx.gates_h = None
        positions, hidden = rows.numel(), weight_hh.size(2)
        grad_states = grad_output.new_empty(2, positions, hidden)
        grad_states[0] = grad_output[:, :hidden]
        grad_states[1] = grad_output[:, hidden:].index_select(0, mirror)
        grad_candidate = grad_output.new_empty(2, positions, hidden)  # dL/d(x_n + r h_n)
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
            gx, gh = gates_x[:, step], gates_h[t]
            r, z, n = gx[..., :hidden], gx[..., hidden : 2 * hidden], gx[..., 2 * hidden :]
            dn = grad_candidate[:, step]
            torch.mul(d, 1 - z, out=dn).mul_(1 - n * n)
            # gh becomes dL/d(h-side pre-activations): dr, dz, d(h_n); each read before it is overwritten
            dz = gh[..., hidden : 2 * hidden]
            if t > 0:
                torch.sub(states[:, offsets[t - 1] : offsets[t - 1] + size], n, out=dz)
            else:
                torch.neg(n, out=dz)  # h_{-1} = 0
            dz.mul_(d).mul_(z * (1 - z))
            torch.mul(dn, gh[..., 2 * hidden :], out=gh[..., :hidden]).mul_(r * (1 - r))
            torch.mul(dn, r, out=gh[..., 2 * hidden :])
            grad_state = torch.baddbmm(d * z, gh, weight_hh)  # dL/dh_{t-1}, (2, n, H)
        grad_gates_h = torch.cat(gates_h, dim=1)  # (2, P, 3H)

        # h_{t-1} at every position: the same sequence one step earlier (zero at t = 0)
        steps_before = torch.repeat_interleave(torch.tensor([0, *batch_sizes[:-1]]), torch.tensor(batch_sizes))
        previous_states = states[:, torch.arange(positions) - steps_before]
        previous_states[:, : batch_sizes[0]] = 0
        grad_weight_hh = torch.bmm(grad_gates_h.transpose(1, 2), previous_states)  # (2, 3H, H), one matmul
        grad_bias_hh = grad_gates_h.sum(1)

        # x side: the r and z parts equal the h side's, the n part is grad_candidate; summed per input row
        grad_projected = grad_output.new_zeros(inputs.size(0), 6 * hidden)  # (U, 6H)
        forward_part, reverse_part = grad_projected[:, : 3 * hidden], grad_projected[:, 3 * hidden :]
        forward_part.index_add_(0, rows, torch.cat([grad_gates_h[0, :, : 2 * hidden], grad_candidate[0]], dim=1))
        reverse_part.index_add_(0, mirror_rows, torch.cat([grad_gates_h[1, :, : 2 * hidden], grad_candidate[1]], dim=1))
        grad_inputs = grad_projected @ weight_ih if ctx.needs_input_grad[0] else None  # (U, D)
        grad_weight_ih = grad_projected.t() @ inputs  # (6H, D)
        grad_bias_ih = grad_projected.sum(0)
        return grad_inputs, grad_weight_ih, grad_bias_ih, grad_weight_hh, grad_bias_hh, None, None, None


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def fused_bidirectional_gru(
    inputs: torch.Tensor, layout: PackedLayout, gru: nn.GRU, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Outputs (P, 2H) of the single-layer bidirectional `gru` on packed inputs, as nn.GRU would give.

    `inputs` (P, D) holds one row per packed position, or, with `rows` (P,), the distinct rows
    (U, D) that packed position p reads as `inputs[rows[p]]`.
    """
    if rows is None:
        rows = torch.arange(layout.num_positions, device=inputs.device)
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
    return _FusedBidirectionalGRU.apply(
        inputs, weight_ih, bias_ih, weight_hh, bias_hh, batch_sizes, rows, layout.mirror
    )
