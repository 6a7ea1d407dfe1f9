"""Timing helpers shared by the benchmarks: warm-up, medians of repeated passes, peak RSS, JSON output."""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_passes(run_pass: Callable[[], Any], reps: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `reps` passes after `warmup` untimed ones."""
    for _ in range(warmup):
        run_pass()
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        run_pass()
        seconds.append(time.perf_counter() - start)
    return seconds


def rate(count: float, seconds: list[float]) -> dict[str, float]:
    """Median, min and max of count/second over passes."""
    rates = [count / s for s in seconds]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def load_average() -> float:
    return os.getloadavg()[0]


def emit(record: dict[str, Any]) -> None:
    """One JSON object per line on stdout."""
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in record.items()}), flush=True)
    sys.stdout.flush()
