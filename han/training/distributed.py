"""Data-parallel training on `torch.distributed`, as launched by `torchrun`.

`torchrun --nproc-per-node N -m pipelines train CONFIG` starts N processes with RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous in their environment; `setup` joins them into one process group
(gloo on CPU, nccl on CUDA). Without those variables everything here is a single-process no-op,
so the training loop is the same code at any scale.

How a step is split (`train.batch_size` is the *global* batch):
- every rank draws the same global batch order (same seed), and takes its contiguous part of each
  global batch (`local_batch`): the parts are disjoint, cover the batch, and keep the batch's
  length bucketing;
- each rank's loss is the sum of its documents' losses / global batch size x world size; DDP averages
  gradients over ranks, so the gradient is exactly the single-process mean-loss gradient, even when a
  batch does not split evenly. A rank whose part is empty (a batch smaller than the world) runs one
  document of the batch with weight zero, so that every rank joins every gradient all-reduce;
- gradients are all-reduced by DistributedDataParallel. The sparse embedding gradient
  (`train.lazy_embedding_updates`) is all-reduced by gloo's sparse all-reduce; NCCL has none, so on
  NCCL the embedding gradient is dense (LazyAdam then updates every row, as torch.optim.Adam does);
- validation is sharded across ranks and the probabilities all-gathered, so every rank computes the
  same metrics and takes the same early-stopping decision; only rank 0 writes files.
So the same config gives the same training at any world size (same steps, same learning-rate
schedule), up to floating-point summation order. To train on bigger global batches, raise
`train.batch_size` and scale `train.lr` with it (linear rule for SGD; for Adam, start from the
square root of the batch ratio), keeping the warm-up.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from han.errors import ConfigError
from han.progress import Progress
from han.store.encoded import EncodedSplit
from han.util.device import resolve_device
from han.util.lock import folder_lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank, world size and device. One process: rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and logs."""
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        return dist.get_backend() if self.enabled else None

    @property
    def sparse_gradients(self) -> bool:
        """Whether gradients may be sparse: NCCL has no sparse all-reduce."""
        return self.backend != "nccl"


def launched_by_torchrun() -> bool:
    """True when torchrun started more than one process (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str = "auto", timeout_s: float | None = None) -> DistContext:
    """Join the torchrun process group (gloo on CPU, nccl on CUDA), or describe the single process.

    Idempotent: a second call returns the context of the group already joined.
    `timeout_s` (default $HAN_DIST_TIMEOUT_S or 600) bounds how long a collective waits for a lost rank.
    """
    if not launched_by_torchrun() and not dist.is_initialized():
        return DistContext(device=resolve_device(device, 0))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        timeout = timedelta(seconds=timeout_s or float(os.environ.get("HAN_DIST_TIMEOUT_S", "600")))
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo", timeout=timeout)
        log.debug(
            "rank %d of %d joined (%s on %s)", dist.get_rank(), dist.get_world_size(), dist.get_backend(), resolved
        )
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        device=resolved,
    )


def shutdown() -> None:
    """Leave the process group (if any)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait until every rank gets here (nothing to wait for in a single process)."""
    if ctx.enabled:
        dist.barrier()


# --- training ------------------------------------------------------------------------------------


def local_batch(indices: np.ndarray, ctx: DistContext) -> tuple[np.ndarray, int]:
    """This rank's contiguous part of a global batch and how many documents of it count.

    An empty part (a batch smaller than the world) becomes the batch's first document with count 0:
    the rank still runs forward and backward, so it joins the gradient all-reduce, but adds nothing.
    """
    if not ctx.enabled:
        return indices, len(indices)
    part = np.array_split(indices, ctx.world_size)[ctx.rank]
    return (part, len(part)) if len(part) else (indices[:1], 0)


def batch_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    counted: int,
    global_size: int,
    world_size: int,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The loss of this rank's documents, weighted so that DDP's gradient average is the global batch mean.

    Cross-entropy for class ids (b,), each document's term weighted by its class's `weight` (C,) when given
    (`train.class_weight`; a weighted sum over the global batch's size, not PyTorch's division by the summed
    weights, so the mean weight of 1 over the training documents keeps the loss's scale and every rank's share
    adds up to the same global mean); for label sets (b, C) the binary cross-entropy summed over labels (each
    label's positives weighted by `weight` (C,) when given, `train.positive_weight`), so a document weighs as
    in the single-label loss. `label_smoothing` (class ids only): train.label_smoothing's share of the target's
    mass spread evenly over the classes."""
    # logits (b, C) float; labels (b,) class ids or (b, C) 0/1
    if labels.dim() == 2:
        total = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=weight, reduction="sum")
    else:
        total = F.cross_entropy(logits.float(), labels, weight=weight, reduction="sum", label_smoothing=label_smoothing)
    return total * (world_size / global_size if counted else 0.0)


