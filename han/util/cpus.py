"""CPUs other processes leave free, and torch threads that follow them.

On a shared machine (a laptop running a browser, a CI runner, a busy server) torch's default of
one thread per core is the worst choice: its threads meet at a barrier after every parallel
operation, and a thread whose core another process holds makes all of them wait (measured here:
one epoch with one competing CPU-bound process on 2 cores kept 5% of its quiet speed with 2
threads, 78% with 1). So, unless a thread count is configured, han measures how much CPU time
other processes took over the last interval (the machine's busy time in /proc/stat minus this
process's own) and gives torch the cores that are left: at the start, then at most every
`CHECK_SECONDS` between steps. Choosing threads from the load trades bit-for-bit repeatability
for speed (the thread count changes the last bits of float sums): set a thread count
(`train.threads`) for identical runs; the threads used are in the run's manifest.

Without /proc/stat (not Linux) the free CPUs are the available cores.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)

CHECK_SECONDS = 2.0  # how often the free CPUs are measured again while a loop runs
SAMPLE_SECONDS = 0.1  # the first measurement's interval
BUSY_SHARE = 0.4  # another process using this much of a core takes that core


def _cores() -> set[int]:
    """The CPU cores this process may run on (its affinity on Linux, else every core of the machine)."""
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not on Linux
        return set(range(os.cpu_count() or 1))


def available_cores() -> int:
    """How many CPU cores this process may run on."""
    return len(_cores())


@dataclass(frozen=True)
class CpuSample:
    """Busy CPU seconds of the machine's cores this process may use, and of this process, at one moment."""

    at: float  # time.monotonic()
    machine_busy: float | None  # None where /proc/stat cannot be read
    own_busy: float


def _machine_busy_seconds(cores: set[int]) -> float | None:
    """Busy seconds (user, nice, system, irq, softirq, steal) summed over `cores`, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    busy = 0
    for line in lines:
        name, _, values = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cores:
            continue
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in values.split()[:8])
        busy += user + nice + system + irq + softirq + steal
    return busy / ticks_per_second


def sample() -> CpuSample:
    """The machine's and this process's busy CPU seconds now."""
    times = os.times()
    return CpuSample(time.monotonic(), _machine_busy_seconds(_cores()), times.user + times.system)


def others_busy(before: CpuSample, after: CpuSample) -> float:
    """Cores other processes kept busy between two samples (0 when unknown)."""
    interval = after.at - before.at
    if before.machine_busy is None or after.machine_busy is None or interval <= 0:
        return 0.0
    others = (after.machine_busy - before.machine_busy) - (after.own_busy - before.own_busy)
    return max(0.0, others / interval)


def threads_for(others: float, cores: int) -> int:
    """Threads for `cores` cores when other processes keep `others` cores busy: the cores left, at least 1."""
    taken = int(others + (1 - BUSY_SHARE))  # a core counts as taken from BUSY_SHARE of it
    return max(1, min(cores, cores - taken))


def free_cores(sample_seconds: float = SAMPLE_SECONDS) -> int:
    """Cores other processes leave free, measured over `sample_seconds` while this process waits."""
    cores = available_cores()
    before = sample()
    if before.machine_busy is None:
        return cores
    time.sleep(sample_seconds)
    return threads_for(others_busy(before, sample()), cores)


@dataclass
class ThreadGovernor:
    """torch's CPU threads: fixed at a configured count, or following the cores other processes leave free."""

    fixed: int | None  # a configured count; None: follow the free cores
    limit: int  # at most this many threads
    threads: int = 0
    used: set[int] = field(default_factory=set)
    changes: int = 0
    _last: CpuSample | None = None

    def start(self) -> int:
        """Set torch's threads for the work about to start; return them."""
        if self.fixed is not None:
            self._set(self.fixed)
        else:
            self._set(min(self.limit, free_cores()))
            self._last = sample()
        return self.threads

    def adjust(self) -> None:
        """Between steps: measure again (at most every CHECK_SECONDS) and change the threads if the free cores moved."""
        if self.fixed is not None or self._last is None or time.monotonic() - self._last.at < CHECK_SECONDS:
            return
        now = sample()
        wanted = min(self.limit, threads_for(others_busy(self._last, now), available_cores()))
        self._last = now
        if wanted != self.threads:
            log.info(
                "other processes use %d of the cores: torch threads %d -> %d", self.limit - wanted, self.threads, wanted
            )
            self.changes += 1
            self._set(wanted)

    def report(self) -> dict[str, object]:
        """What the manifest records: the setting and the threads actually used."""
        return {
            "setting": self.fixed if self.fixed is not None else "auto",
            "used": sorted(self.used),
            "changes": self.changes,
        }

    def _set(self, threads: int) -> None:
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self.threads = threads
        self.used.add(threads)


_governor = ThreadGovernor(fixed=None, limit=available_cores())


def cores_per_process() -> int:
    """This process's share of the cores: all of them, or under torchrun ($LOCAL_WORLD_SIZE) an even share."""
    return max(1, available_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def use_threads(threads: int | None) -> ThreadGovernor:
    """Set torch's CPU threads for this process: `threads`, or (None) the free cores, re-checked by `adjust_threads`.

    Under torchrun ($LOCAL_WORLD_SIZE > 1) the node's cores are shared evenly and fixed: the other
    ranks are not "other processes" to make room for.
    """
    global _governor
    if threads is None and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        threads = cores_per_process()
    _governor = ThreadGovernor(fixed=threads, limit=available_cores())
    _governor.start()
    return _governor


def adjust_threads() -> None:
    """Between steps of a long loop: follow the free cores (a no-op for a configured thread count)."""
    _governor.adjust()


def threads_report() -> dict[str, object]:
    """The thread setting of this process and the thread counts it has used."""
    return _governor.report()
