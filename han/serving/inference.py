"""The evaluate and predict stages: metrics of a trained run on a split or a file, labels for new documents.

The run is loaded by `han.serving.trained`, documents are read by `han.data.records` (the same text as training)
and scored by `han.evaluation.scoring`; nothing but the run directory is needed.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

import numpy as np

from han.data.records import iter_input_documents
from han.errors import DataError, RunDirError
from han.evaluation.metrics import split_metrics
from han.evaluation.scoring import model_device, predict_probabilities, score_split
from han.progress import Progress
from han.serving.trained import TrainedRun
from han.store.model_card import write_model_card
from han.store.outputs import check_output, output_format, output_path
from han.store.rundir import RunDir
from han.text.segment import EmptyDocuments, prepare_texts, segment_chunk
from han.util.atomic import read_json, write_json_atomic
from han.util.cpus import cores_per_process
from han.util.forked import can_fork, forked_map
from han.util.lock import folder_lock

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


def merge_metrics(run: RunDir, results: dict[str, Any]) -> None:
    """Merge `results` (split or file name -> metrics) into RUN_DIR/metrics.json, atomically; refresh MODEL_CARD.md."""
    existing = {}
    if run.metrics_path.exists():
        run.verify_artifacts(run.metrics_path)
        existing = read_json(run.metrics_path)
    existing.update(results)
    write_json_atomic(run.metrics_path, existing)
    run.record_artifacts(run.metrics_path)
    write_model_card(run)  # the card's results are metrics.json's


def holding_run_lock(function: Callable[Concatenate[TrainedRun, P], R]) -> Callable[Concatenate[TrainedRun, P], R]:
    """`function(trained, ...)` run while holding the lock of the trained run's directory (it writes metrics.json);
    its peak memory goes into the manifest's "stage_peak_memory" as the evaluate stage's (han.util.memory)."""

    @functools.wraps(function)
    def locked(trained: TrainedRun, *args: P.args, **kwargs: P.kwargs) -> R:
        run = trained.run
        with folder_lock(run.root, "han evaluate", create=False), run.measuring_stage("evaluate"):
            return function(trained, *args, **kwargs)

    return locked


@holding_run_lock
def evaluate_split(trained: TrainedRun, split: str, progress: Progress | None = None) -> dict[str, Any]:
    """Metrics on one of the run's preprocessed splits; merged into RUN_DIR/metrics.json."""
    encoded = trained.run.load_split(split)
    if encoded.multilabel != trained.multilabel:
        stored = "label sets" if encoded.multilabel else "one label per document"
        raise RunDirError(
            f"{trained.run.data_path(split)}: holds {stored}, but the run's task is {trained.config.task}; "
            "preprocess and train the run again with one config"
        )
    scores = score_split(
        trained.model,
        encoded,
        trained.config.train.eval_batch_size,
        trained.config.precision,
        progress=progress,
        processes=cores_per_process(),
    )
    metrics = run_metrics(trained, encoded.labels, scores.probabilities)
    if split == "validation" and (linear := linear_kind_metrics(trained.run)) is not None:
        metrics["linear_kind"] = linear  # train.linear_baseline: the guard's figures, beside the network's
    merge_metrics(trained.run, {split: metrics})
    return metrics


def linear_kind_metrics(run: RunDir) -> dict[str, Any] | None:
    """The validation metrics of han's linear kind on the run's features, as training recorded them in the
    manifest (train.linear_baseline), named as a split's metrics; None when training fitted none."""
    train = run.read_manifest().get("train")
    linear = train.get("linear_kind") if isinstance(train, dict) else None
    if not isinstance(linear, dict):
        return None
    prefix = "validation_"
    return {key.removeprefix(prefix): value for key, value in linear.items() if key.startswith(prefix)}


