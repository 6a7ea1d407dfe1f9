"""Terminal output shared by the commands: console, logging, progress bars, error -> exit code."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
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


class DeferredWarnings(logging.Handler):
    """Holds log lines until the command ends: printed when it succeeds, dropped when it fails, so a failing
    command says one thing, its one-line error. Training's epoch lines (info) are shown as they come."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__()
        self.target = target
        self.held: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Pass a training info record on; hold every other record."""
        if record.levelno < logging.WARNING and record.name.startswith(LIVE_LOGGERS):
            self.target.handle(record)
        else:
            self.held.append(record)

    def settle(self, show: bool) -> None:
        """Print the held records (`show`) or drop them."""
        held, self.held = self.held, []
        for record in held if show else []:
            self.target.handle(record)


LIVE_LOGGERS = (
    "han.training.",  # the train stage's modules: epochs, checkpoints, the wide channel, the linear fit
    "han.workflows.compare",
    "han.workflows.tune",
)
deferred = DeferredWarnings(RichHandler(console=error_console, show_path=False, show_time=False))


def setup_logging(verbose: bool = False) -> None:
    """Library logs (han.*) go to stderr through rich; datasets' own progress bars are silenced."""
    # Through the environment rather than datasets' functions: importing datasets takes most of a
    # second, and a cached `han preprocess` never needs it.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # han reports a file datasets cannot parse as its own one-line error; datasets' log line would repeat it.
    os.environ.setdefault("DATASETS_VERBOSITY", "critical")
    if "datasets" in sys.modules:  # already imported (tests): its settings were read at import
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    deferred.settle(show=False)
    logging.basicConfig(level=logging.WARNING, handlers=[deferred], format="%(message)s", force=True)
    level = logging.DEBUG if verbose else logging.INFO
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun only rank 0 logs (warnings and errors still show)
        level = logging.WARNING
    logging.getLogger("han").setLevel(level)