def wrap_model(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """The module to run training steps through: DistributedDataParallel over the ranks, or `model` itself."""
    if not ctx.enabled:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # DDP broadcasts rank 0's parameters now, so every rank starts from the same weights.
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def reseed_per_rank(seed: int, ctx: DistContext) -> None:
    """Distinct dropout streams per rank (after the model is built); a single process keeps its seed untouched."""
    if ctx.enabled:
        torch.manual_seed(seed + 1_000_003 * ctx.rank)


def gather_rng_states(ctx: DistContext) -> list[torch.Tensor]:
    """[distributed] every rank's torch CPU generator state, in rank order (on every rank): a checkpoint
    keeps them all, so each rank resumes its own dropout stream."""
    states: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(states, torch.get_rng_state())
    return [torch.as_tensor(state, dtype=torch.uint8) for state in states]


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sums over ranks of a few numbers (epoch loss sums, document counts)."""
    if not ctx.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


class Ranks:
    """The data-parallel group as the training loop sees it: one object, so the loop has no branches for it.

    Every method does what a lone process does when the world is one process (sums are the value itself,
    agreement is the local flag, the model is not wrapped), so `han/training/train.py` reads the same at
    any scale. Under torchrun each method is the collective every rank calls at the same point."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx

    @classmethod
    def join(cls, device: str = "auto") -> Ranks:
        """Join the torchrun process group, or stand alone (`setup`)."""
        return cls(setup(device))

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes every file."""
        return self.ctx.is_main

    @property
    def world_size(self) -> int:
        return self.ctx.world_size

    @property
    def sparse_gradients(self) -> bool:
        """Whether the embedding may have sparse gradients (NCCL has no sparse all-reduce)."""
        return self.ctx.sparse_gradients

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module training steps run through: DistributedDataParallel over the ranks, or `model`."""
        return wrap_model(model, self.ctx)

    def reseed(self, seed: int) -> None:
        """Each rank its own dropout stream (after the model is built, so every rank builds the same one)."""
        reseed_per_rank(seed, self.ctx)

    def share_of(self, indices: np.ndarray) -> tuple[np.ndarray, int]:
        """This rank's part of a global batch and how many of its documents count (`local_batch`)."""
        return local_batch(indices, self.ctx)

    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        counted: int,
        global_size: int,
        weight: torch.Tensor | None,
        label_smoothing: float = 0.0,
    ) -> torch.Tensor:
        """This rank's loss, weighted so the gradient averaged over ranks is the global batch's (`batch_loss`;
        `weight`: the class weights, or for label sets the positives' weights)."""
        return batch_loss(logits, labels, counted, global_size, self.ctx.world_size, weight, label_smoothing)

    def sum(self, value: float) -> float:
        """`value` summed over the ranks."""
        return all_reduce_sum([value], self.ctx)[0]

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any (a stop request: every rank stops at the same step)."""
        return flag if not self.ctx.enabled else self.sum(1.0 if flag else 0.0) > 0

    def kept_once(self, value: float) -> float:
        """`value` on rank 0 and 0 on the others, so that a sum over the ranks counts it once (the epoch's
        loss sum a checkpoint keeps, and a resume restores)."""
        return value if self.is_main else 0.0

    def progress(self, progress: Progress | None) -> Progress:
        """The progress to report to: `progress` on rank 0, a silent one on the others (one bar per job)."""
        return progress if progress is not None and self.is_main else Progress()

    def writer_lock(self, folder: Path, command: str) -> AbstractContextManager[None]:
        """The lock of the folder rank 0 writes into (han.util.lock), taken by rank 0 alone: the ranks of one
        job are one writer."""
        return folder_lock(folder, command, create=False) if self.is_main else nullcontext()

    def rng_states(self) -> list[torch.Tensor]:
        """Every rank's dropout generator state, for the checkpoint (none for a lone process: its own is kept)."""
        return gather_rng_states(self.ctx) if self.ctx.enabled else []

    def evaluate(
        self, model: torch.nn.Module, split: EncodedSplit, label_names: list[str], batch_size: int, precision: str
    ) -> tuple[dict[str, Any], np.ndarray]:
        """Metrics and class probabilities of `model` on `split`, scored across the ranks; the same on every rank."""
        return evaluate_across_ranks(model, split, label_names, batch_size, precision, self.ctx)

    def barrier(self) -> None:
        """Wait for every rank."""
        barrier(self.ctx)


