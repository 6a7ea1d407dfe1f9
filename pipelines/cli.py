"""The `han` command: typer app; each command parses, loads the config, calls one han function, shows the result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from han.config import CorpusReportConfig, DocumentReportConfig
from pipelines import ui

app = typer.Typer(
    name="han",
    help="Hierarchical attention networks for document classification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file (see configs/).")]
RunDirOpt = Annotated[Path | None, typer.Option("--run-dir", help="Run directory [default: runs/<config name>].")]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Dotted overrides, e.g. train.lr=0.01 model.dropout=0.3.", show_default=False),
]
RunDirArg = Annotated[Path, typer.Argument(help="A run directory written by `han run` / `han train`.")]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue an interrupted run from its newest intact checkpoint.")
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace the results already in the run directory.")]


def check_flags(resume: bool, overwrite: bool) -> None:
    """Refuse --resume together with --overwrite (a `ConfigError`)."""
    from han.errors import ConfigError

    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue the run or start it again")


def check_input_option(path: Path | None, option: str, *, data_source: bool = False, folder_ok: bool = False) -> None:
    """Refuse a documents file that is missing, a folder, a named pipe or a device before anything else, naming
    `option` (a `DataError`). `data_source`: the path is read like data.source, so a folder, a glob or a hub id
    passes (the data loader checks it); `folder_ok`: a folder (of .txt files) passes; a named pipe or device is
    still refused here."""
    from han.errors import DataError
    from han.util.files import check_user_file

    source = input_source(path)
    if source is not None:
        folder_ok = folder_ok or data_source
        check_user_file(source, "input file", DataError, option=option, folder_ok=folder_ok, missing_ok=data_source)


def input_source(path: Path | None) -> Path | None:
    """The input file or folder a command reads; None for standard input (INPUT omitted or '-')."""
    return None if path is None or str(path) == "-" else path


IdColumnOpt = Annotated[
    str | None,
    typer.Option(
        "--id-column",
        help="Copy this column of a CSV/TSV/JSONL/Parquet INPUT to the output as `id`, beside `row` "
        "(a folder's documents get their file names).",
    ),
]


ShardOpt = Annotated[
    str | None,
    typer.Option("--shard", help="Do only shard i of n (i/n, 0-based); under torchrun the rank is the shard."),
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N [default: the run's device setting].")
]


def default_run_dir(config_path: Path, run_dir: Path | None) -> Path:
    """`run_dir` when given, else runs/<config file name without its extension>."""
    return run_dir if run_dir is not None else Path("runs") / config_path.stem


def _show_version(value: bool) -> None:
    """Print han's version and the distribution it came from (`han --version`), then exit."""
    if value:
        from han.util.distribution import DISTRIBUTION, installed_version

        ui.console.print(f"han {installed_version() or 'unknown (not installed)'} ({DISTRIBUTION})", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show han's version and exit."),
    ] = False,
) -> None:
    ui.setup_logging(verbose)


