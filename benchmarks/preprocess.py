"""Preprocessing throughput: text -> spaCy sentences and tokens -> vocabulary ids, by worker count.

    python -m benchmarks.preprocess [--docs 4000] [--reps 3] [--workers 1 2]

Runs han's preprocessing path (`han.text.segment_datasets.segment_and_encode`: spaCy blank('en') +
sentencizer in `workers` processes, vocabulary, encoding to int ids) on synthetic IMDB-like text.
Rates count the whitespace-separated words of the input. One JSON line per worker count.
"""

from __future__ import annotations

import argparse

from benchmarks.common import emit, load_average, peak_rss_mb, rate, timed_passes
from benchmarks.synthetic import text_documents
from han.config import PreprocessConfig
from han.text.segment_datasets import segment_and_encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    texts, words = text_documents(args.docs, seed=0)
    config = PreprocessConfig(max_sentences=1000, max_words=1000)  # no caps: every word is processed
    for workers in args.workers:

        def run_pass(workers: int = workers) -> None:
            corpus = segment_and_encode({"train": texts}, config, workers=workers)
            corpus.encoded("train")

        seconds = timed_passes(run_pass, args.reps)
        words_rate = rate(words, seconds)
        emit(
            {
                "bench": "preprocess",
                "workers": workers,
                "docs": args.docs,
                "words": words,
                "words_per_s": words_rate["median"],
                "words_per_s_min": words_rate["min"],
                "words_per_s_max": words_rate["max"],
                "docs_per_s": rate(args.docs, seconds)["median"],
                "passes": len(seconds),
                "peak_rss_mb": peak_rss_mb(),
                "load_avg_1m": load_average(),
            }
        )


if __name__ == "__main__":
    main()
