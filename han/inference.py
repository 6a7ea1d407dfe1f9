"""Using a trained run: evaluate it on a split or a file, and predict labels for new documents.

Everything comes from the run directory (config, vocabulary, labels, weights); nothing else is needed.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np
from spacy.language import Language

from han.artifacts import RunDir, atomic_path, read_json, write_json_atomic
from han.batching import EncodedSplit
from han.config import Config
from han.data import load_labelled_file
from han.device import check_precision, resolve_device
from han.distributed import threads_per_process
from han.errors import ConfigError, DataError, RunDirError
from han.evaluation import classification_metrics, predict_probabilities
from han.inputs import check_csv_header, check_input_file
from han.model import HierarchicalAttentionNetwork, build_model
from han.preprocessing import encode_documents
from han.progress import Progress
from han.segment import TextStats, build_pipeline, segment
from han.training import load_label_names, load_weights, set_threads
from han.vocab import Vocab

log = logging.getLogger(__name__)


@dataclass
class TrainedRun:
    """A run directory's trained model with what it needs to read text."""

    run: RunDir
    config: Config
    vocab: Vocab
    label_names: list[str]
    model: HierarchicalAttentionNetwork
    nlp: Language
    text_stats: TextStats = field(default_factory=TextStats)  # documents truncated / cleaned so far

    def encode(self, texts: list[str], labels: list[int] | None = None) -> EncodedSplit:
        """Segment and encode raw texts like the training data; a text with no token becomes one unknown word."""
        documents = [
            doc if doc else [["<empty>"]] for doc in segment(self.nlp, texts, self.config.preprocess, self.text_stats)
        ]
        encoded = encode_documents(documents, self.vocab)
        return EncodedSplit.from_documents(encoded, labels if labels is not None else [-1] * len(texts))


def load_trained_run(run_dir: Path, weights: str = "best", device: str | None = None) -> TrainedRun:
    """Load config, vocabulary, labels and weights (`best` or `last`) from a run directory, verified against its manifest.

    The model goes to `device` (default: the run's `device` setting, han/device.py).
    """
    run = RunDir(Path(run_dir))
    if weights not in ("best", "last"):
        raise ConfigError(f"--weights {weights!r}: use best or last")
    weights_path = run.best_weights_path if weights == "best" else run.last_weights_path
    run.require(
        run.config_path,
        run.vocab_path,
        run.labels_path,
        weights_path,
        hint="train the run first (`han train` or `han run`)",
    )
    run.verify_artifacts(run.config_path, run.vocab_path, run.labels_path, weights_path)
    config = run.load_config()
    vocab = Vocab.load(run.vocab_path)
    label_names = load_label_names(run)
    set_threads(threads_per_process(config.train.threads))  # shared by the processes of a torchrun node
    model = build_model(config.model, len(vocab), config.embeddings.dim, len(label_names))
    load_weights(model, weights_path)
    resolved = resolve_device(device or config.device)
    check_precision(resolved, config.precision)
    model.to(resolved).eval()
    return TrainedRun(run, config, vocab, label_names, model, build_pipeline(config.preprocess))


def _merge_metrics(run: RunDir, results: dict[str, Any]) -> None:
    existing = {}
    if run.metrics_path.exists():
        run.verify_artifacts(run.metrics_path)
        existing = read_json(run.metrics_path)
    existing.update(results)
    write_json_atomic(run.metrics_path, existing)
    run.record_artifacts(run.metrics_path)


def evaluate_split(trained: TrainedRun, split: str) -> dict[str, Any]:
    """Metrics on one of the run's preprocessed splits; merged into RUN_DIR/metrics.json."""
    path = trained.run.data_path(split)
    if not path.exists():
        available = ", ".join(trained.run.splits()) or "none"
        raise RunDirError(f"{trained.run.root}: no preprocessed split {split!r} (available: {available})")
    trained.run.verify_artifacts(path)
    encoded = EncodedSplit.load(path)
    metrics = classification_metrics(
        encoded.labels,
        predict_probabilities(trained.model, encoded, trained.config.train.eval_batch_size, trained.config.precision),
        trained.label_names,
    )
    _merge_metrics(trained.run, {split: metrics})
    return metrics


