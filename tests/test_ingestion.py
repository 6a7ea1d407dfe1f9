"""Source kinds, bad-row policies, label handling and the hub paths of ingestion (han.data.splits)."""

import glob
import json
import os
import shutil

import datasets
import pytest

from conftest import make_corpus, write_csv
from han.config import DataConfig
from han.data.splits import load_data
from han.errors import DataError


def rows_ab(n: int, **extra) -> list[dict]:
    return [{"text": f"Document number {i}. It is fine.", "label": "ab"[i % 2], **extra} for i in range(n)]


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- local formats ----------------------------------------------------------------------------------


def test_csv_with_other_delimiter_quoted_newlines_and_na_text(tmp_path):
    path = tmp_path / "semi.csv"
    lines = ["text;label"] + [f'"Line one {i}.\nLine two; still text.";{"ab"[i % 2]}' for i in range(10)]
    lines.append("NA;a")  # the text "NA" is text, not a missing value
    lines.append("N/A;b")
    path.write_text("\n".join(lines) + "\n")
    loaded = load_data(DataConfig(source=str(path), delimiter=";", test_fraction=0.2), seed=0)
    texts = [t for split in loaded.splits.values() for t in split.texts]
    assert len(texts) == 12
    assert any(t.startswith("Line one 3.\nLine two; still text.") for t in texts)
    assert "NA" in texts and "N/A" in texts


def test_integer_labels_keep_numeric_order(tmp_path):
    rows = [{"text": f"Doc {i}.", "label": [10, 2, 1][i % 3]} for i in range(30)]
    path = tmp_path / "ints.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_data(DataConfig(source=str(path)), seed=0)
    assert loaded.label_names == ["1", "2", "10"]


def test_glob_and_list_of_files_name_the_file_in_messages(tmp_path):
    for part in range(3):
        rows = rows_ab(10)
        if part == 2:
            rows[3]["text"] = "   "
        write_csv(tmp_path / f"part-{part}.csv", rows)
    with pytest.raises(DataError) as info:
        load_data(DataConfig(source=str(tmp_path / "part-*.csv")), seed=0)
    assert "part-2.csv row 4" in one_line(info)
    # a list of files, the bad one left out
    loaded = load_data(DataConfig(source=[str(tmp_path / "part-0.csv"), str(tmp_path / "part-1.csv")]), seed=0)
    assert sum(len(s) for s in loaded.splits.values()) == 20
    with pytest.raises(DataError, match="matches no file"):
        load_data(DataConfig(source=str(tmp_path / "nothing-*.csv")), seed=0)


def test_files_per_split_with_globs_and_lists(tmp_path):
    write_csv(tmp_path / "train-a.csv", rows_ab(20))
    write_csv(tmp_path / "train-b.csv", rows_ab(20))
    write_csv(tmp_path / "dev.csv", rows_ab(6))
    write_csv(tmp_path / "test1.csv", rows_ab(4))
    write_csv(tmp_path / "test2.csv", rows_ab(4))
    source = {
        "train": str(tmp_path / "train-*.csv"),
        "validation": str(tmp_path / "dev.csv"),
        "test": [str(tmp_path / "test1.csv"), str(tmp_path / "test2.csv")],
    }
    loaded = load_data(DataConfig(source=source), seed=0)
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 40, "validation": 6, "test": 8}
    assert loaded.carved == []


def test_mixed_file_types_in_one_split_are_refused(tmp_path):
    write_csv(tmp_path / "a.csv", rows_ab(4))
    (tmp_path / "b.jsonl").write_text(json.dumps(rows_ab(1)[0]) + "\n")
    with pytest.raises(DataError, match="mix types"):
        load_data(DataConfig(source=[str(tmp_path / "a.csv"), str(tmp_path / "b.jsonl")]), seed=0)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_invalid_utf8_in_a_table_file_is_replaced_and_counted(tmp_path, caplog, suffix):
    rows = [(f"fine text {i}.".encode(), "ab"[i % 2]) for i in range(10)]
    rows += [(b"caf\xe9 au lait.", "a"), (b"na\xefve.", "b")]
    if suffix == ".csv":
        body = b"text,label\n" + b"".join(text + f",{label}\n".encode() for text, label in rows)
    else:
        body = b"".join(b'{"text": "' + text + f'", "label": "{label}"}}\n'.encode() for text, label in rows)
    path = tmp_path / f"latin{suffix}"
    path.write_bytes(body)
    loaded = load_data(DataConfig(source=str(path)), seed=0)
    texts = [t for split in loaded.splits.values() for t in split.texts]
    assert len(texts) == 12 and sum("\ufffd" in t for t in texts) == 2
    assert "2 document(s) hold text that was not valid UTF-8" in caplog.text


def test_class_folder_rows_are_named_by_file(tmp_path):
    for label in ("pos", "neg"):
        (tmp_path / "train" / label).mkdir(parents=True)
        for i in range(4):
            (tmp_path / "train" / label / f"{i}.txt").write_text(f"A {label} text {i}.")
    (tmp_path / "train" / "neg" / "2.txt").write_text(" \n ")
    with pytest.raises(DataError) as info:
        load_data(DataConfig(source=str(tmp_path)), seed=0)
    assert "train/neg/2.txt" in one_line(info) and "empty text" in str(info.value)


