"""What the Python API (han/api.py) accepts as texts and what it refuses; `Predictions.to_frame`; `han.train`
on rows held in memory gives the run `han run` gives on the same rows in a file."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import TINY_CONFIG, invoke, make_corpus, write_csv
from han.errors import ConfigError, DataError, RunDirError

TEXTS = [
    "The team won the match. The coach said it was a new season.",
    "A new chip for the computer. The chef baked bread.",
    "",
    "<b>goal</b> & co — café, naïve",
    "Software and data; the server was down today.",
]


@pytest.fixture(scope="module")
def classifier(trained_run):
    import han

    return han.load(trained_run)


@pytest.fixture(scope="module")
def cli_csv(trained_run, tmp_path_factory) -> list[dict[str, str]]:
    """`han predict`'s CSV output on TEXTS, header included (as dicts in column order)."""
    folder = tmp_path_factory.mktemp("predict")
    source = write_csv(folder / "in.csv", [{"text": t} for t in TEXTS])
    out = folder / "out.csv"
    invoke("predict", trained_run, source, "-o", out, check=True)
    with open(out, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def cli_probabilities(rows: list[dict[str, str]], classes: list[str]) -> np.ndarray:
    return np.array([[float(row[f"p_{c}"]) for c in classes] for row in rows])


def _pandas_series(texts: list[str]) -> Any:
    import pandas as pd

    return pd.Series(texts, index=[10 * i + 3 for i in range(len(texts))])  # an index that is not 0..n-1


def _pyarrow_array(texts: list[str]) -> Any:
    import pyarrow as pa

    return pa.chunked_array([pa.array(texts[:2]), pa.array(texts[2:])])


ACCEPTED: dict[str, Callable[[list[str]], Any]] = {
    "list": list,
    "tuple": tuple,
    "pandas Series": _pandas_series,
    "numpy str array": lambda texts: np.array(texts),
    "numpy object array": lambda texts: np.array(texts, dtype=object),
    "generator": lambda texts: (t for t in texts),
    "iterator": iter,
    "pyarrow array": _pyarrow_array,
}


@pytest.mark.parametrize("kind", list(ACCEPTED))
def test_each_accepted_kind_predicts_what_han_predict_writes(classifier, cli_csv, kind):
    ours = classifier.predict(ACCEPTED[kind](TEXTS))
    assert ours.labels == [row["label"] for row in cli_csv]
    np.testing.assert_allclose(ours.probabilities, cli_probabilities(cli_csv, ours.classes), atol=1e-6)
    np.testing.assert_allclose(classifier.predict_proba(ACCEPTED[kind](TEXTS)), ours.probabilities, atol=0)


def test_one_str_is_one_text(classifier, cli_csv):
    ours = classifier.predict(TEXTS[1])
    assert len(ours) == 1 and ours.labels == [cli_csv[1]["label"]]
    np.testing.assert_allclose(ours.probabilities, cli_probabilities(cli_csv[1:2], ours.classes), atol=1e-6)
    np.testing.assert_allclose(classifier.predict(np.str_(TEXTS[1])).probabilities, ours.probabilities, atol=0)


def _data_frame() -> Any:
    import pandas as pd

    return pd.DataFrame({"text": TEXTS})


def _pyarrow_table() -> Any:
    import pyarrow as pa

    return pa.table({"text": TEXTS})


REFUSED: dict[str, tuple[Callable[[], Any], list[str]]] = {
    "DataFrame": (_data_frame, ["texts is a pandas DataFrame", "pass one column, e.g. df['text']"]),
    "pyarrow Table": (_pyarrow_table, ["texts is a pyarrow Table", "pass one column"]),
    "bytes": (lambda: TEXTS[0].encode(), ["texts is bytes, not str", "decode it first (text.decode('utf-8'))"]),
    "bytearray": (lambda: bytearray(b"goal"), ["texts is bytearray, not str", "decode it first"]),
    "None": (lambda: None, ["texts is None;", "pass a str"]),
    "int": (lambda: 3, ["texts is int;", "pass a str"]),
    "float": (lambda: 2.5, ["texts is float;"]),
    "dict": (lambda: {"a": TEXTS[0]}, ["texts is dict;"]),
    "set": (lambda: set(TEXTS), ["texts is set, which has no order"]),
    "2-D array": (lambda: np.array([TEXTS[:2], TEXTS[2:4]]), ["2-dimensional numpy array"]),
    "bytes item": (lambda: [*TEXTS[:3], b"goal"], ["texts[3] is bytes, not str", "decode it first"]),
    "None item": (lambda: [TEXTS[0], None], ["texts[1] is None, not str"]),
    "int item": (lambda: (t for t in [TEXTS[0], TEXTS[1], 7]), ["texts[2] is int, not str"]),
    "missing item": (lambda: _pandas_series([TEXTS[0], float("nan")]), ["texts[1] is float (a missing value)"]),
    "list item": (lambda: [[TEXTS[0]]], ["texts[0] is list, not str"]),
}


@pytest.mark.parametrize("kind", list(REFUSED))
def test_each_refused_kind_is_a_data_error_naming_position_and_type(classifier, kind):
    make, fragments = REFUSED[kind]
    for method in (classifier.predict, classifier.predict_proba, classifier.explain):
        with pytest.raises(DataError) as caught:
            method(make())
        message = str(caught.value)
        assert "\n" not in message
        for fragment in fragments:
            assert fragment in message, (fragment, message)


def test_explain_takes_one_text_or_many(classifier):
    from han.api import Explanation

    one = classifier.explain(TEXTS[1])
    many = classifier.explain(TEXTS)
    assert isinstance(one, Explanation)
    assert isinstance(many, list) and [e.text for e in many] == TEXTS
    assert many[1].probabilities == pytest.approx(one.probabilities, abs=1e-6)
    assert [s.text for s in many[1].sentences] == [s.text for s in one.sentences]
    assert [e.label for e in many] == classifier.predict(TEXTS).labels
    assert [e.text for e in classifier.explain(iter(TEXTS[:2]))] == TEXTS[:2]
    assert classifier.explain([]) == []


def test_to_frame_has_han_predicts_columns_and_values(classifier, cli_csv):
    predictions = classifier.predict(TEXTS)
    frame = predictions.to_frame()
    assert list(frame.columns) == list(cli_csv[0])[1:]  # han predict's header less "row" (the frame's index)
    assert list(frame.index) == list(range(len(TEXTS)))
    assert list(frame["label"]) == [row["label"] for row in cli_csv]
    columns = [f"p_{c}" for c in predictions.classes]
    np.testing.assert_allclose(frame[columns].to_numpy(), cli_probabilities(cli_csv, predictions.classes), atol=1e-6)
    empty = classifier.predict([]).to_frame()
    assert list(empty.columns) == list(frame.columns) and len(empty) == 0


def test_to_frame_of_a_multilabel_prediction_holds_label_sets():
    from han.api import Predictions

    probabilities = np.array([[0.9, 0.2, 0.7], [0.1, 0.2, 0.3]], dtype=np.float32)
    frame = Predictions([["a", "c"], []], probabilities, ["a", "b", "c"], multilabel=True).to_frame()
    assert list(frame.columns) == ["labels", "p_a", "p_b", "p_c"]
    assert frame["labels"].tolist() == [["a", "c"], []]
    np.testing.assert_array_equal(frame[["p_a", "p_b", "p_c"]].to_numpy(), probabilities)


# --- han.train ----------------------------------------------------------------------------------------------

TINY = ["data.split_column=split", "train.max_epochs=2", "train.threads=1", "embeddings.workers=1"]


@pytest.mark.slow
def test_train_on_a_dataframe_gives_the_run_han_run_gives_on_a_csv(tmp_path):
    import pandas as pd

    import han

    rows = make_corpus(90, seed=3)
    source = write_csv(tmp_path / "rows.csv", rows)
    invoke("run", TINY_CONFIG, f"data.source={source}", *TINY, "--run-dir", tmp_path / "cli", check=True)
    result = han.train(pd.DataFrame(rows), run_dir=tmp_path / "api", config=TINY_CONFIG, overrides=TINY)

    ours = json.loads((tmp_path / "api" / "metrics.json").read_text())
    assert ours == json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert result.metrics["test"] == ours["test"]
    config = json.loads((tmp_path / "api" / "config.json").read_text())
    written = tmp_path / "api" / "input" / "data.parquet"
    assert Path(config["data"]["source"]) == written.absolute()
    manifest = json.loads((tmp_path / "api" / "manifest.json").read_text())
    assert "input/data.parquet" in manifest["artifacts"]
    assert pd.read_parquet(written).equals(pd.DataFrame(rows))  # the rows as given: what the fingerprint covers

    # config.json repeats the run, in place (the input is kept) and elsewhere.
    invoke("run", tmp_path / "api" / "config.json", "--run-dir", tmp_path / "api", "--overwrite", check=True)
    invoke("run", tmp_path / "api" / "config.json", "--run-dir", tmp_path / "again", check=True)
    for folder in ("api", "again"):
        assert json.loads((tmp_path / folder / "metrics.json").read_text()) == ours
    assert written.is_file()


@pytest.mark.slow
def test_train_on_a_datasetdict_writes_one_file_per_split_and_keeps_class_names(tmp_path):
    import datasets

    import han

    rows = make_corpus(90, seed=4)
    names = ["tech", "sport", "food"]  # not sorted: the ClassLabel order is the class order
    features = datasets.Features({"body": datasets.Value("string"), "topic": datasets.ClassLabel(names=names)})
    splits = {
        split: datasets.Dataset.from_dict(
            {
                "body": [r["text"] for r in rows if r["split"] == split],
                "topic": [r["label"] for r in rows if r["split"] == split],
            },
            features=features,
        )
        for split in ("train", "validation", "test")
    }
    overrides = ["train.max_epochs=1", "train.threads=1", "embeddings.workers=1"]
    han.train(
        datasets.DatasetDict(splits),
        text="body",
        label="topic",
        run_dir=tmp_path / "run",
        config=TINY_CONFIG,
        overrides=overrides,
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["source"] == {
        s: str((tmp_path / "run" / "input" / f"{s}.parquet").absolute()) for s in splits
    }
    assert (config["data"]["text_column"], config["data"]["label_column"]) == ("body", "topic")
    assert han.load(tmp_path / "run").predict(["The team won the match."]).classes == names  # the ClassLabel's names


def test_train_refuses_bad_data_before_writing_anything(tmp_path):
    import pandas as pd

    import han

    frame = pd.DataFrame(make_corpus(12))
    with pytest.raises(
        DataError, match=r"data has no column 'body' \(its columns: 'text', 'label', 'split'\); .*text="
    ):
        han.train(frame, text="body", run_dir=tmp_path / "a", config=TINY_CONFIG)
    with pytest.raises(DataError, match=r"data\['test'\] has no column 'label'"):
        han.train({"train": frame, "test": frame.drop(columns="label")}, run_dir=tmp_path / "a", config=TINY_CONFIG)
    with pytest.raises(DataError, match=r"data is list; pass a pandas DataFrame"):
        han.train(make_corpus(12), run_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match=r"drop data\.source"):
        han.train(frame, run_dir=tmp_path / "a", overrides=["data.source=rows.csv"])
    assert not (tmp_path / "a").exists()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a han run directory"):
        han.train(frame, run_dir=foreign, config=TINY_CONFIG, overrides=["data.split_column=split"])
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
