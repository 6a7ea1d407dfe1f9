"""The `han` command: typer app; each command parses, loads the config, calls one han function, shows the result."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipelines import ui

app = typer.Typer(
    name="han",
    help="Hierarchical attention networks for document classification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file (see configs/).")]
RunDirOpt = Annotated[Optional[Path], typer.Option("--run-dir", help="Run directory [default: runs/<config name>].")]
OverridesArg = Annotated[
    Optional[list[str]],
    typer.Argument(help="Dotted overrides, e.g. train.lr=0.01 model.dropout=0.3.", show_default=False),
]
RunDirArg = Annotated[Path, typer.Argument(help="A run directory written by `han run` / `han train`.")]


def default_run_dir(config_path: Path, run_dir: Optional[Path]) -> Path:
    return run_dir if run_dir is not None else Path("runs") / config_path.stem


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    ui.setup_logging(verbose)


@app.command()
@ui.handle_errors
def run(config: ConfigArg, overrides: OverridesArg = None, run_dir: RunDirOpt = None) -> None:
    """Run every stage: preprocess, train, evaluate (validation and test)."""
    from han.config import load_config
    from han.runner import run_all

    cfg = load_config(config, overrides or [])
    target = default_run_dir(config, run_dir)
    result = run_all(cfg, target, ui.RichProgress())
    for split, metrics in result.metrics.items():
        ui.show_metrics(split, metrics)
    stages = "  ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    ui.console.print(f"[green]done[/]: {target}/metrics.json  ({stages})")


@app.command()
@ui.handle_errors
def preprocess(config: ConfigArg, overrides: OverridesArg = None, run_dir: RunDirOpt = None) -> None:
    """Load, split, segment and encode the data; build vocabulary and initial vectors."""
    from han.config import load_config
    from han.preprocessing import preprocess as run_preprocess

    cfg = load_config(config, overrides or [])
    target = default_run_dir(config, run_dir)
    summary = run_preprocess(cfg, target, ui.RichProgress())
    ui.show_preprocess_summary(target, summary)


@app.command()
@ui.handle_errors
def train(config: ConfigArg, overrides: OverridesArg = None, run_dir: RunDirOpt = None) -> None:
    """Train on a preprocessed run directory."""
    from han.config import load_config
    from han.training import train as run_train

    cfg = load_config(config, overrides or [])
    target = default_run_dir(config, run_dir)
    result = run_train(cfg, target, ui.RichProgress())
    ui.console.print(
        f"[green]trained[/] {target}: {result.epochs_run} epochs, best {result.metric_name} {result.best_metric:.4f} "
        f"at epoch {result.best_epoch}; {result.docs_per_second:.0f} docs/s"
    )


@app.command()
@ui.handle_errors
def evaluate(
    run_dir: RunDirArg,
    split: Annotated[str, typer.Option("--split", help="A preprocessed split of the run.")] = "test",
    data: Annotated[
        Optional[Path], typer.Option("--data", help="A labelled file to evaluate instead of a split.")
    ] = None,
    weights: Annotated[str, typer.Option("--weights", help="best or last.")] = "best",
) -> None:
    """Accuracy, macro-F1, per-class scores and confusion matrix; merged into RUN_DIR/metrics.json."""
    from han.inference import evaluate_file, evaluate_split, load_trained_run

    trained = load_trained_run(run_dir, weights)
    metrics = evaluate_file(trained, data) if data is not None else evaluate_split(trained, split)
    ui.show_metrics(str(data) if data is not None else split, metrics)


@app.command()
@ui.handle_errors
def predict(
    run_dir: RunDirArg,
    input: Annotated[
        Optional[Path],
        typer.Argument(
            help="CSV/TSV/JSONL/Parquet/.txt file; omit (or '-') to read one document per line from stdin.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help=".jsonl or .csv file [default: JSON Lines on stdout].")
    ] = None,
    weights: Annotated[str, typer.Option("--weights", help="best or last.")] = "best",
) -> None:
    """Predict the label and per-class probabilities of every document."""
    from han.inference import load_trained_run, predict_file

    trained = load_trained_run(run_dir, weights)
    source = None if input is None or str(input) == "-" else input
    count = predict_file(
        trained, source, output, stdin=sys.stdin, stdout=sys.stdout, progress=ui.RichProgress() if output else None
    )
    if output is not None:
        ui.console.print(f"[green]predicted[/] {count} documents -> {output}")


data_app = typer.Typer(help="Look at a dataset before preprocessing it.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("inspect")
@ui.handle_errors
def data_inspect(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Rows per split, labels, sentence/word length percentiles, what the caps cut, and the OOV rate."""
    from han.config import load_config
    from han.inspection import inspect_data

    cfg = load_config(config, overrides or [])
    ui.show_data_report(inspect_data(cfg, ui.RichProgress()))


def main() -> None:
    app()