def test_text_columns_joined_skip_empty_parts(tmp_path):
    rows = [{"title": "" if i % 2 else f"Title {i}", "body": f"Body {i}.", "label": "ab"[i % 2]} for i in range(20)]
    path = write_csv(tmp_path / "j.csv", rows)
    config = DataConfig(source=str(path), text_column=["title", "body"], text_separator=" || ", test_fraction=0.5)
    texts = [t for split in load_data(config, seed=0).splits.values() for t in split.texts]
    assert "Title 0 || Body 0." in texts and "Body 1." in texts


# --- labels -------------------------------------------------------------------------------------------


def unseen_file(tmp_path):
    rows = [
        *rows_ab(10, split="train"),
        {"text": "odd one.", "label": "zzz", "split": "test"},
        {"text": "fine.", "label": "a", "split": "test"},
        {"text": "fine.", "label": "b", "split": "validation"},
        {"text": "odd two.", "label": "zzz", "split": "validation"},
    ]
    return write_csv(tmp_path / "unseen.csv", rows)


def test_unseen_label_error_names_label_and_file_rows(tmp_path):
    with pytest.raises(DataError) as info:
        load_data(DataConfig(source=str(unseen_file(tmp_path)), split_column="split"), seed=0)
    message = one_line(info)
    assert (
        "[validation]: label(s) 'zzz' never seen in training, at row(s) 14;" in message
        and "data.unseen_labels=drop" in message
    )


def test_unseen_labels_dropped_and_counted(tmp_path):
    config = DataConfig(source=str(unseen_file(tmp_path)), split_column="split", unseen_labels="drop")
    loaded = load_data(config, seed=0)
    assert len(loaded.splits["test"]) == 1 and len(loaded.splits["validation"]) == 1
    counts = loaded.counts.as_dict()
    assert counts["rows_in"] == 14 and counts["rows_kept"] == 12
    assert counts["rows_dropped"]["unseen_label"] == 2
    assert counts["rows_dropped_by_split"] == {"test": {"unseen_label": 1}, "validation": {"unseen_label": 1}}


def test_fixed_label_order(tmp_path):
    path = write_csv(tmp_path / "c.csv", rows_ab(20))
    loaded = load_data(DataConfig(source=str(path), labels=["b", "a"]), seed=0)
    assert loaded.label_names == ["b", "a"]
    with pytest.raises(DataError, match=r"label\(s\) 'b' not in data.labels"):
        load_data(DataConfig(source=str(path), labels=["a", "c"]), seed=0)


# --- bad rows -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason", "message"),
    [
        ({"text": ""}, "empty_text", "1 document(s) with empty text in column(s) text at row(s) 5"),
        ({"text": " \t \n "}, "empty_text", "1 document(s) with empty text in column(s) text at row(s) 5"),
        ({"label": ""}, "missing_label", "1 document(s) without a label in column 'label' at row(s) 5"),
    ],
)
def test_bad_rows_error_or_drop(tmp_path, bad, reason, message):
    rows = rows_ab(20)
    rows[4].update(bad)
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as info:
        load_data(DataConfig(source=str(path)), seed=0)
    assert message in one_line(info) and "data.bad_rows=drop" in str(info.value)
    loaded = load_data(DataConfig(source=str(path), bad_rows="drop"), seed=0)
    assert sum(len(s) for s in loaded.splits.values()) == 19
    assert loaded.counts.as_dict()["rows_dropped"][reason] == 1
    assert 5 not in [r for s in loaded.splits.values() for r in s.rows]


def test_many_bad_rows_are_listed_briefly(tmp_path):
    rows = rows_ab(40)
    for i in range(0, 40, 3):
        rows[i]["text"] = ""
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as info:
        load_data(DataConfig(source=str(path)), seed=0)
    assert "14 document(s)" in one_line(info) and "row(s) 1, 4, 7, 10, 13, 16, 19, 22 and 6 more" in str(info.value)


def test_missing_label_in_a_parquet_split(tmp_path):
    rows = [{"text": f"Doc {i}.", "label": None if i == 7 else "ab"[i % 2]} for i in range(20)]
    path = tmp_path / "p.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    with pytest.raises(DataError, match=r"without a label in column 'label' at row\(s\) 8;"):
        load_data(DataConfig(source=str(path)), seed=0)


# --- the hub ------------------------------------------------------------------------------------------


def make_hub_repo(root, corpus_rows, names=("food", "sport", "tech")):
    (root / "data").mkdir(parents=True)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(names))})
    for split in ("train", "test"):
        rows = [
            {"text": r["text"], "label": names.index(r["label"])}
            for r in corpus_rows
            if r["split"] == split or (split == "train" and r["split"] == "validation")
        ]
        datasets.Dataset.from_list(rows, features=features).to_parquet(str(root / "data" / f"{split}-00000.parquet"))
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n"
        "  - split: train\n    path: data/train-*\n  - split: test\n    path: data/test-*\n---\n# topics\n"
    )
    return root


