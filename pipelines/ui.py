"""Terminal output shared by the commands: console, logging, progress bars, error -> exit code."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import rich.markup
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichBar
from rich.table import Table

from han.errors import HanError, TrainingStopped
from han.progress import Progress

console = Console()
error_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: bool = False) -> None:
    """Library logs (han.*) go to stderr through rich; datasets' own progress bars are silenced."""
    import datasets

    datasets.disable_progress_bars()
    # han reports a file datasets cannot parse as its own one-line error; datasets' log line would repeat it.
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    handler = RichHandler(console=error_console, show_path=False, show_time=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("han").setLevel(logging.DEBUG if verbose else logging.INFO)


def handle_errors(command: F) -> F:
    """Turn a HanError into a one-line message on stderr and its exit code; Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except HanError as error:
            label = "[bold yellow]stopped:[/]" if isinstance(error, TrainingStopped) else "[bold red]error:[/]"
            error_console.print(
                f"{label} {rich.markup.escape(str(error))}", markup=True, highlight=False, soft_wrap=True
            )
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


def show_faithfulness(summary: dict[str, Any]) -> None:
    """The faithfulness check's figures as a table."""
    table = Table(
        title=f"faithfulness: {summary['documents']} documents (of {summary['eligible']} with 2+ sentences); "
        f"top-sentence removal hurts more in {summary['top_drop_larger_share']:.1%}"
    )
    for column in ("removed", "mean drop", "median", "p10", "p90", "flips"):
        table.add_column(column, justify="left" if column == "removed" else "right")
    for key, name in (("top_sentence_removed", "most attended"), ("random_sentence_removed", "random other")):
        row = summary[key]
        table.add_row(
            name,
            f"{row['mean']:+.4f}",
            f"{row['median']:+.4f}",
            f"{row['p10']:+.4f}",
            f"{row['p90']:+.4f}",
            f"{row['flip_share']:.1%} ({row['flips']})",
        )
    console.print(table)