def evaluate_file(trained: TrainedRun, data_file: Path) -> dict[str, Any]:
    """Metrics on a labelled file with the run's text and label columns; merged into metrics.json under the file name."""
    raw = load_labelled_file(data_file, trained.config.data)
    index = {name: i for i, name in enumerate(trained.label_names)}
    unseen = sorted(set(raw.labels) - set(index))
    if unseen:
        rows = [r for r, y in zip(raw.rows, raw.labels) if y in set(unseen)][:8]
        raise DataError(
            f"{data_file}: label(s) {', '.join(map(repr, unseen))} unknown to the model (rows {', '.join(map(str, rows))}); known: {', '.join(trained.label_names)}"
        )
    encoded = trained.encode(raw.texts, [index[y] for y in raw.labels])
    metrics = classification_metrics(
        encoded.labels,
        predict_probabilities(trained.model, encoded, trained.config.train.eval_batch_size, trained.config.precision),
        trained.label_names,
    )
    _merge_metrics(trained.run, {str(data_file): metrics})
    return metrics


# --- prediction --------------------------------------------------------------------------------

INPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet", ".txt")


def _iter_csv(handle: IO[str], delimiter: str, columns: list[str], where: str) -> Iterator[str]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(handle, delimiter=delimiter)
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(
            f"{where}: column(s) {', '.join(missing)} not found (columns: {', '.join(reader.fieldnames or [])}); the run reads data.text_column"
        )
    for row in reader:
        yield "\n\n".join(row[c] or "" for c in columns)


def _iter_jsonl(handle: IO[str], columns: list[str], where: str) -> Iterator[str]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: line {number} is not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or any(c not in record for c in columns):
            raise DataError(f"{where}: line {number} has no {', '.join(columns)} field(s)")
        yield "\n\n".join(str(record[c] or "") for c in columns)


def _iter_parquet(path: Path, columns: list[str]) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: not a readable Parquet file ({str(error).splitlines()[0]})") from None
    missing = [c for c in columns if c not in file.schema_arrow.names]
    if missing:
        raise DataError(
            f"{path}: column(s) {', '.join(missing)} not found (columns: {', '.join(file.schema_arrow.names)})"
        )
    for record_batch in file.iter_batches(batch_size=1024, columns=columns):
        parts = [record_batch.column(c).to_pylist() for c in columns]
        for values in zip(*parts):
            yield "\n\n".join(str(v or "") for v in values)


def iter_input_texts(source: Path | None, columns: list[str], stdin: IO[str] | None = None) -> Iterator[str]:
    """Texts from a CSV/TSV/JSONL/Parquet file (the run's text columns), a .txt file or `stdin` (one document a line)."""
    if source is None:
        if stdin is None:
            raise DataError("no input: give a file or pipe text lines on standard input")
        yield from (line.rstrip("\n") for line in stdin)
        return
    suffix = source.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise DataError(
            f"{source}: unsupported input type {suffix!r}; use {', '.join(INPUT_SUFFIXES)} or standard input"
        )
    if not source.exists():
        raise DataError(f"{source}: input file not found")
    check_input_file(source)
    if suffix in (".csv", ".tsv"):
        check_csv_header(source, "\t" if suffix == ".tsv" else ",", columns)
    if suffix == ".parquet":
        yield from _iter_parquet(source, columns)
        return
    with open(source, encoding="utf-8-sig", newline="") as handle:
        if suffix in (".csv", ".tsv"):
            yield from _iter_csv(handle, "\t" if suffix == ".tsv" else ",", columns, str(source))
        elif suffix == ".jsonl":
            yield from _iter_jsonl(handle, columns, str(source))
        else:
            yield from (line.rstrip("\n") for line in handle)