def test_hub_id_loads_offline_from_the_datasets_cache(tmp_path, monkeypatch):
    """A hub dataset cached by an earlier online load is read by its id with HF_DATASETS_OFFLINE=1."""
    from datasets.data_files import DataFilesDict
    from datasets.packaged_modules.parquet.parquet import Parquet

    corpus = make_corpus(120, seed=5)
    repo = make_hub_repo(tmp_path / "repo", corpus)
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    # what an online load_dataset("someone/topics") leaves behind: prepared Arrow under someone___topics/default/
    builder = Parquet(
        cache_dir=str(cache),
        dataset_name="topics",
        config_name="default",
        hash="0123456789abcdef",
        data_files=DataFilesDict.from_patterns(
            {"train": [str(repo / "data" / "train-*")], "test": [str(repo / "data" / "test-*")]}
        ),
    )
    builder.download_and_prepare()
    (config_dir,) = glob.glob(str(cache / "topics" / "default-*"))
    (cache / "someone___topics").mkdir()
    shutil.move(config_dir, cache / "someone___topics" / "default")
    loaded = load_data(DataConfig(source="someone/topics"), seed=0)
    assert loaded.label_names == ["food", "sport", "tech"]  # from the ClassLabel feature
    assert loaded.carved == ["validation"]
    assert len(loaded.splits["test"]) == sum(r["split"] == "test" for r in corpus)
    with pytest.raises(DataError) as info:
        load_data(DataConfig(source="someone/topics", name="other"), seed=0)
    assert "HF_DATASETS_OFFLINE=1" in one_line(info)


def test_uncached_hub_id_offline_names_the_setting(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as info:
        load_data(DataConfig(source="no-such-user/no-such-dataset"), seed=0)
    message = one_line(info)
    assert "no-such-user/no-such-dataset" in message and "not in the local datasets cache" in message
    assert "HF_DATASETS_OFFLINE" in message


def test_unreachable_hub_names_the_offline_setting(tmp_path):
    """Online mode with a hub that refuses connections: one line that names HF_DATASETS_OFFLINE."""
    import subprocess
    import sys

    env = {
        **os.environ,
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_ETAG_TIMEOUT": "2",
        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
    }
    code = (
        # huggingface_hub retries with back-off (about 23 s of sleeping); the subprocess skips the sleeps
        "import time\ntime.sleep = lambda seconds: None\n"
        "from han.config import DataConfig\nfrom han.data.splits import load_data\nfrom han.errors import DataError\n"
        "try:\n    load_data(DataConfig(source='someone/unreachable'), seed=0)\n"
        "except DataError as e:\n    print('DATAERROR', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stdout.splitlines() if line.startswith("DATAERROR")]
    assert len(lines) == 1, result.stdout + result.stderr
    assert "someone/unreachable" in lines[0] and "HF_DATASETS_OFFLINE=1" in lines[0]


def test_hub_layout_directory_with_class_label_and_named_splits(tmp_path, corpus_rows):
    repo = make_hub_repo(tmp_path / "repo", corpus_rows)
    loaded = load_data(DataConfig(source=str(repo), splits={"validation": None}), seed=0)
    assert loaded.label_names == ["food", "sport", "tech"] and loaded.carved == ["validation"]
    with pytest.raises(DataError, match="no training split 'training'"):
        load_data(DataConfig(source=str(repo), splits={"train": "training"}), seed=0)


def test_a_split_left_empty_is_an_error(tmp_path):
    rows = [*rows_ab(10, split="train"), {"text": "", "label": "a", "split": "test"}]
    path = write_csv(tmp_path / "c.csv", rows)
    with pytest.raises(DataError, match=r"the test split has no documents"):
        load_data(DataConfig(source=str(path), split_column="split", bad_rows="drop"), seed=0)
    write_csv(path, [{"text": " ", "label": "ab"[i % 2]} for i in range(10)])
    with pytest.raises(DataError, match=r"the train split has no documents"):
        load_data(DataConfig(source=str(path), bad_rows="drop"), seed=0)


def test_hub_layout_folders_of_the_same_name_read_their_own_content(tmp_path):
    """datasets keys a local folder's cache by its name and README: han keys it by content, so no stale copy."""
    corpora = [make_corpus(60, seed=1), make_corpus(90, seed=2), make_corpus(80, seed=3)]
    first = make_hub_repo(tmp_path / "one" / "repo", corpora[0])
    second = make_hub_repo(tmp_path / "two" / "repo", corpora[1])

    def texts(repo):
        loaded = load_data(DataConfig(source=str(repo), splits={"validation": None}), seed=0)
        return {text for split in loaded.splits.values() for text in split.texts}

    assert texts(first) == {r["text"] for r in corpora[0]}
    assert texts(second) == {r["text"] for r in corpora[1]}
    shutil.rmtree(first / "data")
    make_hub_repo(tmp_path / "again", corpora[2])
    shutil.move(str(tmp_path / "again" / "data"), str(first / "data"))  # the same folder, new files
    assert texts(first) == {r["text"] for r in corpora[2]}
