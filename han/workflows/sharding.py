"""Sharded preprocessing and prediction: n processes (or machines) each take a disjoint slice; a merge makes one output.

A shard is `(i, n)`, from `--shard i/n` or, under torchrun, (RANK, WORLD_SIZE).

Preprocess: shard i segments (spaCy) a contiguous slice of every split and writes it to
`RUN_DIR/shards/preprocess-i-of-n/`; the merge (`--merge-shards n`, or rank 0 under torchrun)
concatenates the slices in order and runs the rest of preprocessing (vocabulary, word2vec,
encoding) once, so the run directory is the one a single process writes.

Predict: shard i scores chunks k of the input with k % n == i (han.serving.inference.predict_rows) into
`OUTPUT`'s part file `<stem>.shard-i-of-n<suffix>`; the merge (`han merge-predictions OUTPUT --shards n`,
or rank 0 under torchrun) interleaves the parts by row into OUTPUT, which is then byte for byte the
single-process output, and removes the parts. A multi-label run's parts have a `labels` field (the
label set) where a single-label run's have `label`; either merges the same way.
"""

from __future__ import annotations

import csv
import heapq
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from han.config import Config
from han.data.rows import RawSplit
from han.data.splits import load_data
from han.errors import ConfigError, DataError, RunDirError
from han.progress import Progress
from han.serving.inference import PREDICT_CHUNK_SIZE, predict_file
from han.serving.trained import TrainedRun
from han.store.outputs import check_output, output_format, output_path
from han.store.rundir import RunDir
from han.text.preprocess import PreprocessSummary, preprocess
from han.text.segment import Document, build_pipeline, segment
from han.training.distributed import barrier, contiguous_shard, launched_by_torchrun, setup, shard_from_env
from han.util.atomic import atomic_path, create_folder, read_json, write_json_atomic
from han.util.lock import LOCK_NAME, folder_lock

if TYPE_CHECKING:
    from spacy.language import Language

log = logging.getLogger(__name__)

SEGMENTED_TYPE = pa.list_(pa.list_(pa.string()))
# How a prediction record starts: row, then label (multi-label: labels), or the document's id (--id-column, folders).
PREDICTION_FIELDS = (["row", "label"], ["row", "labels"], ["row", "id"])


def shard_wait_seconds() -> float:
    """How long ranks wait for the slowest shard under torchrun: $HAN_SHARD_WAIT_S, default a day."""
    return float(os.environ.get("HAN_SHARD_WAIT_S", "86400"))


# --- preprocessing ---------------------------------------------------------------------------------


def preprocess_shard_dir(run_dir: Path, index: int, count: int) -> Path:
    """The folder of preprocess shard `index` of `count`: shards/preprocess-<i>-of-<n> under `run_dir`."""
    return Path(run_dir) / "shards" / f"preprocess-{index}-of-{count}"


def segment_split(nlp: Language, split: RawSplit, config: Config, name: str, progress: Progress) -> list[Document]:
    """Sentences of tokens for every document of a split (reference path, one process); no token is an error."""
    progress.start(f"segment {name}", len(split))
    documents = []
    for document in segment(nlp, split.texts, config.preprocess):
        documents.append(document)
        progress.advance(1)
    progress.stop()
    empty = [split.rows[i] for i, doc in enumerate(documents) if not doc]
    if empty:
        raise DataError(
            f"{config.data.source} [{name}]: {len(empty)} document(s) have no tokens after preprocessing, at {split.describe_rows(empty)}"
        )
    return documents


def preprocess_shard(
    config: Config, run_dir: Path, shard: tuple[int, int], progress: Progress | None = None
) -> dict[str, int]:
    """Segment shard `shard` = (i, n) of every split into RUN_DIR/shards/; return its documents per split.

    The shards share the run directory's lock (each writes its own folder): only a whole-run writer is refused."""
    with folder_lock(Path(run_dir), "han preprocess --shard", shared=True):
        return _preprocess_shard(config, Path(run_dir), shard, progress)


