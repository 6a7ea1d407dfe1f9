"""The `han` command: typer app; each command parses, loads the config, calls one han function, shows the result."""

from __future__ import annotations

import os
import subprocess
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
ShardOpt = Annotated[
    Optional[str],
    typer.Option("--shard", help="Do only shard i of n (i/n, 0-based); under torchrun the rank is the shard."),
]
DeviceOpt = Annotated[
    Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N [default: the run's device setting].")
]


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
    from han.distributed import launched_by_torchrun
    from han.errors import ConfigError
    from han.runner import run_all

    if launched_by_torchrun():
        raise ConfigError("`han run` is one process; under torchrun run `preprocess`, `train` and `predict` instead")
    cfg = load_config(config, overrides or [])
    target = default_run_dir(config, run_dir)
    result = run_all(cfg, target, ui.RichProgress())
    for split, metrics in result.metrics.items():
        ui.show_metrics(split, metrics)
    stages = "  ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    ui.console.print(f"[green]done[/]: {target}/metrics.json  ({stages})")


@app.command()
@ui.handle_errors
def preprocess(
    config: ConfigArg,
    overrides: OverridesArg = None,
    run_dir: RunDirOpt = None,
    shard: ShardOpt = None,
    merge_shards: Annotated[
        Optional[int], typer.Option("--merge-shards", min=1, help="Merge the n shards made with --shard i/n.")
    ] = None,
) -> None:
    """Load, split, segment and encode the data; build vocabulary and initial vectors."""
    from han.config import load_config
    from han.distributed import parse_shard, shutdown
    from han.sharding import preprocess_sharded

    cfg = load_config(config, overrides or [])
    target = default_run_dir(config, run_dir)
    own = parse_shard(shard) if shard is not None else None
    try:
        summary = preprocess_sharded(cfg, target, ui.RichProgress(), shard=own, merge_shards=merge_shards)
    finally:
        shutdown()
    if summary is None:  # a torchrun rank other than 0
        return
    if isinstance(summary, dict):
        docs = ", ".join(f"{k} {v}" for k, v in summary.items())
        ui.console.print(f"[green]preprocessed shard[/] {shard} of {target}: {docs}")
        return
    docs = ", ".join(f"{k} {v}" for k, v in summary.documents.items())
    ui.console.print(
        f"[green]preprocessed[/] {target}: {docs}; {len(summary.label_names)} labels; vocabulary {summary.vocab_size} "
        f"({summary.vectors_found} with vectors); train OOV {summary.oov_rate['train']:.2%}"
    )


@app.command()
@ui.handle_errors
def train(
    config: ConfigArg,
    overrides: OverridesArg = None,
    run_dir: RunDirOpt = None,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc", min=1, help="Train data-parallel in N processes on this machine (runs torchrun --standalone)."
        ),
    ] = 1,
) -> None:
    """Train on a preprocessed run directory (data-parallel under torchrun or with --nproc)."""
    from han.config import load_config
    from han.distributed import launched_by_torchrun, shutdown, torchrun_command
    from han.training import train as run_train

    cfg = load_config(config, overrides or [])
    target = default_run_dir(config, run_dir)
    if nproc > 1 and not launched_by_torchrun():
        command = torchrun_command(nproc, ["train", str(config), *(overrides or []), "--run-dir", str(target)])
        raise typer.Exit(subprocess.run(command).returncode)
    try:
        result = run_train(cfg, target, ui.RichProgress())
    finally:
        shutdown()
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun rank 0 reports
        return
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
    device: DeviceOpt = None,
) -> None:
    """Accuracy, macro-F1, per-class scores and confusion matrix; merged into RUN_DIR/metrics.json."""
    from han.inference import evaluate_file, evaluate_split, load_trained_run

    trained = load_trained_run(run_dir, weights, device)
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
    device: DeviceOpt = None,
    shard: ShardOpt = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Documents read, encoded and scored at a time (the shard unit).")
    ] = 2048,
) -> None:
    """Predict the label and per-class probabilities of every document (sharded with --shard or under torchrun)."""
    from han.distributed import launched_by_torchrun, parse_shard, shutdown
    from han.inference import load_trained_run, predict_file
    from han.sharding import predict_sharded, prediction_part_path

    trained = load_trained_run(run_dir, weights, device)
    source = None if input is None or str(input) == "-" else input
    if shard is None and not launched_by_torchrun():
        count = predict_file(
            trained,
            source,
            output,
            stdin=sys.stdin,
            stdout=sys.stdout,
            progress=ui.RichProgress() if output else None,
            chunk_size=chunk_size,
        )
        if output is not None:
            ui.console.print(f"[green]predicted[/] {count} documents -> {output}")
        return
    own = parse_shard(shard) if shard is not None else None
    try:
        progress = ui.RichProgress() if int(os.environ.get("RANK", "0")) == 0 else None
        count = predict_sharded(trained, source, output, own, progress, chunk_size)
    finally:
        shutdown()
    if own is not None:
        ui.console.print(f"[green]predicted[/] {count} documents -> {prediction_part_path(output, *own)}")  # type: ignore[arg-type]
    elif count:
        ui.console.print(f"[green]predicted[/] {count} documents -> {output}")


@app.command("merge-predictions")
@ui.handle_errors
def merge_predictions(
    output: Annotated[Path, typer.Argument(help="The --output given to every `han predict --shard i/n`.")],
    shards: Annotated[int, typer.Option("--shards", min=1, help="n, the number of shards.")],
) -> None:
    """Merge the part files of `han predict --shard i/n --output OUTPUT` into OUTPUT, in row order."""
    from han.sharding import merge_prediction_parts

    count = merge_prediction_parts(output, shards)
    ui.console.print(f"[green]merged[/] {count} predictions from {shards} shards -> {output}")


def main() -> None:
    app()
