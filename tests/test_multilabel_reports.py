"""Attention reports of a multi-label run (task: multilabel): label sets on the cards, per-label corpus
statistics (a document counts in every label it has), and the faithfulness check on predicted label sets."""

from __future__ import annotations

import json
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIG, TOPICS, invoke, make_multilabel_corpus, write_csv
from han.config import CorpusReportConfig, DocumentReportConfig
from han.errors import ConfigError
from han.evaluation.scoring import predict_probabilities, score_split
from han.reports.documents import (
    DocumentView,
    SentenceView,
    document_record,
    document_report,
    document_views,
    read_documents,
    select_documents,
)
from han.reports.pages import render_corpus_report, render_document_report
from han.reports.statistics import corpus_statistics, load_split_for_corpus
from han.serving.trained import TrainedRun, load_trained_run
from han.store.encoded import EncodedSplit

LABELS = sorted(TOPICS)  # food, sport, tech
HOSTILE = "Nice <script>alert('x')</script> goal & <img src=x onerror=alert(1)> chef."


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[dict[str, str]]]:
    rows = make_multilabel_corpus(240)
    return write_csv(tmp_path_factory.mktemp("multilabel") / "topics.csv", rows), rows


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus) -> Path:
    from han.config import load_config
    from han.workflows.run import run_all

    source, _ = corpus
    overrides = [
        f"data.source={source}",
        "data.split_column=split",
        "task=multilabel",
        "data.label_column=topics",
        "data.label_separator=;",
        "train.max_epochs=4",
        "train.threads=1",
    ]
    path = tmp_path_factory.mktemp("multilabel_run") / "run"
    run_all(load_config(TINY_CONFIG, overrides), path)
    return path


@pytest.fixture(scope="module")
def trained(run_dir) -> TrainedRun:
    trained = load_trained_run(run_dir)
    assert trained.multilabel and trained.label_names == LABELS and trained.thresholds is not None
    return trained


