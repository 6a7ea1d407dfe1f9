"""How much bf16 could speed han up on a CPU that computes in bf16 natively: the share of a training pass and of
a scoring pass that is matrix products, and the whole pass's speed-up that share allows.

    python -m benchmarks.bf16_bound RUN_DIR [--docs 4096] [--reps 3] [--ratio 2.5]

RUN_DIR is a trained run (e.g. the IMDB-sized stand-in's, as benchmarks.realtext makes it). bf16 pays in matrix
products: a native bf16 CPU multiplies in bf16 and accumulates in fp32. The rest of a pass (the recurrence's
gates, gathers, copies, the optimizer) runs elementwise on small tensors, a handful of microseconds a call,
and stays as fast as in fp32. So if matrix products are a share `s` of a pass and bf16 makes them `r` times
faster, the pass is at most 1 / ((1 - s) + s / r) times faster (Amdahl's law), whatever else is done.

Measured here in fp32, medians of `--reps` passes after a warm-up, on the run's own split documents:
- scoring: the model's forward pass on the first `--docs` test documents, one torch thread (as each worker of
  `han evaluate` and `han predict` runs it);
- training: a training pass (forward, backward, clipping, LazyAdam, benchmarks.train's loop) over the first
  `--docs` training documents, every core's thread (as `han train` runs), the n-gram channel off: the channel is
  sparse gathers, not matrix products, so leaving it out raises the share and the bound.
The matrix products' time is their own time (aten mm, bmm, addmm, baddbmm, mv, addmv) in one more pass under
torch.profiler, divided by the unprofiled pass's wall time: the profiler's own cost per call makes that share,
and so the bound, if anything too high. One JSON line per pass kind: the share, and the bound at `--ratio`
(default 2.5, the best bf16/fp32 ratio measured for the model's largest products on a CPU with AVX-512 BF16)
and with infinitely fast products; and, more generous still, the bound if the kernels that mostly move data
(copies, gathers, scatters) also ran twice as fast on half-size elements.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import emit, load_average, timed_passes
from benchmarks.train import training_pass
from han.errors import HanError
from han.evaluation.scoring import predict_probabilities
from han.models.build import build_model
from han.serving.trained import load_trained_run
from han.training.distributed import split_slice
from han.training.optim import LazyAdam
from han.util.allocator import keep_freed_memory
from han.util.cpus import use_threads

MATRIX_PRODUCTS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::mv", "aten::addmv", "aten::addbmm"}
# Kernels that mostly move data, which bf16's half-size elements could at most make twice as fast.
DATA_MOVEMENT = {
    "aten::copy_",
    "aten::index_select",
    "aten::index",
    "aten::cat",
    "aten::gather",
    "aten::scatter_add_",
    "aten::index_add_",
    "aten::embedding_dense_backward",
}


def kernel_seconds(work: Callable[[], object]) -> tuple[float, float]:
    """Seconds the matrix-product kernels and the data-moving kernels take in one pass of `work`: their own time
    under torch.profiler."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        work()
    events = profiler.key_averages()
    products = sum(e.self_cpu_time_total for e in events if e.key in MATRIX_PRODUCTS) / 1e6
    movement = sum(e.self_cpu_time_total for e in events if e.key in DATA_MOVEMENT) / 1e6
    return products, movement


def bound(share: float, ratio: float, moving: float = 0.0) -> float:
    """Amdahl's law: the whole's speed-up when a `share` of it runs `ratio` times faster (and a `moving` share twice
    as fast)."""
    return 1.0 / ((1.0 - share - moving) + share / ratio + moving / 2)


def measured(kind: str, work: Callable[[], object], docs: int, reps: int, ratio: float) -> None:
    seconds = statistics.median(timed_passes(work, reps))
    products, movement = kernel_seconds(work)
    share, moving = products / seconds, movement / seconds
    emit(
        {
            "bench": "bf16_bound",
            "pass": kind,
            "docs": docs,
            "threads": torch.get_num_threads(),
            "seconds": seconds,
            "matrix_product_seconds": products,
            "share": share,
            "ratio": ratio,
            "bound": bound(share, ratio),
            "bound_infinite_ratio": 1.0 / (1.0 - min(share, 0.999)),
            "data_movement_share": moving,
            "bound_with_data_movement_halved": bound(share, ratio, moving),
            "load_avg_1m": load_average(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a trained run directory")
    parser.add_argument("--docs", type=int, default=4096)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--ratio", type=float, default=2.5, help="bf16 matrix products' speed over fp32's")
    args = parser.parse_args()
    keep_freed_memory()
    try:
        trained = load_trained_run(args.run)
    except HanError as error:
        raise SystemExit(f"bf16_bound: {error}") from None
    config = trained.config

    test = trained.run.load_split("test")
    test = split_slice(test, 0, min(args.docs, len(test)))
    cores = torch.get_num_threads()
    use_threads(1)
    measured(
        "scoring",
        lambda: predict_probabilities(trained.model, test, config.train.eval_batch_size),
        len(test),
        args.reps,
        args.ratio,
    )

    use_threads(cores)
    train = trained.run.load_split("train")
    train = split_slice(train, 0, min(args.docs, len(train)))
    network = config.model.model_copy(update={"wide": False, "dropout": 0.0})
    vocab_size = len(trained.run.load_vocab())
    model = build_model(network, vocab_size, config.embeddings.dim, len(trained.label_names), sparse_embedding=True)
    optimizer = LazyAdam(model.parameters(), lr=1e-3)
    rng, epochs = np.random.default_rng(0), iter(range(1, 10**6))
    measured(
        "training",
        lambda: training_pass(model, optimizer, train, "fused", rng, next(epochs)),
        len(train),
        args.reps,
        args.ratio,
    )


if __name__ == "__main__":
    main()
