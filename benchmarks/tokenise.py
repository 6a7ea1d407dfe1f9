"""Tokenisation throughput of `han.text.segment_datasets.segment_and_encode` with 1 and N worker processes.

    .venv/bin/python benchmarks/tokenise.py [--data ../shared/data/clothing_reviews.csv] [--repeat 5] [--workers 1 2]

Texts: the title + text columns of a CSV (default: the clothing reviews). "words" are the
whitespace-separated words of the input (as in /work/shared/reference/cpu-han-prototype),
"tokens" what spaCy produced (punctuation included). Reports the median of --repeat runs after one
warm-up run, min and max, and checks that every worker count gives identical output.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time

import numpy as np

from han.config import PreprocessConfig
from han.text.segment_datasets import segment_and_encode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data/clothing_reviews.csv")
    parser.add_argument("--columns", nargs="+", default=["title", "text"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    csv.field_size_limit(2**31 - 1)
    with open(args.data, encoding="utf-8", newline="") as handle:
        texts = ["\n\n".join(row[c] for c in args.columns if row.get(c)) for row in csv.DictReader(handle)]
    words = sum(len(t.split()) for t in texts)
    config = PreprocessConfig(max_sentences=10**6, max_words=10**6)
    print(f"{args.data}: {len(texts)} documents, {words} words")
    reference = None
    for workers in args.workers:
        segment_and_encode({"train": texts}, config, workers=workers)  # warm-up
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            corpus = segment_and_encode({"train": texts}, config, workers=workers)
            times.append(time.perf_counter() - start)
        encoded = corpus.encoded("train")
        if reference is None:
            reference = encoded
        same = all(
            np.array_equal(getattr(encoded, k), getattr(reference, k))
            for k in ("tokens", "sentence_offsets", "document_offsets")
        )
        median = statistics.median(times)
        print(
            f"workers={workers}: median {median:.3f}s (min {min(times):.3f}, max {max(times):.3f}, n={len(times)})  "
            f"{words / median:,.0f} words/s  {len(encoded.tokens) / median:,.0f} tokens/s  "
            f"{len(texts) / median:,.0f} docs/s  identical to workers={args.workers[0]}: {same}"
        )


if __name__ == "__main__":
    main()
