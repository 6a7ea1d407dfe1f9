"""Threads that follow the cores other processes leave free (han/util/cpus.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from han.util import cpus
from han.util.cpus import CpuSample, ThreadGovernor, others_busy, threads_for


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    cpus.use_threads(before)


def test_threads_are_the_cores_left_at_least_one():
    assert threads_for(0.0, 2) == 2
    assert threads_for(0.3, 2) == 2  # a little background work does not take a core
    assert threads_for(0.5, 2) == 1
    assert threads_for(1.0, 2) == 1
    assert threads_for(2.0, 2) == 1  # never below one thread
    assert threads_for(1.0, 8) == 7
    assert threads_for(2.7, 8) == 5


def test_others_busy_is_the_machine_minus_this_process():
    before = CpuSample(at=10.0, machine_busy=100.0, own_busy=5.0)
    after = CpuSample(at=12.0, machine_busy=104.0, own_busy=7.0)  # 4 busy seconds, 2 of them ours, in 2 s
    assert others_busy(before, after) == pytest.approx(1.0)
    unknown = CpuSample(at=12.0, machine_busy=None, own_busy=7.0)
    assert others_busy(before, unknown) == 0.0


@pytest.mark.skipif(
    not Path("/proc/stat").exists() or cpus.available_cores() < 2, reason="needs /proc/stat and 2 cores"
)
def test_a_competing_process_takes_a_core():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert cpus.free_cores(0.5) <= cpus.available_cores() - 1
    finally:
        spinner.kill()
        spinner.wait()


def _feed(monkeypatch: pytest.MonkeyPatch, samples: list[CpuSample]) -> None:
    queue = iter(samples)
    monkeypatch.setattr(cpus, "sample", lambda: next(queue))
    monkeypatch.setattr(cpus, "free_cores", lambda sample_seconds=0.2: 2)
    monkeypatch.setattr(cpus, "available_cores", lambda: 2)


def test_the_governor_follows_the_load_and_reports_it(monkeypatch: pytest.MonkeyPatch):
    now = time.monotonic()
    _feed(
        monkeypatch,
        [
            CpuSample(now - 20, 0.0, 0.0),  # start (samples lie in the past: every check is due)
            CpuSample(now - 17, 3.0, 3.0),  # 3 s: only this process was busy
            CpuSample(now - 14, 9.0, 6.0),  # 3 s: another process took a whole core
            CpuSample(now - 11, 15.0, 9.0),  # still there
            CpuSample(now - 8, 18.0, 12.0),  # gone
        ],
    )
    governor = ThreadGovernor(fixed=None, limit=2)
    assert governor.start() == 2
    seen = []
    for _ in range(4):
        governor.adjust()
        seen.append((governor.threads, torch.get_num_threads()))
    assert seen == [(2, 2), (1, 1), (1, 1), (2, 2)]
    assert governor.report() == {"setting": "auto", "used": [1, 2], "changes": 2}


def test_a_configured_thread_count_never_moves(monkeypatch: pytest.MonkeyPatch):
    _feed(monkeypatch, [])  # sampling would raise StopIteration
    governor = ThreadGovernor(fixed=1, limit=2)
    assert governor.start() == 1 and torch.get_num_threads() == 1
    governor._last = CpuSample(0.0, 0.0, 0.0)
    governor.adjust()
    assert governor.report() == {"setting": 1, "used": [1], "changes": 0}


def test_torchrun_ranks_share_the_cores_evenly_and_fixed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cpus, "available_cores", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    governor = cpus.use_threads(None)
    assert governor.fixed == 2 and torch.get_num_threads() == 2
