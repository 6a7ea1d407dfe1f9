"""Where the time of `han evaluate` and `han predict` goes, per document and per part, one thread.

    python -m benchmarks.scoring_time RUN_DIR TEXTS.csv [--docs 4096] [--reps 3]

RUN_DIR is a trained run (e.g. `han run` on the IMDB-sized stand-in, as benchmarks.realtext makes it);
TEXTS.csv its test texts (column `text`). Measured in this process with one torch thread, medians of `reps`
passes after a warm-up:
- start-up: a fresh `python` that imports what `han evaluate` imports, loads the run and exits as the commands
  do, skipping the interpreter's teardown (wall seconds);
- segmenting: spaCy's tokenizer, the sentence rule and encoding (`segment_chunk`, `encode_segmented`), ms a
  document, in one pass over the first `--corpus-docs / cores` texts with spaCy's caches cold, as one worker of
  `han predict` meets them;
- scoring: the model's forward pass on the run's preprocessed test split, ms a document, and the part of it
  that is the n-gram channel's TF-IDF features;
- side by side: the same scoring and segmenting in `cores` forked processes at once, as the commands' workers
  run them, ms a document in each (on a machine whose cores share caches or memory bandwidth, more than alone);
- the ceiling: docs/s of `han evaluate` and `han predict` on `cores` cores if the work per document split
  perfectly across them at the side-by-side speed, start-up included, for `--corpus-docs` documents.
One JSON line.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import emit, load_average
from han.store.encoded import EncodedSplit
from han.util.forked import can_fork, forked_map

# The process ends as a han command does (pipelines.cli.leave): without the interpreter's teardown of torch.
START_UP = (
    "from han.serving.trained import load_trained_run\n"
    "import han.serving.inference, pipelines.cli\n"
    "load_trained_run(__import__('pathlib').Path({run!r}))\n"
    "__import__('os')._exit(0)\n"
)


def median_seconds(work: Callable[[], object], reps: int) -> float:
    work()  # warm-up: caches, first allocations
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def first_documents(split: EncodedSplit, count: int) -> EncodedSplit:
    """The split's first `count` documents."""
    count = min(count, len(split))
    sentences = int(split.document_offsets[count])
    tokens = int(split.sentence_offsets[sentences])
    return EncodedSplit(
        split.tokens[:tokens],
        split.sentence_offsets[: sentences + 1],
        split.document_offsets[: count + 1],
        split.labels[:count],
    )


def start_up_seconds(run: Path, reps: int) -> float:
    """Wall seconds of a fresh interpreter that imports what `han evaluate` does and loads the run."""
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", START_UP.format(run=str(run))], check=True)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("texts", type=Path)
    parser.add_argument("--docs", type=int, default=4096, help="documents of each split timed")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--corpus-docs", type=int, default=25_000, help="documents the ceiling is stated for")
    args = parser.parse_args()

    from han.evaluation.scoring import predict_probabilities
    from han.serving.inference import PREDICT_CHUNK_SIZE
    from han.serving.trained import load_trained_run
    from han.text.segment import prepare_texts, segment_chunk

    torch.set_num_threads(1)
    trained = load_trained_run(args.run)
    config = trained.config
    split = first_documents(trained.run.load_split("test"), args.docs)
    csv.field_size_limit(sys.maxsize)
    cores = len(os.sched_getaffinity(0))
    with args.texts.open(newline="", encoding="utf-8") as file:
        rows = zip(range(args.corpus_docs // cores), csv.DictReader(file), strict=False)
        texts = [row["text"] for _, row in rows]
    prepared = list(prepare_texts(texts, config.preprocess, trained.text_stats))
    nlp = trained.nlp

    def segmenting() -> None:
        for start in range(0, len(prepared), PREDICT_CHUNK_SIZE):
            chunk = prepared[start : start + PREDICT_CHUNK_SIZE]
            trained.encode_segmented(
                segment_chunk(nlp, chunk, config.preprocess.lowercase, config.preprocess.pipe_batch_size)
            )

    def scoring() -> None:
        predict_probabilities(trained.model, split, config.train.eval_batch_size, config.precision)

    def channel_features() -> None:
        wide = getattr(trained.model, "wide", None)
        if wide is None:
            return
        from han.evaluation.scoring import SCORE_BATCH_TOKENS
        from han.text.batching import bucketed_batches, collate

        for indices in bucketed_batches(split, config.train.eval_batch_size, rng=None, max_tokens=SCORE_BATCH_TOKENS):
            batch = collate(split, indices)
            wide.features(batch.word_ids, batch.sentence_lengths, batch.sentence_counts)

    def timed(work: str) -> float:
        """ms a document of one pass of `work` (segmenting once: a second pass would find spaCy's caches warm)."""
        if work == "segment":
            start = time.perf_counter()
            segmenting()
            return 1000 * (time.perf_counter() - start) / len(prepared)
        return 1000 * median_seconds(scoring, args.reps) / len(split)

    # Side by side first: forked from a process that has not segmented yet, each worker meets spaCy's caches cold.
    side_by_side: dict[str, float] = {}
    if cores > 1 and can_fork():
        for work in ("segment", "score"):
            side_by_side[work] = statistics.median(forked_map(lambda _, w: timed(w), None, [work] * cores, cores))
    segment_ms = timed("segment")
    score_ms = timed("score")
    channel_ms = 1000 * median_seconds(channel_features, args.reps) / len(split)
    side_by_side = side_by_side or {"segment": segment_ms, "score": score_ms}
    start_up = start_up_seconds(args.run, args.reps)

    def ceiling(ms_per_doc: float) -> float:
        return args.corpus_docs / (start_up + args.corpus_docs * ms_per_doc / 1000 / cores)

    emit(
        {
            "bench": "scoring_time",
            "docs": len(split),
            "tokens_per_doc": float(len(split.tokens) / len(split)),
            "start_up_s": start_up,
            "segment_ms_per_doc": segment_ms,
            "score_ms_per_doc": score_ms,
            "channel_features_ms_per_doc": channel_ms,
            "cores": cores,
            "side_by_side_segment_ms_per_doc": side_by_side["segment"],
            "side_by_side_score_ms_per_doc": side_by_side["score"],
            "evaluate_ceiling_docs_per_s": ceiling(side_by_side["score"]),
            "predict_ceiling_docs_per_s": ceiling(side_by_side["score"] + side_by_side["segment"]),
            "load": load_average(),
        }
    )


if __name__ == "__main__":
    main()