@app.command()
@ui.handle_errors
def run(
    config: ConfigArg,
    overrides: OverridesArg = None,
    run_dir: RunDirOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Run every stage: preprocess, train, evaluate (validation and test)."""
    from han.api import run as run_all
    from han.config import load_config
    from han.errors import ConfigError
    from han.training.distributed import launched_by_torchrun

    check_flags(resume, overwrite)
    if launched_by_torchrun():
        raise ConfigError("`han run` is one process; under torchrun run `preprocess`, `train` and `predict` instead")
    cfg = load_config(config, overrides or [])
    target = default_run_dir(config, run_dir)
    result = run_all(cfg, run_dir=target, progress=ui.RichProgress(), resume=resume, overwrite=overwrite)
    for split, metrics in result.metrics.items():
        ui.show_metrics(split, metrics)
    ui.show_start_kept(result.train.history, result.train.best_epoch)
    ui.show_linear_kind(result.train.linear_kind, config)
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
        int | None, typer.Option("--merge-shards", min=1, help="Merge the n shards made with --shard i/n.")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Load, split, segment and encode the data; build vocabulary and initial vectors."""
    from han.config import load_config

    cfg = load_config(config, overrides or [])
    target = default_run_dir(config, run_dir)
    if shard is None and merge_shards is None and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # One process: no torch.distributed (nor torch) import, so a cached preprocess answers at once.
        from han.text.preprocess import preprocess as run_preprocess

        ui.show_preprocess_summary(target, run_preprocess(cfg, target, ui.RichProgress(), overwrite=overwrite))
        return
    from han.training.distributed import parse_shard, shutdown
    from han.workflows.sharding import preprocess_sharded

    own = parse_shard(shard) if shard is not None else None
    try:
        summary = preprocess_sharded(
            cfg, target, ui.RichProgress(), shard=own, merge_shards=merge_shards, overwrite=overwrite
        )
    finally:
        shutdown()
    if summary is None:  # a torchrun rank other than 0
        return
    if isinstance(summary, dict):
        docs = ", ".join(f"{k} {v}" for k, v in summary.items())
        ui.console.print(f"[green]preprocessed shard[/] {shard} of {target}: {docs}")
        return
    ui.show_preprocess_summary(target, summary)


@app.command()
@ui.handle_errors
def train(
    config: ConfigArg,
    overrides: OverridesArg = None,
    run_dir: RunDirOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc", min=1, help="Train data-parallel in N processes on this machine (runs torchrun --standalone)."
        ),
    ] = 1,
) -> None:
    """Train on a preprocessed run directory (checkpointing; --resume continues an interrupted training;
    data-parallel under torchrun or with --nproc)."""
    from han.config import load_config
    from han.training.distributed import launched_by_torchrun, shutdown, torchrun_command
    from han.training.train import train as run_train

    check_flags(resume, overwrite)
    cfg = load_config(config, overrides or [])
    target = default_run_dir(config, run_dir)
    if nproc > 1 and not launched_by_torchrun():
        flags = (["--overwrite"] if overwrite else []) + (["--resume"] if resume else [])
        command = torchrun_command(nproc, ["train", str(config), *(overrides or []), "--run-dir", str(target), *flags])
        raise typer.Exit(subprocess.run(command).returncode)
    try:
        result = run_train(cfg, target, ui.RichProgress(), resume=resume, overwrite=overwrite)
    finally:
        shutdown()
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun rank 0 reports
        return
    ui.console.print(
        f"[green]trained[/] {target}: {result.epochs_run} epochs, best {result.metric_name} {result.best_metric:.4f} "
        f"at epoch {result.best_epoch}{' (the fitted n-gram channel alone)' if result.best_epoch == 0 else ''}; "
        f"{result.docs_per_second:.0f} docs/s"
    )
    ui.show_start_kept(result.history, result.best_epoch)
    ui.show_linear_kind(result.linear_kind, config)


@app.command()
@ui.handle_errors
def compare(
    config: ConfigArg,
    overrides: OverridesArg = None,
    models: Annotated[
        str,
        typer.Option("--models", help="Kinds to compare, comma-separated (han,han_avg,han_max,rnn,cnn,mean,linear)."),
    ] = "han,han_avg,han_max,rnn,cnn,mean,linear",
    seeds: Annotated[
        int, typer.Option("--seeds", min=1, max=20, help="Seeds per model: the config's seed, +1, ...")
    ] = 3,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Comparison folder [default: compare/<config name>].")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML page of the table [default: DIR/compare.html].")
    ] = None,
    resume: ResumeOpt = False,
) -> None:
    """Train and test several model kinds on the same splits and seeds; a table with a paired significance test."""
    from han.config import MAX_SEED, load_config
    from han.errors import ConfigError
    from han.workflows.compare import ComparePlan, parse_models
    from han.workflows.compare import compare as run_compare

    cfg = load_config(config, overrides or [])
    if cfg.seed + seeds - 1 > MAX_SEED:
        raise ConfigError(f"--seeds {seeds}: seeds from {cfg.seed} would pass {MAX_SEED}; lower seed or --seeds")
    folder = directory if directory is not None else Path("compare") / config.stem
    page = output if output is not None else folder / "compare.html"
    plan = ComparePlan(cfg, str(config), parse_models(models), [cfg.seed + i for i in range(seeds)], folder, output)
    result = run_compare(plan, ui.RichProgress(), resume=resume)
    ui.show_comparison(result)
    ui.console.print(f"[green]compared[/]: {folder}/compare.json, {folder}/compare.md, {page}")


