"""One reading of a document everywhere: predict, evaluate --data and report see the same text and give the
same probabilities, for a run whose config joins two text columns with its own separator and delimiter."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import han.serving.inference
from conftest import TINY_CONFIG, invoke, make_corpus
from han.data.records import iter_input_texts
from han.data.splits import load_labelled_file
from han.reports.documents import read_documents
from han.serving.trained import load_trained_run

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
    invoke("run", TINY_CONFIG, *overrides, "--run-dir", run_dir, check=True)
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
    labels = load_trained_run(run_dir).label_names

    predictions = tmp_path / "predictions.csv"
    invoke("predict", run_dir, documents, "-o", predictions, check=True)
    with open(predictions, encoding="utf-8") as handle:
        predicted = np.array([[float(row[f"p_{name}"]) for name in labels] for row in csv.DictReader(handle)])

    scored = []
    original = han.serving.inference.split_metrics

    def keep(labels_, probabilities, names, *more):
        scored.append(probabilities)
        return original(labels_, probabilities, names, *more)

    monkeypatch.setattr(han.serving.inference, "split_metrics", keep)
    invoke("evaluate", run_dir, "--data", documents, check=True)
    (evaluated,) = scored

    report = tmp_path / "report.jsonl"
    invoke("report", run_dir, documents, "-o", report, check=True)
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


def test_all_four_commands_give_the_same_probabilities_on_cleaned_cut_and_rtl_text(trained_run, tmp_path, monkeypatch):
    """predict, evaluate --data, report and corpus-report read one text the same way."""
    import han.reports.statistics

    texts = [
        "The chef baked bread.\u200b Zero\u2060width, soft\u00adhyphen and \x07control characters. The oven was hot.",
        "The team won the match. " * 5000,  # 120,000 characters: cut at preprocess.max_chars (100,000)
        "\u05d4\u05e7\u05d1\u05d5\u05e6\u05d4 \u05e0\u05d9\u05e6\u05d7\u05d4. The team scored a goal in the match.",
        "\u0627\u0644\u0641\u0631\u064a\u0642 \u0641\u0627\u0632. Software runs on the server and the network.",
    ]
    labels = ["food", "sport", "sport", "tech"]
    source = tmp_path / "docs.jsonl"
    source.write_text(
        "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels, strict=True)),
        encoding="utf-8",
    )
    names = load_trained_run(trained_run).label_names

    predictions = tmp_path / "p.jsonl"
    invoke("predict", trained_run, source, "-o", predictions, check=True)
    predicted = np.array([[json.loads(line)[f"p_{n}"] for n in names] for line in predictions.read_text().splitlines()])

    report = tmp_path / "r.jsonl"
    invoke("report", trained_run, source, "-o", report, check=True)
    records = sorted((json.loads(line) for line in report.read_text().splitlines()), key=lambda r: r["row"])
    reported = np.array([[r["probabilities"][n] for n in names] for r in records])

    captured: dict[str, np.ndarray] = {}
    metrics = han.serving.inference.split_metrics
    monkeypatch.setattr(
        han.serving.inference,
        "split_metrics",
        lambda y, p, n, *more: captured.setdefault("evaluate", p) is not None and metrics(y, p, n, *more),
    )
    invoke("evaluate", trained_run, "--data", source, check=True)
    scoring = han.reports.statistics.score_split

    def keep_scores(*args, **kwargs):
        scores = scoring(*args, **kwargs)
        captured.setdefault("corpus", scores.probabilities)
        return scores

    monkeypatch.setattr(han.reports.statistics, "score_split", keep_scores)
    corpus = tmp_path / "c.json"
    invoke("corpus-report", trained_run, source, "-o", corpus, check=True)

    assert predicted.shape == (4, len(names))
    for other in (reported, captured["evaluate"], captured["corpus"]):
        np.testing.assert_allclose(predicted, other, atol=1e-6, rtol=0)
    np.testing.assert_allclose(captured["evaluate"], captured["corpus"], atol=1e-7, rtol=0)