class _Cards(HTMLParser):
    """The report's document cards: attributes, label names shown, marked probability bars; and every tag."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.cards: list[dict] = []
        self._bold: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)
        values = dict(attrs)
        classes = set((values.get("class") or "").split())
        if tag == "article":
            self.cards.append({**values, "pred-label": [], "true-label": [], "marked": [], "true-bars": []})
        elif self.cards and tag == "b" and classes & {"pred-label", "true-label"}:
            self._bold = next(iter(classes & {"pred-label", "true-label"}))
            self.cards[-1][self._bold].append("")
        elif self.cards and tag == "span" and "prob" in classes:
            if "pred" in classes:
                self.cards[-1]["marked"].append(values["data-label"])
            if "true" in classes:
                self.cards[-1]["true-bars"].append(values["data-label"])

    def handle_endtag(self, tag):
        if tag == "b":
            self._bold = None

    def handle_data(self, data):
        if self._bold is not None:
            self.cards[-1][self._bold][-1] += data


def parse_cards(page: str) -> _Cards:
    parser = _Cards()
    parser.feed(page)
    return parser


def test_report_of_a_labelled_file_shows_true_and_predicted_label_sets(run_dir, tmp_path):
    rows = [{"text": r["text"], "topics": r["topics"]} for r in make_multilabel_corpus(24, seed=7)]
    rows.append({"text": HOSTILE, "topics": "food;sport"})
    source = write_csv(tmp_path / "labelled.csv", rows)
    page = tmp_path / "report.html"
    invoke("report", run_dir, source, "-o", page, check=True)
    predictions = tmp_path / "predictions.jsonl"
    invoke("predict", run_dir, source, "-o", predictions, check=True)
    predicted = [json.loads(line)["labels"] for line in predictions.read_text().splitlines()]

    text = page.read_text(encoding="utf-8")
    parsed = parse_cards(text)
    assert [int(card["data-row"]) for card in parsed.cards] == list(range(1, len(rows) + 1))
    for card, row, labels in zip(parsed.cards, rows, predicted, strict=True):
        true = row["topics"].split(";")
        assert json.loads(card["data-predicted"]) == labels  # what `han predict` writes for the row
        assert card["pred-label"] == labels and card["marked"] == labels  # every predicted label's bar marked
        assert json.loads(card["data-true"]) == true and card["true-label"] == true and card["true-bars"] == true
        assert card["data-correct"] == str(labels == true).lower()
    # The note that the attention is shared by every label appears once.
    assert text.count('id="shared-attention"') == 1 and "shared across labels" in text
    # Document text stays text.
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert not {"onerror", "src"} & parsed.attributes
    assert ">&lt;</span>" in text and "alert(&#x27;x&#x27;)&lt;/script</span>" in text and ">&amp;</span>" in text
    assert "<script" not in text and "<img" not in text


def test_report_escapes_label_names_and_shows_sets_without_labels(trained, tmp_path):
    hostile = ['<b onmouseover="x">food</b>', "sport & co", "tech's"]
    report = document_report(trained, None, "test", DocumentReportConfig(limit=5))
    report = replace(report, label_names=hostile)
    text = render_document_report(report)
    parsed = parse_cards(text)
    assert "onmouseover" not in parsed.attributes and parsed.tags.count("article") == 5
    assert "&lt;b onmouseover=&quot;x&quot;&gt;food&lt;/b&gt;" in text and "sport &amp; co" in text
    # A document with an empty true set, and one predicted with no label (thresholds above every probability).
    (empty,) = document_views(trained, ["The chef made bread."], [[]])
    assert empty.true_set == [] and empty.labelled and empty.correct == (empty.predicted_labels == [])
    never = replace(trained, thresholds=np.ones(len(LABELS)))
    (none,) = document_views(never, ["The chef made bread."], [[0]])
    assert none.predicted_labels == [] and none.correct is False and none.missed == [0]
    page = render_document_report(replace(report, label_names=LABELS, documents=[empty, none]))
    assert page.count('<span class="none">no label</span>') >= 2
    record = document_record(none, LABELS)
    assert record["predicted"] == [] and record["true"] == ["food"] and record["correct"] is False


def test_only_misclassified_keeps_exactly_the_documents_whose_sets_differ(trained, run_dir, corpus, tmp_path):
    _, rows = corpus
    test_rows = [r for r in rows if r["split"] == "test"]
    documents = read_documents(trained, None, "test")
    assert documents.texts == [r["text"] for r in test_rows]
    true = [r["topics"].split(";") for r in test_rows]
    assert isinstance(documents.labels, np.ndarray)
    assert [[LABELS[c] for c in np.flatnonzero(row)] for row in documents.labels] == true
    probabilities = predict_probabilities(trained.model, trained.encode(documents.texts), 16)
    predicted = [[LABELS[c] for c in np.flatnonzero(row)] for row in trained.predicted_sets(probabilities)]
    differ = [i + 1 for i in range(len(true)) if predicted[i] != true[i]]
    assert 0 < len(differ) < len(true), "the tiny run should get some documents right and some wrong"

    def rows_of(*options: str) -> list[dict]:
        output = tmp_path / "r.jsonl"
        invoke("report", run_dir, "--split", "test", "-o", output, *options, check=True)
        return [json.loads(line) for line in output.read_text().splitlines()]

    misclassified = rows_of("--only", "misclassified")
    assert [r["row"] for r in misclassified] == differ
    assert all(r["predicted"] != r["true"] and r["correct"] is False for r in misclassified)
    correct = rows_of("--only", "correct")
    assert sorted(r["row"] for r in correct + misclassified) == list(range(1, len(true) + 1))
    by_margin = rows_of("--sort", "confidence")
    margins = [r["margin"] for r in by_margin]
    assert margins == sorted(margins)
    for record in by_margin:
        expected = min(abs(record["probabilities"][n] - record["thresholds"][n]) for n in LABELS)
        assert record["margin"] == pytest.approx(expected, abs=2e-6)
        assert record["predicted"] == predicted[record["row"] - 1] and record["true"] == true[record["row"] - 1]
    assert [r["row"] for r in rows_of("--true-label", "sport")] == [i + 1 for i, t in enumerate(true) if "sport" in t]
    assert [r["row"] for r in rows_of("--predicted-label", "tech")] == [
        i + 1 for i, p in enumerate(predicted) if "tech" in p
    ]
    first = rows_of("--sort", "misclassified")
    assert [r["correct"] for r in first] == sorted(r["correct"] for r in first)


def _view(row: int, probabilities: list[float], predicted: list[int], true: list[int] | None) -> DocumentView:
    sentence = SentenceView(["x"], [False], [1.0], [False], 1.0)
    return DocumentView(row, [sentence], probabilities, None, predicted, true, [0.5, 0.4, 0.3])


def test_select_documents_compares_label_sets():
    views = [
        _view(1, [0.9, 0.1, 0.8], [0, 2], [0, 2]),  # right, margin 0.3
        _view(2, [0.55, 0.2, 0.1], [0], [0, 1]),  # misses sport, margin 0.05
        _view(3, [0.2, 0.9, 0.31], [1, 2], [1]),  # extra tech, margin 0.01
        _view(4, [0.1, 0.1, 0.1], [], []),  # no label, right, margin 0.2
    ]
    rows = lambda **kw: [v.row for v in select_documents(views, DocumentReportConfig(**kw), LABELS)]  # noqa: E731
    assert rows() == [1, 2, 3, 4]
    assert rows(only="misclassified") == [2, 3] and rows(only="correct") == [1, 4]
    assert rows(sort="confidence") == [3, 2, 4, 1]
    assert rows(sort="misclassified") == [3, 2, 4, 1]
    assert rows(true_label="sport") == [2, 3] and rows(predicted_label="tech") == [1, 3]
    assert rows(true_label="food", only="misclassified") == [2]
    assert (views[1].missed, views[1].extra, views[2].missed, views[2].extra) == ([1], [], [], [2])
    unlabelled = [replace(v, true_set=None) for v in views]
    assert [v.row for v in select_documents(unlabelled, DocumentReportConfig(sort="confidence"), LABELS)] == [
        3,
        2,
        4,
        1,
    ]
    with pytest.raises(ConfigError, match="no true labels"):
        select_documents(unlabelled, DocumentReportConfig(true_label="food"), LABELS)


def test_corpus_report_groups_by_each_label(trained, run_dir, tmp_path):
    split, _ = load_split_for_corpus(trained, None, "test")
    assert split.multilabel
    truth = split.labels.astype(bool)
    options = CorpusReportConfig(min_word_count=2, top_words=5, words=["goal", "chef"], faithfulness_documents=0)
    stats = corpus_statistics(trained, split, options)
    assert stats.label_names == LABELS and stats.group_by == "true" and stats.multilabel
    assert stats.class_documents == truth.sum(axis=0).tolist()
    assert sum(stats.class_documents) > len(split)  # documents with two labels count in both groups
    assert all(stats.top_words[c] for c in range(len(LABELS)))
    # A word's count in a label's group: its occurrences in the documents that have the label.
    token_document = np.repeat(np.repeat(np.arange(len(split)), split.sentence_counts), np.diff(split.sentence_offsets))
    goal = split.tokens == trained.vocab.index["goal"]
    for c in range(len(LABELS)):
        assert stats.chosen_words["goal"][c].count == int((goal & truth[token_document, c]).sum())
    predicted = corpus_statistics(trained, split, options.model_copy(update={"group_by": "predicted"}))
    probabilities = score_split(trained.model, split, 16).probabilities
    assert predicted.class_documents == trained.predicted_sets(probabilities).sum(axis=0).tolist()

    # One document with two labels: it is the whole of both groups, with the same words and counts.
    two = next(i for i in range(len(split)) if truth[i].sum() == 2)
    first, last = split.document_offsets[two], split.document_offsets[two + 1]
    sentences = [split.tokens[split.sentence_offsets[s] : split.sentence_offsets[s + 1]] for s in range(first, last)]
    alone = EncodedSplit.from_documents([sentences], split.labels[[two]])
    single = corpus_statistics(trained, alone, CorpusReportConfig(min_word_count=1, faithfulness_documents=0))
    a, b = np.flatnonzero(truth[two])
    assert single.class_documents == truth[two].astype(int).tolist()
    assert [(w.word, w.count) for w in single.top_words[a]] == [(w.word, w.count) for w in single.top_words[b]]
    assert single.top_words[a] and not any(single.top_words[c] for c in set(range(len(LABELS))) - {a, b})

    output = tmp_path / "corpus.json"
    invoke("corpus-report", run_dir, "-o", output, "--min-count", "2", check=True)
    data = json.loads(output.read_text())
    assert list(data["classes"]) == LABELS and data["task"] == "multilabel"
    assert [data["classes"][n]["documents"] for n in LABELS] == truth.sum(axis=0).tolist()
    assert all(data["classes"][n]["top_words"] for n in LABELS)
    page = tmp_path / "corpus.html"
    invoke("corpus-report", run_dir, "-o", page, "--faithfulness-docs", "10", check=True)
    text = page.read_text()
    assert "Most attended words per label" in text and text.count('class="class-words"') == len(LABELS)


def test_documents_without_labels_crash_nothing(trained, tmp_path):
    texts = ["The chef made bread. The team scored a goal.", "A chip. A server.", "Nothing here at all."]
    labels = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.int8)
    split = trained.encode(texts, labels)
    options = CorpusReportConfig(min_word_count=1, faithfulness_documents=10)
    stats = corpus_statistics(trained, split, options)
    assert stats.class_documents == [1, 1, 1] and stats.unlabelled_documents == 1
    assert "documents_without_label" in json.dumps(stats.as_dict()) and render_corpus_report(stats)
    # Predicted with no label at all: empty groups, nothing eligible for the faithfulness check.
    never = replace(trained, thresholds=np.ones(len(LABELS)))
    stats = corpus_statistics(never, split, options.model_copy(update={"group_by": "predicted"}))
    assert stats.class_documents == [0, 0, 0] and stats.faithfulness is None
    assert stats.top_words == [[], [], []] and render_corpus_report(stats)
    # A file without labels: grouped by the predicted sets.
    unlabelled = write_csv(tmp_path / "u.csv", [{"text": t} for t in texts])
    split, _ = load_split_for_corpus(trained, unlabelled, "test")
    stats = corpus_statistics(trained, split, options)
    assert stats.group_by == "predicted" and stats.accuracy is None
    json.dumps(stats.as_dict())
    lines = tmp_path / "docs.txt"
    lines.write_text("\n".join(texts) + "\n")
    report = document_report(trained, lines, None, DocumentReportConfig(sort="confidence"))
    assert all(v.true_set is None and v.predicted_set is not None for v in report.documents)
    assert 'data-true="' not in render_document_report(report)


def test_faithfulness_measures_the_predicted_labels(trained):
    split, _ = load_split_for_corpus(trained, None, "test")
    stats = corpus_statistics(trained, split, CorpusReportConfig(faithfulness_documents=1000, seed=3))
    check = stats.faithfulness
    assert check is not None and check.multilabel
    summary = check.summary()
    numbers = [v for key in ("top_sentence_removed", "random_sentence_removed") for v in summary[key].values()]
    assert all(np.isfinite(numbers)) and np.isfinite(summary["top_drop_larger_share"])
    weights = score_split(trained.model, split, 16, attention=True)
    sets = trained.predicted_sets(weights.probabilities)
    eligible = np.flatnonzero((split.sentence_counts >= 2) & sets.any(axis=1))
    assert check.documents == check.eligible == len(eligible)  # fewer than asked: all, in split order
    # The drop of one document: the mean fall of its predicted labels' probabilities without its top sentence.
    d = int(eligible[2])
    first, last = split.document_offsets[d], split.document_offsets[d + 1]
    top = first + int(np.argmax(weights.sentence_weights[first:last]))
    kept = [
        split.tokens[split.sentence_offsets[s] : split.sentence_offsets[s + 1]] for s in range(first, last) if s != top
    ]
    with torch.no_grad():
        after = predict_probabilities(trained.model, EncodedSplit.from_documents([kept], split.labels[[d]]), 1)[0]
    chosen = sets[d]
    expected = float((weights.probabilities[d][chosen] - after[chosen]).mean())
    assert check.top_drop[2] == pytest.approx(expected, abs=1e-5)
    # A flip is a change of the predicted set.
    assert 0 <= check.top_flips <= check.documents and 0 <= check.random_flips <= check.documents
