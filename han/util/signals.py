"""Graceful stops: the first SIGINT/SIGTERM becomes a request the training loop honours after its step."""

from __future__ import annotations

import signal
import threading
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
