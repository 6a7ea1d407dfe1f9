"""gensim word2vec throughput as han configures it (200-d CBOW, window 5, negative 5), by worker count.

python -m benchmarks.word2vec [--words 2000000] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import emit, load_average
from benchmarks.synthetic import id_documents
from han.config import EmbeddingsConfig
from han.text.embeddings import train_word2vec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=8000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    sentences = [[f"w{i}" for i in sentence] for document in id_documents(args.docs, seed=0) for sentence in document]
    words = sum(len(s) for s in sentences)
    for workers in args.workers:
        config = EmbeddingsConfig(dim=200, epochs=1, min_count=2, workers=workers)
        train_word2vec(sentences[:2000], config, seed=0)  # warm-up
        seconds = []
        for _ in range(args.reps):
            start = time.perf_counter()
            train_word2vec(sentences, config, seed=0)
            seconds.append(time.perf_counter() - start)
        seconds.sort()
        emit(
            {
                "bench": "word2vec",
                "workers": workers,
                "words": words,
                "seconds_median": seconds[len(seconds) // 2],
                "words_per_s": words / seconds[len(seconds) // 2],
                "load_avg_1m": load_average(),
            }
        )


if __name__ == "__main__":
    main()