def run_metrics(trained: TrainedRun, labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """The metrics of a run's predictions: at its thresholds (and `predict.at_least_one`) for a multi-label run."""
    return split_metrics(
        labels, probabilities, trained.label_names, trained.thresholds, trained.config.predict.at_least_one
    )


@holding_run_lock
def evaluate_file(trained: TrainedRun, data_file: Path) -> dict[str, Any]:
    """Metrics on a labelled file with the run's text and label columns; merged into metrics.json under the file name."""
    from han.data.label_sets import label_matrix
    from han.data.splits import load_labelled_file  # reading files (and `datasets`) is not needed to score a split

    raw = load_labelled_file(data_file, trained.config.data, trained.multilabel)
    index = {name: i for i, name in enumerate(trained.label_names)}
    each = [set(y) for y in raw.labels] if trained.multilabel else [{y} for y in raw.labels]
    unseen = sorted(set().union(*each) - set(index))
    if unseen:
        rows = [r for r, names in zip(raw.rows, each, strict=True) if names & set(unseen)][:8]
        known = ", ".join(trained.label_names[:30]) + (" ..." if len(trained.label_names) > 30 else "")
        raise DataError(
            f"{data_file}: label(s) {', '.join(map(repr, unseen[:20]))} unknown to the model "
            f"(rows {', '.join(map(str, rows))}); known: {known}"
        )
    labels = label_matrix(raw.labels, trained.label_names) if trained.multilabel else [index[y] for y in raw.labels]
    encoded = trained.encode(list(raw.texts), labels)
    metrics = run_metrics(
        trained,
        encoded.labels,
        predict_probabilities(trained.model, encoded, trained.config.train.eval_batch_size, trained.config.precision),
    )
    merge_metrics(trained.run, {str(data_file): metrics})
    return metrics


# --- prediction --------------------------------------------------------------------------------

PREDICT_CHUNK_SIZE = 2048


def predict_rows(
    trained: TrainedRun,
    texts: Iterable[str],
    chunk_size: int = PREDICT_CHUNK_SIZE,
    shard: tuple[int, int] | None = None,
    processes: int = 1,
    empty: EmptyDocuments | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(row, class probabilities) for each text (rows count from 1), chunk by chunk so memory stays flat.

    With `shard` (i, n), only chunks k with k % n == i are scored: n shards cover the input
    disjointly, and each chunk is batched exactly as in a single process, so merged shards give
    the single-process numbers bit for bit. With `processes` > 1 (and the model on the CPU), that
    many forked worker processes segment and score whole chunks side by side, one torch thread
    each (`han.util.forked.forked_map`); the rows come back in order. `empty` counts the rows scored that have no
    text once cleaned.
    """
    index, count = shard or (0, 1)

    def my_chunks() -> Iterator[tuple[int, list[str]]]:
        iterator = iter(texts)
        first_row, chunk_number = 1, 0
        while chunk := list(islice(iterator, chunk_size)):
            if chunk_number % count == index:
                yield first_row, chunk
            first_row += len(chunk)
            chunk_number += 1

    def prepared_chunks() -> Iterator[tuple[int, list[str]]]:
        # Cleaned and cut at max_chars here, in this process, so `text_stats` counts every text once.
        for first_row, chunk in my_chunks():
            prepared = list(prepare_texts(chunk, trained.config.preprocess, trained.text_stats))
            if empty is not None:
                for offset in (i for i, text in enumerate(prepared) if not text.strip()):
                    empty.add(first_row + offset)
            yield first_row, prepared

    chunks = prepared_chunks()
    head = list(islice(chunks, 2))  # one chunk is scored here: starting workers would cost more than it saves
    parallel = processes > 1 and len(head) > 1 and model_device(trained.model).type == "cpu"
    if parallel and can_fork():
        # spaCy and the model side by side: one worker per core, whole chunks each; texts are cleaned and cut
        # here, so `text_stats` counts them as in one process.
        scored = forked_map(_score_chunk, trained, chain(head, chunks), processes)
    else:
        scored = ((first_row, _score_prepared(trained, chunk)) for first_row, chunk in chain(head, chunks))
    for first_row, probabilities in scored:
        yield from zip(range(first_row, first_row + len(probabilities)), probabilities, strict=True)


def _score_prepared(trained: TrainedRun, texts: list[str]) -> np.ndarray:
    """Class probabilities of a chunk of texts already cleaned and cut at max_chars (`prepare_texts`)."""
    config = trained.config.preprocess
    tokens = segment_chunk(trained.nlp, texts, config.lowercase, config.pipe_batch_size)
    encoded = trained.encode_segmented(tokens)
    return predict_probabilities(trained.model, encoded, trained.config.train.eval_batch_size, trained.config.precision)


def _score_chunk(trained: TrainedRun, chunk: tuple[int, list[str]]) -> tuple[int, np.ndarray]:
    """(first row, probabilities) of a chunk scored in a forked worker (`han.util.forked.forked_map`)."""
    first_row, texts = chunk
    return first_row, _score_prepared(trained, texts)


def predict_texts(
    trained: TrainedRun, texts: Iterable[str], chunk_size: int = PREDICT_CHUNK_SIZE
) -> Iterator[np.ndarray]:
    """Class probabilities for each text, computed chunk by chunk so memory stays flat."""
    for _, probabilities in predict_rows(trained, texts, chunk_size):
        yield probabilities


def _format_row(
    trained: TrainedRun, row: int, probabilities: np.ndarray, output_format: str, ids: dict[str, Any]
) -> dict[str, Any]:
    """One output record: the row, `ids` (`{"id": ...}` or nothing), the label (or, multi-label, the label set: a
    list in JSONL, joined by the run's `data.label_separator` (default ";") in CSV) and every label's probability."""
    label_names = trained.label_names
    label_column, *probability_columns = prediction_columns(label_names, trained.multilabel)
    shown: str | list[str]
    if trained.multilabel:
        names = [label_names[i] for i in np.flatnonzero(trained.predicted_sets(probabilities[None, :])[0])]
        shown = names if output_format == "jsonl" else label_separator(trained).join(names)
    else:
        shown = label_names[int(probabilities.argmax())]
    return {
        "row": row,
        **ids,
        label_column: shown,
        **{column: round(float(p), 6) for column, p in zip(probability_columns, probabilities, strict=True)},
    }


def prediction_columns(label_names: list[str], multilabel: bool) -> list[str]:
    """The columns of a prediction after "row": "label" (multi-label: "labels"), then p_<class> for each class."""
    return ["labels" if multilabel else "label", *(f"p_{name}" for name in label_names)]


def label_separator(trained: TrainedRun) -> str:
    """How a label set is written as text: the run's `data.label_separator`, else ";"."""
    return trained.config.data.output_label_separator


def write_predictions(
    trained: TrainedRun,
    documents: Iterable[tuple[Any, str]],
    output: IO[str],
    output_format: str,
    progress: Progress | None = None,
    source_name: str = "input",
    shard: tuple[int, int] | None = None,
    chunk_size: int = PREDICT_CHUNK_SIZE,
    with_ids: bool = False,
) -> int:
    """Write one prediction per (id, text) document as JSON Lines or CSV (row, id when `with_ids`, label,
    p_<class>...); return the count. Empty documents are predicted too (rows stay aligned) and counted in a warning.

    With `shard` (i, n), only that shard's rows (see `predict_rows`); a shard may hold none. Inputs of
    more than one chunk are segmented and scored by one worker process per core (`predict_rows`).
    """
    progress = progress or Progress()
    progress.start("predict", None)
    writer = None
    count = 0
    processes = cores_per_process()  # under torchrun, the node's cores shared by its ranks
    pending: deque[tuple[int, Any]] = deque()  # (row, id) read but not yet written: a few chunks at most
    empty = EmptyDocuments()

    def texts() -> Iterator[str]:
        for row, (doc_id, text) in enumerate(documents, start=1):
            pending.append((row, doc_id))
            yield text

    for row, probabilities in predict_rows(trained, texts(), chunk_size, shard, processes, empty):
        while pending[0][0] < row:  # rows of other shards
            pending.popleft()
        doc_id = pending.popleft()[1]
        count += 1
        record = _format_row(trained, row, probabilities, output_format, {"id": doc_id} if with_ids else {})
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
    empty.warn(source_name, count)
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
    id_column: str | None = None,
) -> int:
    """Predict every document of `source` (a file or a folder of .txt files; None: stdin) into `output` (.jsonl or
    .csv; default stdout as JSON Lines).

    Each record carries the document's `id` beside its row: the `id_column` value of the input, or a folder
    document's file name (`han.data.records.iter_input_documents`).

    With `shard` (i, n), only that shard's rows, into `output` (han.workflows.sharding.prediction_part_path names it).
    The output may not be the input, a folder or a file of a run directory (`han.store.outputs.check_output`).
    """
    if output is not None:
        check_output(output, [source] if source is not None else [])
        chosen = output_format(output, ("jsonl", "csv"))
    max_chars = trained.config.preprocess.max_chars
    documents = iter_input_documents(source, trained.config.data, stdin, max_chars, id_column)
    name = str(source) if source is not None else "standard input"
    with_ids = id_column is not None or (source is not None and source.is_dir())
    if output is None:
        stream = stdout or io.StringIO()
        return write_predictions(trained, documents, stream, "jsonl", progress, name, shard, chunk_size, with_ids)
    with output_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        return write_predictions(trained, documents, handle, chosen, progress, name, shard, chunk_size, with_ids)
