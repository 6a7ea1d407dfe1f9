"""Progress reporting without printing: the library calls a `Progress`; the CLI passes one that draws bars."""

from __future__ import annotations

from typing import Any


class Progress:
    """A sink for progress events. This base class ignores them; `pipelines` subclasses it with rich bars."""

    def start(self, description: str, total: int | None, unit: str = "docs") -> None:
        """Begin a task of `total` units (None when unknown)."""

    def advance(self, amount: int = 1, **info: Any) -> None:
        """Record `amount` more units done; `info` carries live figures such as the loss."""

    def stop(self) -> None:
        """End the current task."""
