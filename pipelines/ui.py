"""Terminal output shared by the commands: console, logging, progress bars, error -> exit code."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichBar
from rich.table import Table

from han.errors import HanError
from han.progress import Progress

console = Console()
error_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: bool = False) -> None:
    """Library logs (han.*) go to stderr through rich; datasets' own progress bars are silenced."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    handler = RichHandler(console=error_console, show_path=False, show_time=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    level = logging.DEBUG if verbose else logging.INFO
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun only rank 0 logs (warnings and errors still show)
        level = logging.WARNING
    logging.getLogger("han").setLevel(level)


def handle_errors(command: F) -> F:
    """Turn a HanError into a one-line message on stderr and its exit code; Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except HanError as error:
            error_console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            error_console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


class RichProgress(Progress):
    """Progress bars on stderr with live figures (loss, docs/s)."""

    def __init__(self) -> None:
        self._bar: RichBar | None = None
        self._task: Any = None

    def start(self, description: str, total: int | None, unit: str = "docs") -> None:
        self._bar = RichBar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=error_console,
        )
        self._bar.start()
        self._task = self._bar.add_task(description, total=total, info="")

    def advance(self, amount: int = 1, **info: Any) -> None:
        if self._bar is None:
            return
        text = "  ".join(
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in info.items()
        )
        self._bar.update(self._task, advance=amount, info=text)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def metrics_table(split: str, metrics: dict[str, Any]) -> Table:
    table = Table(
        title=f"{split}: accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  ({metrics['documents']} documents)"
    )
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    return table


def confusion_table(metrics: dict[str, Any]) -> Table:
    labels = metrics["confusion_matrix"]["labels"]
    table = Table(title="confusion matrix (rows: true, columns: predicted)")
    table.add_column("")
    for name in labels:
        table.add_column(name, justify="right")
    for name, row in zip(labels, metrics["confusion_matrix"]["rows_true_columns_predicted"]):
        table.add_row(name, *map(str, row))
    return table


def show_metrics(split: str, metrics: dict[str, Any]) -> None:
    console.print(metrics_table(split, metrics))
    console.print(confusion_table(metrics))
