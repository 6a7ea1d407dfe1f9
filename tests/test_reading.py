"""One reading of a document everywhere: predict, evaluate --data and report see the same text and give the
same probabilities, for a run whose config joins two text columns with its own separator and delimiter."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import han.inference
from conftest import TINY_CONFIG, make_corpus
from han.data import load_labelled_file
from han.records import iter_input_texts
from han.reports.documents import read_documents
from han.trained import load_trained_run
from pipelines.cli import app

SEPARATOR = " ~ "


def write_two_column_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """title;body;label[;split] with ';' as delimiter; every fifth title empty, every seventh body empty."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        fields = ["title", "body", "label"] + (["split"] if "split" in rows[0] else [])
        writer = csv.DictWriter(handle, fieldnames=fields, delimiter=";")
        writer.writeheader()
        for i, row in enumerate(rows):
            first, _, rest = row["text"].partition(". ")
            title, body = first + ".", rest or "Nothing more; really."
            if i % 5 == 0:
                title = ""
            elif i % 7 == 0:
                body = "   "
            writer.writerow({"title": title, "body": body, **{k: row[k] for k in fields[2:]}})
    return path


@pytest.fixture(scope="module")
def two_column_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two_columns")
    source = write_two_column_csv(folder / "train.csv", make_corpus(150, seed=11))
    overrides = [
        f"data.source={source}",
        "data.split_column=split",
        "data.text_column=[title, body]",
        f"data.text_separator='{SEPARATOR}'",
        "data.delimiter=;",
        "train.max_epochs=2",
        "train.threads=1",
    ]
    run_dir = folder / "run"
    result = CliRunner().invoke(app, ["run", str(TINY_CONFIG), *overrides, "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    documents = write_two_column_csv(folder / "input.csv", [{**r, "split": ""} for r in make_corpus(30, seed=12)])
    return run_dir, documents


def test_every_reader_joins_the_columns_the_same_way(two_column_run):
    run_dir, documents = two_column_run
    trained = load_trained_run(run_dir)
    assert trained.config.data.text_separator == SEPARATOR and trained.config.data.delimiter == ";"
    predicted = list(iter_input_texts(documents, trained.config.data))
    evaluated = list(load_labelled_file(documents, trained.config.data).texts)
    reported = read_documents(trained, documents).texts
    assert predicted == evaluated == reported
    assert all(SEPARATOR not in t for t in predicted[::5])  # empty title: no separator, no leading space
    assert all(not t.endswith(SEPARATOR.rstrip()) for t in predicted)  # blank body skipped
    assert sum(SEPARATOR in t for t in predicted) >= 20


def test_predict_evaluate_and_report_give_the_same_probabilities(two_column_run, tmp_path, monkeypatch):
    run_dir, documents = two_column_run
    runner = CliRunner()
    labels = load_trained_run(run_dir).label_names

    predictions = tmp_path / "predictions.csv"
    result = runner.invoke(app, ["predict", str(run_dir), str(documents), "-o", str(predictions)])
    assert result.exit_code == 0, result.output
    with open(predictions, encoding="utf-8") as handle:
        predicted = np.array([[float(row[f"p_{name}"]) for name in labels] for row in csv.DictReader(handle)])

    scored = []
    original = han.inference.classification_metrics

    def keep(labels_, probabilities, names):
        scored.append(probabilities)
        return original(labels_, probabilities, names)

    monkeypatch.setattr(han.inference, "classification_metrics", keep)
    result = runner.invoke(app, ["evaluate", str(run_dir), "--data", str(documents)])
    assert result.exit_code == 0, result.output
    (evaluated,) = scored

    report = tmp_path / "report.jsonl"
    result = runner.invoke(app, ["report", str(run_dir), str(documents), "-o", str(report)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    reported = np.array(
        [[r["probabilities"][name] for name in labels] for r in sorted(records, key=lambda r: r["row"])]
    )

    assert predicted.shape == evaluated.shape == reported.shape == (30, len(labels))
    # predict and the report write 6 decimals: agreement to rounding (5e-7) plus float32 noise
    np.testing.assert_allclose(predicted, evaluated, atol=1e-6, rtol=0)
    np.testing.assert_allclose(reported, evaluated, atol=1e-6, rtol=0)
    metrics = json.loads((run_dir / "metrics.json").read_text())[str(documents)]
    assert metrics["documents"] == 30