def _preprocess_shard(
    config: Config, run_dir: Path, shard: tuple[int, int], progress: Progress | None
) -> dict[str, int]:
    progress = progress or Progress()
    index, count = shard
    loaded = load_data(config.data, config.seed, config.multilabel)
    nlp = build_pipeline(config.preprocess)
    run = RunDir(Path(run_dir))
    if run.is_han_run() and run.listed_artifacts():
        raise RunDirError(
            f"{run.root}: already holds a run; preprocess shards go into a new or empty folder "
            "(or empty this run first with `han preprocess ... --overwrite`)"
        )
    if (
        run.root.is_dir()
        and not run.is_han_run()
        and any(c.name not in ("shards", LOCK_NAME) for c in run.root.iterdir())
    ):
        raise RunDirError(
            f"{run.root}: holds files but is not a han run directory; preprocess shards go into a new or empty "
            "folder or a run directory of han's; choose another --run-dir"
        )
    folder = preprocess_shard_dir(run_dir, index, count)
    create_folder(folder, "--run-dir")
    documents = {}
    for name, split in loaded.splits.items():
        start, stop = contiguous_shard(len(split), index, count)
        segmented = segment_split(nlp, split.subset(list(range(start, stop))), config, name, progress)
        with atomic_path(folder / f"{name}.parquet") as tmp:
            pq.write_table(pa.table({"sentences": pa.array(segmented, SEGMENTED_TYPE)}), tmp)
        documents[name] = len(segmented)
    # written last: its presence says the shard is complete
    write_json_atomic(
        folder / "shard.json",
        {"shard": [index, count], "data_fingerprint": loaded.fingerprint(), "documents": documents},
    )
    return documents


def _read_shards(run_dir: Path, count: int) -> dict[str, list[Document]]:
    infos = []
    for index in range(count):
        info_path = preprocess_shard_dir(run_dir, index, count) / "shard.json"
        if not info_path.is_file():
            raise RunDirError(f"{info_path}: missing; run `han preprocess CONFIG --shard {index}/{count}` first")
        infos.append(read_json(info_path))
    if len({info["data_fingerprint"] for info in infos}) != 1:
        raise RunDirError(f"{Path(run_dir) / 'shards'}: the shards were made from different data; rerun them")
    segmented: dict[str, list[Document]] = {}
    for index in range(count):
        folder = preprocess_shard_dir(run_dir, index, count)
        for name in infos[0]["documents"]:
            table = pq.read_table(folder / f"{name}.parquet")
            segmented.setdefault(name, []).extend(table.column("sentences").to_pylist())
    return segmented


def merge_preprocess_shards(
    config: Config, run_dir: Path, count: int, progress: Progress | None = None
) -> PreprocessSummary:
    """Concatenate the `count` shards' segmentations in order and finish preprocessing, as one process would."""
    with folder_lock(Path(run_dir), "han preprocess --merge-shards", create=False):
        segmented = _read_shards(run_dir, count)
        summary = preprocess(config, run_dir, progress, segmented=segmented)
        for index in range(count):
            shutil.rmtree(preprocess_shard_dir(run_dir, index, count))
        shards_root = Path(run_dir) / "shards"
        if shards_root.is_dir() and not any(shards_root.iterdir()):
            shards_root.rmdir()
    return summary


def preprocess_sharded(
    config: Config,
    run_dir: Path,
    progress: Progress | None = None,
    shard: tuple[int, int] | None = None,
    merge_shards: int | None = None,
    overwrite: bool = False,
) -> PreprocessSummary | dict[str, int] | None:
    """Preprocess as asked: everything (one process), one shard, the merge of shards, or all of it under torchrun.

    Returns the summary where the run directory was completed (under torchrun: on rank 0; None on the
    other ranks), or the shard's documents per split for an explicit `shard`.
    """
    if merge_shards is not None:
        return merge_preprocess_shards(config, run_dir, merge_shards, progress)
    if shard is not None:
        return preprocess_shard(config, run_dir, shard, progress)
    if not launched_by_torchrun():
        return preprocess(config, run_dir, progress, overwrite=overwrite)
    ctx = setup("cpu", shard_wait_seconds())  # gloo suffices to wait for each other
    own = shard_from_env(None)
    assert own is not None
    preprocess_shard(config, run_dir, own, progress if ctx.is_main else None)
    barrier(ctx)
    summary = merge_preprocess_shards(config, run_dir, own[1], progress) if ctx.is_main else None
    barrier(ctx)
    return summary


# --- prediction ------------------------------------------------------------------------------------


def prediction_part_path(output: Path, index: int, count: int) -> Path:
    """Where shard `index` of `count` writes its part of OUTPUT."""
    output = Path(output)
    return output.with_name(f"{output.stem}.shard-{index}-of-{count}{output.suffix}")


