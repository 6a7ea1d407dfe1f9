"""Launched by tests/test_distributed.py under torchrun: `han.training.train.train` with every weight recorded after each step.

    torchrun --nproc-per-node 2 tests/distributed_worker.py CONFIG RUN_DIR OUT_DIR [key=value ...]

Writes OUT_DIR/rank<R>.safetensors holding `step_<k>`: all parameters, flattened, after optimizer step k.
With HAN_TEST_STOP_AT=k, rank 0 sends itself SIGTERM after its k-th step (every rank must then stop
at that step and exit; the worker prints "stopped"); HAN_TEST_RESUME=1 trains with resume=True.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

import han.training.train as training
from han.config import load_config
from han.errors import TrainingStopped
from han.progress import Progress
from pipelines.cli import leave


class SignalAtStep(Progress):
    """Sends this process SIGTERM after training step `step` (the loop reports loss with every step)."""

    def __init__(self, step: int) -> None:
        self.step, self.seen = step, 0

    def advance(self, amount: int = 1, **info: object) -> None:
        if info:
            self.seen += 1
            if self.seen == self.step:
                os.kill(os.getpid(), signal.SIGTERM)


def flat_weights(model: torch.nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).cpu().numpy().copy()


def record_steps(snapshots: list[np.ndarray]):
    """Make `han.training.train.make_optimizer` append the model's weights to `snapshots` after every step; return the original."""
    original = training.make_optimizer

    def make_optimizer(model: torch.nn.Module, config, train_documents: int):
        optimizer = original(model, config, train_documents)
        optimizer.register_step_post_hook(lambda *_: snapshots.append(flat_weights(model)))
        return optimizer

    training.make_optimizer = make_optimizer
    return original


def save_snapshots(snapshots: list[np.ndarray], path: Path) -> None:
    save_file({f"step_{k}": weights for k, weights in enumerate(snapshots)}, str(path))


# How close data-parallel training must come to one process (tests/test_distributed.py, tests/test_multilabel.py).
# Data-parallel training computes every step's gradient as the same
# sum as one process, in another order: each rank sums its part of the batch and the all-reduce adds the
# parts. No constant bounds what that does to the weights: float32 rounding of near-zero gradients goes
# through Adam's division by sqrt(v) + eps and through the recurrences, and its size depends on the CPU's
# kernels (their vector width decides the summation trees: on an AVX-512 machine the ensemble differed by
# 3.8e-5 where this one gives 8e-6). So the bound is measured on the machine that runs the test: the same
# single-process training with each batch's documents reversed is another order of the same sums, a
# rounding perturbation of the same kind, and DDP must stay within REORDERING_FACTOR times its distance
# from the plain run (measured ratios 0.25 to 1.3), or ROUNDING_FLOOR where the reordering changes nothing.
# A real fault (a document dropped, counted twice or weighted wrongly) moves weights by ~lr = 2e-3 a step,
# far above the bound.
REORDERING_FACTOR = 4.0
ROUNDING_FLOOR = 1e-6


def train_single(config, run_dir: Path, reversed_batches: bool = False) -> list[np.ndarray]:
    """Train in this process, recording the weights after every step; `reversed_batches`: each batch's documents
    in reverse order (the same sums in another order)."""
    snapshots: list[np.ndarray] = []
    original, batches = record_steps(snapshots), training.bucketed_batches
    if reversed_batches:
        training.bucketed_batches = lambda split, size, rng: [b[::-1].copy() for b in batches(split, size, rng)]
    try:
        training.train(config, run_dir)
    finally:
        training.make_optimizer, training.bucketed_batches = original, batches
    return snapshots


def largest_difference(a: list[np.ndarray] | dict, b: list[np.ndarray] | dict) -> float:
    """max |a - b| over the weights of every step (lists) or every tensor (dicts of arrays)."""
    pairs = zip(a, b, strict=True) if isinstance(a, list) else ((a[k], b[k]) for k in a)
    return max(float(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).max()) for x, y in pairs)


def rounding_bound(config, plain_dir: Path, scratch: Path) -> float:
    """The distance DDP may have from `plain_dir`'s last weights (trained with `config` in one process):
    REORDERING_FACTOR times what reversing each batch's documents does to them on this machine."""
    reordered = scratch / "reordered"
    shutil.copytree(plain_dir, reordered, ignore=shutil.ignore_patterns("model", "checkpoints", "train_log.jsonl"))
    train_single(config, reordered, reversed_batches=True)
    noise = largest_difference(
        load_file(str(plain_dir / "model" / "last.safetensors")),
        load_file(str(reordered / "model" / "last.safetensors")),
    )
    return max(REORDERING_FACTOR * noise, ROUNDING_FLOOR)


def main() -> None:
    config_path, run_dir, out_dir, *overrides = sys.argv[1:]
    snapshots: list[np.ndarray] = []
    record_steps(snapshots)
    stop_at = int(os.environ.get("HAN_TEST_STOP_AT", "0"))
    progress = SignalAtStep(stop_at) if stop_at else None
    try:
        training.train(
            load_config(config_path, overrides),
            Path(run_dir),
            progress,
            resume=os.environ.get("HAN_TEST_RESUME") == "1",
        )
    except TrainingStopped:
        print(f"stopped rank {os.environ['RANK']}", flush=True)
        torch.distributed.destroy_process_group()
        return
    save_snapshots(snapshots, Path(out_dir) / f"rank{os.environ['RANK']}.safetensors")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
    # End as han's commands do, without the interpreter's teardown, where a rank once aborted after leaving the
    # process group ("terminate called without an active exception").
    leave(0)