# --- sharded evaluation --------------------------------------------------------------------------


def contiguous_shard(count: int, index: int, num_shards: int) -> tuple[int, int]:
    """[start, stop) of shard `index` of `num_shards` near-equal contiguous slices of `count` items."""
    bounds = np.linspace(0, count, num_shards + 1).round().astype(int)
    return int(bounds[index]), int(bounds[index + 1])


def split_slice(split: EncodedSplit, start: int, stop: int) -> EncodedSplit:
    """Documents [start, stop) of an encoded split, as a split of their own."""
    first_sentence, last_sentence = split.document_offsets[start], split.document_offsets[stop]
    first_token, last_token = split.sentence_offsets[first_sentence], split.sentence_offsets[last_sentence]
    return EncodedSplit(
        split.tokens[first_token:last_token],
        split.sentence_offsets[first_sentence : last_sentence + 1] - first_token,
        split.document_offsets[start : stop + 1] - first_sentence,
        split.labels[start:stop],
    )


def gather_rows(rows: np.ndarray, ctx: DistContext) -> np.ndarray:
    """Concatenate every rank's (n_r, C) float32 rows in rank order (on every rank)."""
    if not ctx.enabled:
        return rows
    local = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(ctx.device)
    sizes = [torch.zeros(1, dtype=torch.int64, device=ctx.device) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, torch.tensor([local.size(0)], dtype=torch.int64, device=ctx.device))
    counts = [int(s.item()) for s in sizes]
    padded = local.new_zeros(max(counts), rows.shape[1])
    padded[: local.size(0)] = local
    gathered = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:n] for g, n in zip(gathered, counts, strict=True)]).cpu().numpy()


def score_across_ranks(
    model: torch.nn.Module, split: EncodedSplit, batch_size: int, precision: str, ctx: DistContext
) -> np.ndarray:
    """Class probabilities of every document of `split`: each rank scores a contiguous slice; all ranks get all."""
    from han.evaluation.scoring import num_classes, predict_probabilities

    if not ctx.enabled:
        return predict_probabilities(model, split, batch_size, precision)
    start, stop = contiguous_shard(len(split), ctx.rank, ctx.world_size)
    local = (
        predict_probabilities(model, split_slice(split, start, stop), batch_size, precision)
        if stop > start
        else np.zeros((0, num_classes(model)), dtype=np.float32)
    )
    return gather_rows(local, ctx)


def evaluate_across_ranks(
    model: torch.nn.Module,
    split: EncodedSplit,
    label_names: list[str],
    batch_size: int,
    precision: str,
    ctx: DistContext,
) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of `model` on a labelled split and its (N, C) class probabilities, scored across the ranks;
    identical on every rank.

    Multi-label splits are scored at threshold 0.5 (the validation thresholds are chosen after training)."""
    from han.evaluation.metrics import split_metrics

    probabilities = score_across_ranks(model, split, batch_size, precision, ctx)
    return split_metrics(split.labels, probabilities, label_names), probabilities


# --- launching -------------------------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` (0 <= i < n) as (i, n)."""
    index, sep, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        shard = (-1, 0)
    if not sep or not 0 <= shard[0] < shard[1]:
        raise ConfigError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. --shard 0/4")
    return shard


def shard_from_env(shard: tuple[int, int] | None) -> tuple[int, int] | None:
    """An explicit shard, or under torchrun (rank, world size); None for a single unsharded process."""
    if shard is not None:
        return shard
    if launched_by_torchrun():
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return None


def torchrun_command(nproc: int, arguments: list[str]) -> list[str]:
    """The command that runs `python -m pipelines ARGUMENTS` in `nproc` processes on this machine."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "pipelines",
        *arguments,
    ]