class Terminated(BaseException):
    """SIGTERM while a command runs: unwinds like Ctrl-C, so temporary files are removed on the way out."""


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` for the command's duration (main thread only; training installs its own
    graceful handler inside and restores this one)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signal_number: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# Exceptions that are not han's own errors but still end a command with one line and an exit code.
ABORTS: dict[type[BaseException], tuple[str, int]] = {
    KeyboardInterrupt: ("[bold red]interrupted[/]", 130),
    Terminated: ("[bold red]stopped by SIGTERM[/]; nothing partial was left behind", 143),
    RecursionError: ("[bold red]error:[/] an input is nested too deeply to read", 3),
    MemoryError: ("[bold red]error:[/] out of memory; use smaller inputs, caps or model sizes", 3),
}


def handle_errors(command: F) -> F:
    """Turn a HanError into a one-line message on stderr and its exit code; Ctrl-C into 130, SIGTERM into 143."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with terminate_cleanly():
                result = command(*args, **kwargs)
            deferred.settle(show=True)
            return result
        except typer.Exit as done:
            deferred.settle(show=done.exit_code == 0)
            raise
        except HanError as error:
            deferred.settle(show=False)
            label = "[bold yellow]stopped:[/]" if isinstance(error, TrainingStopped) else "[bold red]error:[/]"
            message = str(error).replace("\r", "\\r").replace("\n", "\\n")  # one line, whatever a name holds
            error_console.print(f"{label} {rich.markup.escape(message)}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None
        except (KeyboardInterrupt, Terminated, RecursionError, MemoryError) as error:
            deferred.settle(show=False)
            message, code = ABORTS[type(error)]
            error_console.print(message)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


class RichProgress(Progress):
    """Progress bars on stderr with live figures (loss, docs/s); none when stderr is not a terminal."""

    def __init__(self) -> None:
        self._bar: RichBar | None = None
        self._task: Any = None

    def start(self, description: str, total: int | None, unit: str = "docs") -> None:
        """Open a progress bar for `description` counting `unit` (`total` None: length unknown)."""
        self._bar = RichBar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=error_console,
            disable=not error_console.is_terminal,  # quiet in logs and pipes: no bar frames in a file
        )
        self._bar.start()
        self._task = self._bar.add_task(description, total=total, info="")

    def advance(self, amount: int = 1, **info: Any) -> None:
        """Move the bar on by `amount` and show `info` as key=value figures (nothing when no bar is open)."""
        if self._bar is None:
            return
        text = "  ".join(
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}" for key, value in info.items()
        )
        self._bar.update(self._task, advance=amount, info=text)

    def stop(self) -> None:
        """Close the progress bar, if one is open."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def metrics_table(split: str, metrics: dict[str, Any]) -> Table:
    """A table of a split's per-class precision, recall, F1 and support, titled with accuracy and macro-F1."""
    table = Table(
        title=f"{split}: accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  ({metrics['documents']} documents)"
    )
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    return table


def confusion_table(metrics: dict[str, Any]) -> Table:
    """The confusion matrix as a table (rows: true class, columns: predicted)."""
    labels = metrics["confusion_matrix"]["labels"]
    table = Table(title="confusion matrix (rows: true, columns: predicted)")
    table.add_column("")
    for name in labels:
        table.add_column(name, justify="right")
    for name, row in zip(labels, metrics["confusion_matrix"]["rows_true_columns_predicted"], strict=True):
        table.add_row(name, *map(str, row))
    return table


MULTILABEL_ROWS_SHOWN = 25  # per-label rows printed (most frequent labels); metrics.json has them all


def multilabel_table(split: str, metrics: dict[str, Any], limit: int = MULTILABEL_ROWS_SHOWN) -> Table:
    """A multi-label split's per-label rows (the `limit` most frequent), titled with its set metrics."""
    table = Table(
        title=f"{split}: micro-F1 {metrics['micro_f1']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
        f"samples-F1 {metrics['samples_f1']:.4f}  exact match {metrics['exact_match']:.4f}  "
        f"Hamming loss {metrics['hamming_loss']:.4f}  ({metrics['documents']} documents)"
    )
    for column in ("label", "precision", "recall", "f1", "support", "threshold"):
        table.add_column(column, justify="left" if column == "label" else "right")
    rows = sorted(metrics["per_label"].items(), key=lambda item: -item[1]["support"])
    if len(rows) > limit:
        table.caption = f"the {limit} most frequent of {len(rows)} labels; every label is in metrics.json"
    for name, row in rows[:limit]:
        table.add_row(
            name,
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
            f"{row['threshold']:.2f}",
        )
    return table


def multilabel_summary(metrics: dict[str, Any]) -> str:
    """The other set metrics of a multi-label split in one line."""
    at_k = "  ".join(f"P@{k} {v:.4f}" for k, v in metrics["precision_at_k"].items())
    lrap = metrics["label_ranking_average_precision"]
    return (
        f"weighted-F1 {metrics['weighted_f1']:.4f}  micro precision {metrics['micro_precision']:.4f}  "
        f"micro recall {metrics['micro_recall']:.4f}  LRAP {lrap if lrap is None else round(lrap, 4)}  {at_k}  "
        f"labels per document: true {metrics['labels_per_document']['true']:.2f}, "
        f"predicted {metrics['labels_per_document']['predicted']:.2f}"
    )


def show_metrics(split: str, metrics: dict[str, Any]) -> None:
    """Print a split's metrics table and its confusion matrix (multi-label: per-label table and set metrics)."""
    if "per_label" in metrics:
        console.print(multilabel_table(split, metrics))
        console.print(multilabel_summary(metrics))
        return
    console.print(metrics_table(split, metrics))
    console.print(confusion_table(metrics))


def note_linear_start(kept: bool) -> None:
    """A report of a run that kept epoch 0 (the fitted n-gram channel alone) says its attention took no part."""
    if kept:
        console.print(
            "[yellow]note[/]: this run kept epoch 0, the fitted n-gram channel alone (no epoch of the network beat "
            "it on validation, beyond chance under train.beat_linear_start: significantly): the attention weights "
            "shown took no part in its decisions"
        )


def show_start_kept(history: list[dict[str, Any]], best_epoch: int) -> None:
    """When the run kept epoch 0 although an epoch of the network scored higher on validation, one line saying
    why: the network's lead was within chance (train.beat_linear_start significantly)."""
    tested = [r for r in history if r["epoch"] > 0 and "gain_over_start" in r]
    if best_epoch != 0 or not tested:
        return
    lead = max(tested, key=lambda r: r["gain_over_start"])
    if lead["gain_over_start"] > 0:
        console.print(
            f"kept epoch 0: the network's epoch {lead['epoch']} led it by {lead['gain_over_start']:+.4f} on validation, "
            f"within chance (p = {lead['p_over_start']:.2f}); `train.beat_linear_start=at_all` keeps any lead"
        )


def show_linear_kind(linear: dict[str, Any] | None, config: Any) -> None:
    """train.linear_baseline: han's linear kind's validation score beside the network's, and one line saying so
    when the network trails it, with the command that compares the two over seeds."""
    if linear is None:
        return
    metric = linear["compared_metric"]
    name = metric.removeprefix("validation_").replace("_", "-")
    console.print(
        f"han's linear kind on the same features: validation {name} {linear[metric]:.4f} "
        f"(the run's kept epoch: {linear['network']:.4f})"
    )
    if linear["network_trails"]:
        console.print(
            f"[yellow]the network trails the linear kind on validation {name}[/]: compare them over seeds with "
            f"`han compare {config} --models han,linear`"
        )


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


def show_preprocess_summary(target: Any, summary: Any) -> None:
    """What `han preprocess` did: reused or built, documents, rows dropped by reason, throughput."""
    docs = ", ".join(f"{k} {v}" for k, v in summary.documents.items())
    if summary.reused:
        console.print(
            f"[green]reused cached preprocessing[/] in {target} (inputs and settings unchanged; "
            f"checked in {sum(summary.seconds.values()):.2f}s): {docs}"
        )
        return
    dropped = {reason: n for reason, n in summary.rows_dropped.items() if n}
    dropped_text = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in dropped.items()) or "none"
    console.print(
        f"[green]preprocessed[/] {target}: {docs}; {len(summary.label_names)} labels; vocabulary {summary.vocab_size} "
        f"({summary.vectors_found} with vectors); train OOV {summary.oov_rate['train']:.2%}"
    )
    if summary.labels_per_document:
        rare = summary.rare_labels or {}
        rare_text = (
            f"; {len(rare)} rare label(s) (fewer than 10 training documents): "
            + ", ".join(f"{name} {n}" for name, n in list(rare.items())[:12])
            + (" ..." if len(rare) > 12 else "")
            if rare
            else ""
        )
        per_document = ", ".join(f"{k} {v:.2f}" for k, v in summary.labels_per_document.items())
        console.print(f"multi-label: labels per document {per_document}{rare_text}")
    console.print(
        f"rows in {summary.rows_in}, kept {summary.rows_kept}, dropped: {dropped_text}; "
        f"tokenised {summary.docs_per_second:,.0f} documents/s ({summary.tokens_per_second:,.0f} tokens/s, "
        f"{summary.workers} worker(s))"
    )
    if summary.word2vec:
        seconds = summary.seconds.get("embeddings", 0.0)
        splits = summary.word2vec.get("splits", ["train"])
        text_words = summary.word2vec.get("words", summary.words.get("train", 0))
        files = summary.word2vec.get("files", [])
        sources = [*splits, *([f"{len(files)} file(s)"] if files else [])]
        read = "training words" if sources == ["train"] else f"words of the {' + '.join(sources)} text (no labels)"
        console.print(
            f"{summary.word2vec.get('model', 'word2vec')}: {summary.word2vec['epochs']} epoch(s) over {text_words:,} {read}, "
            f"{summary.word2vec['workers']} thread(s), {seconds:.1f}s"
        )


def show_data_report(report: Any) -> None:
    """The tables of `han data inspect`."""
    console.print(
        f"[bold]{report.source}[/]: {report.rows_in} rows read, "
        + ", ".join(f"{k} {v}" for k, v in report.rows.items())
        + f" documents; tokenised {report.documents_per_second:,.0f} documents/s ({report.seconds:.1f}s in all)"
    )
    dropped = {reason: n for reason, n in report.rows_dropped.items() if n}
    if dropped:
        console.print(
            "[yellow]bad rows[/] (preprocess stops on these unless data.bad_rows / data.unseen_labels is drop): "
            + ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in dropped.items())
        )
    labels = Table(title="documents per label")
    labels.add_column("label")
    for split in report.rows:
        labels.add_column(split, justify="right")
    labels.add_column("share of train", justify="right")
    train_total = max(1, report.rows.get("train", 0))
    for label in report.label_names:
        counts = [report.label_counts[split].get(label, 0) for split in report.rows]
        share = report.label_counts.get("train", {}).get(label, 0) / train_total
        labels.add_row(label, *map(str, counts), f"{share:.1%}")
    console.print(labels)
    lengths = Table(title="lengths before caps (all splits)")
    lengths.add_column("")
    keys = list(report.sentences_per_document)
    for key in keys:
        lengths.add_column(key, justify="right")
    for title, values in (
        ("sentences per document", report.sentences_per_document),
        ("words per sentence", report.words_per_sentence),
        ("words per document", report.words_per_document),
    ):
        lengths.add_row(title, *(f"{values[k]:g}" for k in keys))
    console.print(lengths)
    caps = report.caps
    cut = Table(title="what the caps cut")
    cut.add_column("cap")
    cut.add_column("value", justify="right")
    cut.add_column("cuts", justify="left")
    cut.add_row(
        "preprocess.max_sentences",
        str(caps["max_sentences"]),
        f"{caps['documents_over_max_sentences']:.2%} of documents are longer; {caps['sentences_cut']:.2%} of sentences cut",
    )
    cut.add_row(
        "preprocess.max_words",
        str(caps["max_words"]),
        f"{caps['sentences_over_max_words']:.2%} of sentences are longer; {caps['words_cut_by_max_words']:.2%} of words cut",
    )
    cut.add_row("both", "", f"{caps['words_cut_in_all']:.2%} of all words cut")
    console.print(cut)
    console.print(
        f"vocabulary {report.vocab_size} words (preprocess.min_count / max_vocab); out-of-vocabulary rate: "
        + ", ".join(f"{k} {v:.2%}" for k, v in report.oov_rate.items())
    )
    for warning in report.warnings:
        console.print(f"[yellow]warning[/] {rich.markup.escape(warning)}", soft_wrap=True)


def show_comparison(result: dict[str, Any]) -> None:
    """The `han compare` table: test accuracy and macro-F1 (multi-label: micro-F1, macro-F1 and exact match;
    mean ± std over seeds), cost, and the paired test."""
    from han.reports.comparison import headline_columns

    tests = {entry["model"]: entry for entry in result["significance"]}
    table = Table(title=f"han compare: {result['title']} ({len(result['seeds'])} seed(s), test split)")
    quality = headline_columns(result)
    multilabel = result.get("task") == "multilabel"
    versus_header = "vs best (exact match, pts)" if multilabel else "vs best (pts)"
    names = [header for _, header in quality] if multilabel else ["test acc", "test macro-F1"]
    headers = ["model", *names, versus_header]
    for name in [*headers, "train s", "infer docs/s", "params", "peak MiB"]:
        table.add_column(name, justify="left" if name in ("model", versus_header) else "right")

    def mean_std(summary: dict[str, Any] | None, key: str) -> str:
        entry = (summary or {}).get(key)
        return "—" if not entry else f"{entry['mean']:.3f} ± {entry['std']:.3f}"

    def mean(summary: dict[str, Any] | None, key: str, scale: float = 1.0, digits: int = 0) -> str:
        entry = (summary or {}).get(key)
        return "—" if not entry else f"{entry['mean'] / scale:,.{digits}f}"

    for row in result["rows"]:
        summary, name = row["summary"], row["model"]
        if not row["complete"]:
            name += f" ({len(row['runs'])} of {len(result['seeds'])} seeds)"
        test = tests.get(row["model"])
        versus = "best" if row["model"] == result["best"] else "—"
        if test is not None:
            mark = " *" if test["significant"] else ""
            versus = f"{100 * test['difference']:+.1f} p={test['p_value']:.3f}{mark}"
        parameters = f"{summary['parameters']:,}" if summary else "—"
        table.add_row(
            name,
            *(mean_std(summary, key) for key, _ in quality),
            versus,
            mean(summary, "train_seconds", digits=1),
            mean(summary, "inference_docs_per_s"),
            parameters,
            mean(summary, "peak_memory_bytes", 2**20),
            style="bold" if row["model"] == result["best"] else None,
        )
    console.print(table)
    console.print(f"* significant at p < 0.05 ({result['significance_test']})")
