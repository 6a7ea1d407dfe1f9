"""Freed memory is reused: large tensors stop costing a page fault per page (han/util/allocator.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from han.util.allocator import _glibc

MIB_PER_STEP = 64 + 32 + 48 + 16
# A "step" allocates four large tensors (each above glibc's default mmap threshold) and frees them; after one
# warm-up step, the minor page faults of ten more are printed.
FAULTS_OF_TEN_STEPS = """
import resource, sys, torch
from han.util.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():
    tensors = [torch.ones(mib * 2**18) for mib in (64, 32, 48, 16)]
    return sum(t.numel() for t in tensors)
step()
before = faults()
for _ in range(10):
    step()
print(faults() - before)
"""


def faults_of_ten_steps(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", FAULTS_OF_TEN_STEPS, mode], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.skipif(not _glibc(), reason="the setting exists in glibc's malloc only")
def test_kept_memory_serves_the_next_steps_without_page_faults():
    pages_per_step = MIB_PER_STEP * 2**20 // 4096
    default = faults_of_ten_steps("default")
    assert default > 5 * pages_per_step  # by default most steps map and touch fresh pages
    assert faults_of_ten_steps("keep") < default / 5  # kept: the warm-up step's pages serve nearly all
