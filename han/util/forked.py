"""Work shared out to forked worker processes, one torch thread each, with the results in input order.

Scoring is mostly single-threaded work (a recurrence's small per-step matmuls and elementwise kernels,
spaCy's segmenter): whole pieces of work side by side in one process per core use the cores better
than one process whose torch threads meet at a barrier after every operation, and a worker whose
core another program takes only slows its own pieces instead of stalling the rest
(docs/results/performance.md measures both).
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from han.util.cpus import cores_per_process, use_threads

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

_INHERITED: dict[str, Any] = {}  # what the forked workers inherit from the parent: the function and its state


def can_fork() -> bool:
    """Whether this platform starts processes by fork (Linux; not Windows, not macOS's default)."""
    return "fork" in mp.get_all_start_methods()


def _one_thread() -> None:
    use_threads(1)  # each worker one thread: the workers themselves use the cores


def _call(item: Any) -> Any:
    return _INHERITED["function"](_INHERITED["shared"], item)


def forked_map(function: Callable[[S, T], R], shared: S, items: Iterable[T], processes: int) -> Iterator[R]:
    """`function(shared, item)` of each item, computed by `processes` forked workers and yielded in input order.

    `function` and `shared` (a model, a split) reach the workers through fork, never pickled; only
    the items and the results cross between processes. At most `2 * processes` items are in flight,
    so memory stays flat however many items there are. Needs `can_fork()`.
    """
    _INHERITED.update(function=function, shared=shared)
    pool = mp.get_context("fork").Pool(processes, initializer=_one_thread)
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.apply_async(_call, (item,)))
            if len(pending) >= 2 * processes:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
        _INHERITED.clear()


def side_by_side(work: Callable[[S, T], R], shared: S, items: Sequence[T]) -> Iterator[R]:
    """`work(shared, item)` of each item, yielded in order: by `forked_map`, one worker a core, when there are
    several items and cores and the platform forks; else here, one after the other. Each piece is single-threaded
    work with the same results either way."""
    processes = min(cores_per_process(), len(items))
    if processes < 2 or not can_fork():
        return (work(shared, item) for item in items)
    return forked_map(work, shared, items, processes)
