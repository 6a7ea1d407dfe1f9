"""Preprocessing throughput: text -> spaCy sentences and tokens -> vocabulary ids.

    python -m benchmarks.preprocess [--docs 2000] [--reps 3]

Uses han's own segmentation (spaCy blank('en') + sentencizer, preprocess.* defaults) and vocabulary
encoding on synthetic IMDB-like text. Rates count the whitespace-separated words of the input.
"""

from __future__ import annotations

import argparse
from collections import Counter

from benchmarks.common import emit, load_average, peak_rss_mb, rate, timed_passes
from benchmarks.synthetic import text_documents
from han.config import PreprocessConfig
from han.preprocessing import encode_documents
from han.segment import build_pipeline, segment
from han.vocab import Vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    texts, words = text_documents(args.docs, seed=0)
    config = PreprocessConfig(max_sentences=1000, max_words=1000)  # no caps: every word is processed
    nlp = build_pipeline(config)
    documents = list(segment(nlp, texts, config))
    vocab = Vocab.build(Counter(w for d in documents for s in d for w in s), config.min_count, config.max_vocab)

    def run_pass() -> None:
        encode_documents(list(segment(nlp, texts, config)), vocab)

    seconds = timed_passes(run_pass, args.reps)
    words_rate = rate(words, seconds)
    emit(
        {
            "bench": "preprocess",
            "workers": 1,
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