def _part_records(path: Path, csv_format: bool, header: list[list[str]]) -> Iterator[tuple[int, str | list[str]]]:
    """(row, record) of one part file, in its (row) order, checked: every part must hold what `han predict
    --shard` writes (the same CSV header, or JSON objects with the same fields), with increasing rows."""
    where = f"{path}: not a prediction part written by `han predict --shard`"
    previous = 0
    with open(path, encoding="utf-8", newline="") as handle:
        try:
            if csv_format:
                reader = csv.reader(handle, strict=True)
                first = next(reader, None)
                if first is None:
                    return
                if first[:2] not in PREDICTION_FIELDS or (header and first != header[0]):
                    raise DataError(f"{where} (its header {first[:4]} differs from the other parts')")
                header.append(first)
                for fields in reader:
                    if (
                        len(fields) != len(first)
                        or not (fields[0].isdigit() and len(fields[0]) <= 18)
                        or int(fields[0]) <= previous
                    ):
                        raise DataError(f"{where} (line {reader.line_num}: {','.join(fields)[:60]!r})")
                    previous = int(fields[0])
                    yield previous, fields
            else:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line, parse_constant=_no_constant)
                    except (json.JSONDecodeError, RecursionError, ValueError):
                        raise DataError(f"{where} (line {number} is not valid JSON)") from None
                    keys = list(record) if isinstance(record, dict) else []
                    row = record.get("row") if isinstance(record, dict) else None
                    if keys[:2] not in PREDICTION_FIELDS or not isinstance(row, int) or isinstance(row, bool):
                        raise DataError(f"{where} (line {number} is not a prediction record)")
                    if (header and keys != header[0]) or row <= previous:
                        raise DataError(f"{where} (line {number}: other fields or rows than the other parts)")
                    if not header:
                        header.append(keys)
                    previous = row
                    yield row, line
        except UnicodeDecodeError:
            raise DataError(f"{where} (not UTF-8 text)") from None
        except csv.Error as error:
            raise DataError(f"{where} ({error})") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a probability")  # NaN / Infinity: han never writes them


MAX_SHARDS = 100_000


def merge_prediction_parts(output: Path, count: int) -> int:
    """Interleave the `count` part files of OUTPUT by row into OUTPUT (atomically), then remove them; return the
    rows. Parts that do not fit together (other headers, junk, missing rows) are an error and are kept."""
    output = Path(output)
    if not 1 <= count <= MAX_SHARDS:
        raise ConfigError(f"--shards {count}: use 1 to {MAX_SHARDS}")
    parts = [prediction_part_path(output, index, count) for index in range(count)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: prediction shard missing; run `han predict ... --shard i/{count}` for each i")
    check_output(output, parts)
    csv_format = output_format(output, ("jsonl", "csv")) == "csv"
    headers: list[list[str]] = []
    rows = 0
    with output_path(output) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle) if csv_format else None
            merged = heapq.merge(*(_part_records(p, csv_format, headers) for p in parts), key=lambda item: item[0])
            for row, record in merged:
                if row != rows + 1:
                    raise DataError(
                        f"{output}: shards hold row {row} where row {rows + 1} was expected; "
                        f"were they all made from the same input with --shard i/{count}?"
                    )
                if writer is not None:
                    if rows == 0:
                        writer.writerow(headers[0])
                    writer.writerow(record)
                else:
                    handle.write(record)  # type: ignore[arg-type]
                rows = row
        if rows == 0:
            raise DataError("the input holds no documents")
    for part in parts:
        part.unlink()
    return rows


def predict_shard(
    trained: TrainedRun,
    source: Path | None,
    output: Path | None,
    shard: tuple[int, int] | None = None,
    progress: Progress | None = None,
    chunk_size: int | None = None,
    id_column: str | None = None,
) -> int:
    """Predict one shard into its part file; under torchrun every rank its own, then rank 0 merges into OUTPUT.

    Returns the rows written: the shard's, or under torchrun the merged total on rank 0 (0 elsewhere).
    """
    own = shard_from_env(shard)
    if own is None:
        raise DataError("sharded prediction needs --shard i/n or a torchrun launch")
    if output is None:
        raise DataError("sharded prediction needs --output FILE (each shard writes its part beside it)")
    if source is None:
        raise DataError("sharded prediction needs an input file (standard input cannot be shared by shards)")
    part = prediction_part_path(output, *own)
    ctx = setup("cpu", shard_wait_seconds()) if shard is None else None
    count = predict_file(
        trained,
        source,
        part,
        progress=progress,
        shard=own,
        chunk_size=chunk_size or PREDICT_CHUNK_SIZE,
        id_column=id_column,
    )
    if ctx is None:
        return count
    barrier(ctx)
    total = merge_prediction_parts(output, own[1]) if ctx.is_main else 0
    barrier(ctx)
    return total