@app.command()
@ui.handle_errors
def tune(
    config: ConfigArg,
    overrides: OverridesArg = None,
    trials: Annotated[
        int, typer.Option("--trials", min=1, max=1000, help="Trials to finish (COMPLETE, PRUNED or diverged).")
    ] = 20,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Tuning folder [default: tune/<config name>].")
    ] = None,
    space: Annotated[
        Path | None,
        typer.Option(
            "--space", help="YAML search space: setting -> [choices] or {low, high, log} [default: built in]."
        ),
    ] = None,
    resume: ResumeOpt = False,
) -> None:
    """Search hyperparameters with Optuna (pruning on validation); the best trial's config as DIR/best.yaml."""
    from rich.table import Table

    from han.config import load_config
    from han.workflows.tune import DEFAULT_SPACE, TunePlan, load_space
    from han.workflows.tune import tune as run_tune

    cfg = load_config(config, overrides or [])
    folder = directory if directory is not None else Path("tune") / config.stem
    chosen = load_space(space, cfg, option="--space") if space is not None else dict(DEFAULT_SPACE)
    result = run_tune(TunePlan(cfg, str(config), trials, folder, chosen), ui.RichProgress(), resume=resume)
    best = result["best"]
    table = Table(title=f"han tune: {config.stem} ({result['metric']}, {result['direction']})")
    for name in ("#", "state", "value", "epochs", *(k.rsplit(".", 1)[-1] for k in result["space"])):
        table.add_column(name, justify="left" if name == "state" else "right")
    for trial in result["trials"]:
        value = "—" if trial["value"] is None else f"{trial['value']:.4f}"
        shown = [trial["params"].get(k) for k in result["space"]]
        params = [f"{v:.3g}" if isinstance(v, float) else "—" if v is None else str(v) for v in shown]
        is_best = best is not None and trial["number"] == best["number"]
        table.add_row(
            str(trial["number"]),
            trial["state"].lower(),
            value,
            str(trial["epochs"] or "—"),
            *params,
            style="bold" if is_best else None,
        )
    ui.console.print(table)
    if best is None:
        ui.console.print("[yellow]no trial completed[/]: nothing to write to best.yaml")
        return
    ui.console.print(
        f"[green]best[/]: trial {best['number']}, {result['metric']} {best['value']:.4f} -> {best['config']}"
    )


@app.command()
@ui.handle_errors
def evaluate(
    run_dir: RunDirArg,
    split: Annotated[str, typer.Option("--split", help="A preprocessed split of the run.")] = "test",
    data: Annotated[Path | None, typer.Option("--data", help="A labelled file to evaluate instead of a split.")] = None,
    weights: Annotated[str, typer.Option("--weights", help="best or last.")] = "best",
    device: DeviceOpt = None,
) -> None:
    """Accuracy, macro-F1, per-class scores and confusion matrix; merged into RUN_DIR/metrics.json."""
    from han.serving.inference import evaluate_file, evaluate_split
    from han.serving.trained import load_trained_run

    check_input_option(data, "--data", data_source=True)
    trained = load_trained_run(run_dir, weights, device)
    metrics = evaluate_file(trained, data) if data is not None else evaluate_split(trained, split, ui.RichProgress())
    ui.show_metrics(str(data) if data is not None else split, metrics)


@app.command()
@ui.handle_errors
def predict(
    run_dir: RunDirArg,
    input: Annotated[
        Path | None,
        typer.Argument(
            help="CSV/TSV/JSONL/Parquet/.txt file, or a folder of .txt files (one document a file, its name the "
            "output's `id`); omit (or '-') to read one document per line from stdin.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help=".jsonl or .csv file [default: JSON Lines on stdout].")
    ] = None,
    weights: Annotated[str, typer.Option("--weights", help="best or last.")] = "best",
    device: DeviceOpt = None,
    shard: ShardOpt = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Documents read, encoded and scored at a time (the shard unit).")
    ] = 2048,
    id_column: IdColumnOpt = None,
) -> None:
    """Predict the label and per-class probabilities of every document (sharded with --shard or under torchrun).
    Empty documents still get a row, and are counted in a warning."""
    from han.serving.inference import predict_file
    from han.serving.trained import load_trained_run
    from han.training.distributed import launched_by_torchrun, parse_shard, shutdown
    from han.workflows.sharding import predict_shard, prediction_part_path

    check_input_option(input, "INPUT", folder_ok=True)
    trained = load_trained_run(run_dir, weights, device)
    source = input_source(input)
    if shard is None and not launched_by_torchrun():
        count = predict_file(
            trained,
            source,
            output,
            stdin=sys.stdin,
            stdout=sys.stdout,
            progress=ui.RichProgress() if output else None,
            chunk_size=chunk_size,
            id_column=id_column,
        )
        if output is not None:
            ui.console.print(f"[green]predicted[/] {count} documents -> {output}")
        return
    own = parse_shard(shard) if shard is not None else None
    try:
        progress = ui.RichProgress() if int(os.environ.get("RANK", "0")) == 0 else None
        count = predict_shard(trained, source, output, own, progress, chunk_size, id_column)
    finally:
        shutdown()
    if own is not None:
        ui.console.print(f"[green]predicted[/] {count} documents -> {prediction_part_path(output, *own)}")  # type: ignore[arg-type]
    elif count:
        ui.console.print(f"[green]predicted[/] {count} documents -> {output}")


