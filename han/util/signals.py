"""Graceful stops: the first SIGINT/SIGTERM becomes a request the training loop honours after its step; a
signal that arrives between two writes that belong together waits until both are done (`signals_deferred`);
a child process han starts gets SIGTERM when its parent dies (`die_with_parent`), so it stops too."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StopRequest:
    """Set by SIGINT/SIGTERM while training: the loop finishes its step, checkpoints and stops."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None


@contextmanager
def stop_on_signals(request: StopRequest) -> Iterator[StopRequest]:
    """Turn the first SIGINT/SIGTERM into a stop `request`; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield request
        return

    def handler(signal_number: int, frame: Any) -> None:
        if request.requested:
            raise KeyboardInterrupt
        request.signal_number = signal_number

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold a SIGINT/SIGTERM that arrives in the block until the block ends, then deliver it as it came.

    For writes that must not be cut between (a file and its manifest entry: a resume would find them
    disagreeing). A second signal in the block interrupts at once, as in `stop_on_signals`.
    """
    request = StopRequest()
    with stop_on_signals(request):
        yield
    if request.signal_number is not None:
        signal.raise_signal(request.signal_number)


PR_SET_PDEATHSIG = 1  # linux/prctl.h
ORPHAN_POLL_SECONDS = 0.5  # where prctl is missing: how often the child looks for its parent


def die_with_parent(parent_pid: int) -> None:
    """In a child han started: receive SIGTERM when the parent `parent_pid` dies, even by SIGKILL.

    A child that outlived its parent would go on writing into a folder whose lock the parent no longer
    holds. Linux delivers the signal itself (prctl PR_SET_PDEATHSIG); elsewhere a daemon thread polls for
    the parent. The parent may have died before this call: checked right after, and the signal sent then.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if not armed:

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(ORPHAN_POLL_SECONDS)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="han-parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)
