"""Peak resident memory (RSS) of a block of code, and of the whole process.

On Linux a block resets the process's peak at its start by writing "5" to /proc/self/clear_refs (Linux 4.0
and later) and reads the peak since then, VmHWM in /proc/self/status, at its end: the block's own peak
(method "vmhwm"). Where that reset is refused (not Linux, an older kernel, a locked-down /proc) the figure
is ru_maxrss, the process's peak since it started (method "ru_maxrss"): an upper bound on the block's.

Child processes have their own figure: the largest peak of any child the process waited for
(RUSAGE_CHILDREN), which nothing can reset, so a block reports it only when it grew during the block
(preprocessing's workers and scoring's forked workers; a child still running is not counted).

Blocks nest: before a block resets the peak, every enclosing block (and `process_peak_rss_bytes`) keeps
the peak reached so far, so an outer figure is never lowered by an inner one. The peak belongs to the
process, so blocks are opened and closed from one thread.
"""

from __future__ import annotations

import logging
import resource
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

STATUS_PATH = Path("/proc/self/status")  # its VmHWM line: the peak RSS since start or the last reset, in kB
CLEAR_REFS_PATH = Path("/proc/self/clear_refs")
RESET_PEAK = "5"  # written to clear_refs: the peak RSS becomes the current RSS (Linux 4.0+)

_open_blocks: list[PeakMemory] = []
_peak_before_reset = 0  # the highest peak this process reached before a block reset it, in bytes


def _ru_maxrss_bytes(who: int) -> int:
    peak = resource.getrusage(who).ru_maxrss  # KiB on Linux, bytes on macOS
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _vmhwm_bytes() -> int | None:
    try:
        status = STATUS_PATH.read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def process_peak_rss_bytes() -> int:
    """This process's peak resident set size since it started, in bytes, the resets of blocks included."""
    return max(_peak_before_reset, _ru_maxrss_bytes(resource.RUSAGE_SELF))


def children_peak_rss_bytes() -> int:
    """The largest peak resident set size of any child process waited for so far, in bytes (0 when none)."""
    return _ru_maxrss_bytes(resource.RUSAGE_CHILDREN)


def _reset_peak() -> bool:
    """Keep the peak so far (enclosing blocks, the process's figure), then reset it; False where refused."""
    global _peak_before_reset
    peak = process_peak_rss_bytes()
    _peak_before_reset = peak
    for block in _open_blocks:
        block.peak_rss_bytes = max(block.peak_rss_bytes, _vmhwm_bytes() or peak)
    try:
        with CLEAR_REFS_PATH.open("w") as clear_refs:
            clear_refs.write(RESET_PEAK)
    except OSError as error:
        log.debug("cannot reset the peak RSS (%s); memory figures are the process's peak", error)
        return False
    return True


class PeakMemory:
    """`with PeakMemory() as peak:` measures the block's peak resident memory; `peak.as_dict()` after it.

    `peak_rss_bytes` is the block's own peak (method "vmhwm") or, where the peak cannot be reset, the
    process's since it started (method "ru_maxrss"); `children_peak_rss_bytes` the largest peak of a child
    process that finished during the block, None when no child's peak grew.
    """

    def __init__(self) -> None:
        self.peak_rss_bytes = 0
        self.children_peak_rss_bytes: int | None = None
        self.method = "ru_maxrss"
        self._children_before = 0

    def __enter__(self) -> PeakMemory:
        self._children_before = children_peak_rss_bytes()
        self.peak_rss_bytes, self.children_peak_rss_bytes = 0, None
        self.method = "vmhwm" if _reset_peak() and _vmhwm_bytes() is not None else "ru_maxrss"
        _open_blocks.append(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        _open_blocks.remove(self)
        now = _vmhwm_bytes() if self.method == "vmhwm" else None
        self.peak_rss_bytes = max(self.peak_rss_bytes, now if now is not None else process_peak_rss_bytes())
        children = children_peak_rss_bytes()
        self.children_peak_rss_bytes = children if children > self._children_before else None

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready data: peak_rss_bytes, children_peak_rss_bytes (or None) and method."""
        return {
            "peak_rss_bytes": self.peak_rss_bytes,
            "children_peak_rss_bytes": self.children_peak_rss_bytes,
            "method": self.method,
        }