ReportOutputOpt = Annotated[Path, typer.Option("--output", "-o", help="Report file to write.")]
WeightsOpt = Annotated[str, typer.Option("--weights", help="best or last.")]


def _option_default(schema: type[BaseModel], name: str) -> Any:
    """A command option's default, read from its schema in han/config.py (defaults live only there)."""
    return schema.model_fields[name].default


@app.command()
@ui.handle_errors
def report(
    run_dir: RunDirArg,
    input: Annotated[
        Path | None,
        typer.Argument(
            help="CSV/TSV/JSONL/Parquet/.txt file of documents (true labels are read when it has the run's label "
            "column), a folder of .txt files (one document a file), or '-' to read one document per line from "
            "stdin; omit with --split to use the run's own data source.",
            show_default=False,
        ),
    ] = None,
    output: ReportOutputOpt = Path("report.html"),
    output_format: Annotated[
        str | None, typer.Option("--format", help="html or jsonl [default: from the output suffix].")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="Report one split (train/validation/test) of INPUT, read like the run's data."),
    ] = None,
    sort: Annotated[
        str, typer.Option("--sort", help="input, confidence (lowest first) or misclassified (first).")
    ] = _option_default(DocumentReportConfig, "sort"),
    only: Annotated[str, typer.Option("--only", help="all, misclassified or correct.")] = _option_default(
        DocumentReportConfig, "only"
    ),
    true_label: Annotated[str | None, typer.Option("--true-label", help="Keep documents of this true label.")] = None,
    predicted_label: Annotated[
        str | None, typer.Option("--predicted-label", help="Keep documents predicted as this label.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many documents.")] = None,
    weights: WeightsOpt = "best",
) -> None:
    """Per-document attention report: sentences and words shaded by their weights (HTML), or the same as JSON Lines."""
    from han.config import validate_options
    from han.reports.documents import document_report
    from han.reports.output import write_document_report
    from han.serving.trained import kept_the_linear_start, load_trained_run
    from han.store import outputs
    from han.store.outputs import check_output
    from han.text.preprocess import source_paths

    options = validate_options(
        DocumentReportConfig,
        dict(sort=sort, only=only, true_label=true_label, predicted_label=predicted_label, limit=limit),
        "han report options",
    )
    check_input_option(input, "INPUT", data_source=split is not None, folder_ok=True)
    source = input_source(input)
    check_output(output, [source] if source is not None else [], "--output/-o")
    chosen_format = outputs.output_format(output, ("html", "jsonl"), output_format, "--output/-o")
    trained = load_trained_run(run_dir, weights)
    if input is None:  # --split re-reads the run's data source: never write over it
        check_output(output, source_paths(trained.config), "--output/-o")
    stdin = sys.stdin if input is not None and source is None else None
    result = document_report(trained, source, split, options, ui.RichProgress(), stdin=stdin)
    write_document_report(result, output, chosen_format)
    ui.console.print(f"[green]report[/]: {len(result.documents)} of {result.documents_read} documents -> {output}")
    ui.note_linear_start(kept_the_linear_start(trained, weights))


