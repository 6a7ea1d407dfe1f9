"""Peak memory of a block (han.util.memory) and each stage's figure in the run's manifest."""

import json
import subprocess
import sys

import pytest

from han.store.rundir import RunDir
from han.util.memory import PeakMemory, children_peak_rss_bytes

MB = 1_000_000
STAGES = {"preprocess", "train", "evaluate"}


def resettable() -> bool:
    with PeakMemory() as peak:
        pass
    return peak.method == "vmhwm"


needs_reset = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not resettable(), reason="the peak RSS cannot be reset here"
)


# In a fresh process: one that already holds freed memory (han's allocator keeps it for reuse) shows no drop.
BLOCKS = """
import json, numpy as np
from han.util.memory import PeakMemory, process_peak_rss_bytes
def touch(megabytes):
    return int(np.ones(megabytes * 1_000_000 // 8).sum())
figures = {}
with PeakMemory() as outer:
    with PeakMemory() as big:
        touch(200)
    with PeakMemory() as small:  # resets the peak again: the outer block keeps the first one's
        touch(1)
print(json.dumps({"big": big.as_dict(), "small": small.as_dict(), "outer": outer.as_dict(),
                  "process": process_peak_rss_bytes()}))
"""


@pytest.fixture(scope="module")
def blocks() -> dict:
    done = subprocess.run([sys.executable, "-c", BLOCKS], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


@needs_reset
def test_block_reports_its_own_peak_and_a_later_block_less(blocks):
    big, small = blocks["big"]["peak_rss_bytes"], blocks["small"]["peak_rss_bytes"]
    assert big >= 200 * MB
    assert small < big - 150 * MB
    assert blocks["process"] >= big  # the resets do not lower the process's figure
    assert blocks["small"] == {"peak_rss_bytes": small, "children_peak_rss_bytes": None, "method": "vmhwm"}


@needs_reset
def test_an_inner_block_does_not_lower_the_enclosing_one(blocks):
    assert blocks["outer"]["peak_rss_bytes"] >= blocks["big"]["peak_rss_bytes"]


def test_a_child_that_finished_in_the_block_is_reported_only_when_its_peak_grew():
    size = children_peak_rss_bytes() + 100 * MB  # more than any child this test session has waited for
    with PeakMemory() as peak:
        subprocess.run([sys.executable, "-c", f"b = b'x' * {size}"], check=True)
    assert peak.children_peak_rss_bytes is not None and peak.children_peak_rss_bytes >= size
    with PeakMemory() as none:
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert none.children_peak_rss_bytes is None


def stage_peaks(run_dir) -> dict:
    return json.loads(RunDir(run_dir).manifest_path.read_text())["stage_peak_memory"]


def test_han_run_records_each_stages_peak(trained_run):
    peaks = stage_peaks(trained_run)
    assert set(peaks) == STAGES
    for figures in peaks.values():
        assert isinstance(figures["peak_rss_bytes"], int) and figures["peak_rss_bytes"] > 10 * MB
        assert figures["method"] in ("vmhwm", "ru_maxrss")


def test_training_again_forgets_the_train_and_evaluate_peaks(run_copy):
    preprocess = stage_peaks(run_copy)["preprocess"]
    RunDir(run_copy).claim_for_training(resume=False, overwrite=True)
    assert stage_peaks(run_copy) == {"preprocess": preprocess}
