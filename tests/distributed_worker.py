"""Launched by tests/test_distributed.py under torchrun: `han.training.train.train` with every weight recorded after each step.

    torchrun --nproc-per-node 2 tests/distributed_worker.py CONFIG RUN_DIR OUT_DIR [key=value ...]

Writes OUT_DIR/rank<R>.safetensors holding `step_<k>`: all parameters, flattened, after optimizer step k.
With HAN_TEST_STOP_AT=k, rank 0 sends itself SIGTERM after its k-th step (every rank must then stop
at that step and exit; the worker prints "stopped"); HAN_TEST_RESUME=1 trains with resume=True.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

import han.training.train as training
from han.config import load_config
from han.errors import TrainingStopped
from han.progress import Progress


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