@app.command("corpus-report")
@ui.handle_errors
def corpus_report(
    run_dir: RunDirArg,
    input: Annotated[
        Path | None,
        typer.Argument(help="A file of documents instead of a preprocessed split of the run.", show_default=False),
    ] = None,
    output: ReportOutputOpt = Path("corpus.html"),
    output_format: Annotated[
        str | None, typer.Option("--format", help="html or json [default: from the output suffix].")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="A preprocessed split of the run.")] = "test",
    words: Annotated[
        str | None, typer.Option("--words", help="Comma-separated words whose weight distributions to plot.")
    ] = None,
    group_by: Annotated[str, typer.Option("--group-by", help="true or predicted label.")] = _option_default(
        CorpusReportConfig, "group_by"
    ),
    top_words: Annotated[int, typer.Option("--top-words", help="Words listed per class.")] = _option_default(
        CorpusReportConfig, "top_words"
    ),
    min_word_count: Annotated[
        int, typer.Option("--min-count", help="Occurrences a word needs in a class to be listed.")
    ] = _option_default(CorpusReportConfig, "min_word_count"),
    positions: Annotated[int, typer.Option("--positions", help="Sentence positions shown.")] = _option_default(
        CorpusReportConfig, "positions"
    ),
    faithfulness_documents: Annotated[
        int, typer.Option("--faithfulness-docs", help="Documents sampled for the faithfulness check (0 skips it).")
    ] = _option_default(CorpusReportConfig, "faithfulness_documents"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the faithfulness sample.")] = _option_default(
        CorpusReportConfig, "seed"
    ),
    weights: WeightsOpt = "best",
) -> None:
    """Corpus attention report: top-attended words per class, sentence positions, chosen words, faithfulness check."""
    from han.config import validate_options
    from han.reports.output import write_corpus_report
    from han.reports.statistics import corpus_statistics, load_split_for_corpus
    from han.serving.trained import kept_the_linear_start, load_trained_run
    from han.store import outputs
    from han.store.outputs import check_output

    options = validate_options(
        CorpusReportConfig,
        dict(
            group_by=group_by,
            top_words=top_words,
            min_word_count=min_word_count,
            words=[w.strip() for w in words.split(",") if w.strip()] if words else None,
            positions=positions,
            faithfulness_documents=faithfulness_documents,
            seed=seed,
        ),
        "han corpus-report options",
    )
    check_input_option(input, "INPUT")
    check_output(output, [input] if input is not None else [], "--output/-o")
    chosen_format = outputs.output_format(output, ("html", "json"), output_format, "--output/-o")
    trained = load_trained_run(run_dir, weights)
    encoded, source = load_split_for_corpus(trained, input, split)
    stats = corpus_statistics(trained, encoded, options, source, ui.RichProgress())
    write_corpus_report(stats, output, chosen_format)
    ui.console.print(f"[green]corpus report[/]: {stats.documents} documents -> {output}")
    ui.note_linear_start(kept_the_linear_start(trained, weights))
    if stats.faithfulness is not None:
        ui.show_faithfulness(stats.faithfulness.summary())


data_app = typer.Typer(help="Look at a dataset before preprocessing it.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("inspect")
@ui.handle_errors
def data_inspect(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Rows per split, labels, sentence/word length percentiles, what the caps cut, and the OOV rate."""
    from han.config import load_config
    from han.text.inspection import inspect_data

    cfg = load_config(config, overrides or [])
    ui.show_data_report(inspect_data(cfg, ui.RichProgress()))


@app.command()
@ui.handle_errors
def show(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="One or more run directories (several: curves overlaid).", show_default=False)
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML page to write.")] = Path("run.html"),
) -> None:
    """A self-contained HTML page of training runs: curves, confusion matrix, per-class scores, label counts;
    names each run's MODEL_CARD.md."""
    from han.reports.run_page import write_run_page
    from han.store.outputs import check_output, output_format

    check_output(output, [*run_dirs], option="--output")
    output_format(output, ("html",), option="--output")
    cards = write_run_page(run_dirs, output)
    ui.console.print(f"[green]run page[/]: {len(run_dirs)} run(s) -> {output}")
    for card in cards:
        ui.console.print(f"model card: {card}", markup=False, highlight=False, soft_wrap=True)


@app.command("merge-predictions")
@ui.handle_errors
def merge_predictions(
    output: Annotated[Path, typer.Argument(help="The --output given to every `han predict --shard i/n`.")],
    shards: Annotated[int, typer.Option("--shards", min=1, help="n, the number of shards.")],
) -> None:
    """Merge the part files of `han predict --shard i/n --output OUTPUT` into OUTPUT, in row order."""
    from han.workflows.sharding import merge_prediction_parts

    count = merge_prediction_parts(output, shards)
    ui.console.print(f"[green]merged[/] {count} predictions from {shards} shards -> {output}")


def main() -> None:
    """Run the typer app (the `han` console script), then end the process without tearing the interpreter down."""
    try:
        app()
        status: object = 0
    except SystemExit as done:
        status = done.code
    leave(status)


def leave(status: object) -> None:
    """End the process with `status` (SystemExit's code). Once torch is loaded, the interpreter's teardown
    (freeing every module) costs ~0.3 s of each command and does nothing a user needs: the exit handlers
    (logging's flush, temporary folders' cleanup, a tracker's last write) run, the streams are flushed, and
    the process ends there."""
    if "torch" not in sys.modules:
        raise SystemExit(status)
    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:  # SystemExit("message"): the message on stderr, status 1, as Python does
        print(status, file=sys.stderr)
        code = 1
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or a full disk: nothing more can be said
            code = code or 1
    os._exit(code)