PREDICT_CHUNK_SIZE = 2048


def predict_rows(
    trained: TrainedRun,
    texts: Iterable[str],
    chunk_size: int = PREDICT_CHUNK_SIZE,
    shard: tuple[int, int] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(row, class probabilities) for each text (rows count from 1), chunk by chunk so memory stays flat.

    With `shard` (i, n), only chunks k with k % n == i are scored: n shards cover the input
    disjointly, and each chunk is batched exactly as in a single process, so merged shards give
    the single-process numbers bit for bit.
    """
    index, count = shard or (0, 1)
    iterator = iter(texts)
    first_row, chunk_number = 1, 0
    while chunk := list(islice(iterator, chunk_size)):
        if chunk_number % count == index:
            probabilities = predict_probabilities(
                trained.model, trained.encode(chunk), trained.config.train.eval_batch_size, trained.config.precision
            )
            yield from zip(range(first_row, first_row + len(chunk)), probabilities)
        first_row += len(chunk)
        chunk_number += 1


def predict_texts(
    trained: TrainedRun, texts: Iterable[str], chunk_size: int = PREDICT_CHUNK_SIZE
) -> Iterator[np.ndarray]:
    """Class probabilities for each text, computed chunk by chunk so memory stays flat."""
    for _, probabilities in predict_rows(trained, texts, chunk_size):
        yield probabilities


def _format_row(row: int, probabilities: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    return {
        "row": row,
        "label": label_names[int(probabilities.argmax())],
        **{f"p_{name}": round(float(p), 6) for name, p in zip(label_names, probabilities)},
    }


def write_predictions(
    trained: TrainedRun,
    texts: Iterable[str],
    output: IO[str],
    output_format: str,
    progress: Progress | None = None,
    source_name: str = "input",
    shard: tuple[int, int] | None = None,
    chunk_size: int = PREDICT_CHUNK_SIZE,
) -> int:
    """Write one prediction per text as JSON Lines or CSV (row, label, p_<class>...); return the count.

    With `shard` (i, n), only that shard's rows (see `predict_rows`); a shard may hold none.
    """
    progress = progress or Progress()
    progress.start("predict", None)
    writer = None
    count = 0
    for count, (row, probabilities) in enumerate(predict_rows(trained, texts, chunk_size, shard), start=1):
        record = _format_row(row, probabilities, trained.label_names)
        if output_format == "csv":
            if writer is None:
                writer = csv.DictWriter(output, fieldnames=list(record))
                writer.writeheader()
            writer.writerow(record)
        else:
            output.write(json.dumps(record) + "\n")
        progress.advance(1)
    progress.stop()
    if count == 0 and shard is None:
        raise DataError(f"{source_name}: the input holds no documents")
    stats = trained.text_stats
    if stats.truncated:
        log.warning(
            "%s: %d document(s) longer than preprocess.max_chars=%d characters were truncated",
            source_name,
            stats.truncated,
            trained.config.preprocess.max_chars,
        )
    return count


def predict_file(
    trained: TrainedRun,
    source: Path | None,
    output: Path | None,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    progress: Progress | None = None,
    shard: tuple[int, int] | None = None,
    chunk_size: int = PREDICT_CHUNK_SIZE,
) -> int:
    """Predict every document of `source` (or stdin) into `output` (.jsonl or .csv; default stdout as JSON Lines).

    With `shard` (i, n), only that shard's rows, into `output` (han.sharding.prediction_part_path names it).
    """
    texts = iter_input_texts(source, trained.config.data.text_columns, stdin)
    name = str(source) if source is not None else "standard input"
    if output is None:
        return write_predictions(trained, texts, stdout or io.StringIO(), "jsonl", progress, name, shard, chunk_size)
    output_format = "csv" if output.suffix.lower() == ".csv" else "jsonl"
    with atomic_path(output) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            return write_predictions(trained, texts, handle, output_format, progress, name, shard, chunk_size)
