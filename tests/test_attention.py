import itertools
import json
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from conftest import TOPICS, invoke, make_corpus, one_line_error, write_csv
from han.config import CorpusReportConfig, DocumentReportConfig, PreprocessConfig
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
from han.reports.pages import render_document_report
from han.reports.statistics import corpus_statistics, load_split_for_corpus
from han.serving.trained import load_trained_run
from han.store.encoded import EncodedSplit
from han.text.batching import collate
from han.text.corpus import SegmentedSplit
from han.text.segment import build_pipeline, segment, segment_chunk

LABELS = ["food", "sport", "tech"]


@pytest.fixture(scope="module")
def trained(trained_run):
    return load_trained_run(trained_run)


@pytest.fixture(scope="module")
def attentive(tmp_path_factory, tiny_overrides):
    """A tiny run trained with dense Adam: on 168 training documents and 4 epochs, lazy (row-sparse)
    embedding updates leave one class's attention on filler words, and the statistics test needs a
    model whose word attention has settled on the topic words."""
    from conftest import TINY_CONFIG
    from han.config import load_config
    from han.workflows.run import run_all

    run_dir = tmp_path_factory.mktemp("attentive") / "run"
    run_all(load_config(TINY_CONFIG, [*tiny_overrides, "train.lazy_embedding_updates=false"]), run_dir)
    return load_trained_run(run_dir)


def test_attend_keeps_every_weight_in_split_order(trained, trained_run):
    split = EncodedSplit.load(trained_run / "data" / "test")
    weights = score_split(trained.model, split, batch_size=5, attention=True)
    np.testing.assert_allclose(weights.probabilities, predict_probabilities(trained.model, split, 7), atol=1e-5)
    per_document = np.add.reduceat(weights.sentence_weights, split.document_offsets[:-1])
    np.testing.assert_allclose(per_document, 1.0, atol=1e-5)
    per_sentence = np.add.reduceat(weights.word_weights, split.sentence_offsets[:-1])
    np.testing.assert_allclose(per_sentence, 1.0, atol=1e-5)
    # Each document alone gives the same weights as in its bucketed batch.
    for d in (0, 7, len(split) - 1):
        batch = collate(split, np.array([d]))
        with torch.no_grad():
            output = trained.model(batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
        first, last = split.document_offsets[d], split.document_offsets[d + 1]
        np.testing.assert_allclose(
            output.sentence_attention[0, : last - first].numpy(), weights.sentence_weights[first:last], atol=1e-5
        )
        for k, s in enumerate(range(first, last)):
            a, b = split.sentence_offsets[s], split.sentence_offsets[s + 1]
            np.testing.assert_allclose(
                output.word_attention[0, k, : b - a].numpy(), weights.word_weights[a:b], atol=1e-5
            )


@pytest.mark.parametrize(("max_sentences", "max_words"), [(40, 50), (2, 3), (1, 1)])
def test_uncapped_segmentation_caps_to_what_the_model_reads(max_sentences, max_words):
    config = PreprocessConfig(max_sentences=max_sentences, max_words=max_words)
    nlp = build_pipeline(config)
    texts = [
        "Great Dress!\n\nIt fits well. The colour   is lovely.\nWould buy again.",
        "   \n ",
        "One two three four five. Six seven. Eight nine. Ten.",
        "Ünïcödé 東京 test — «quotes» & <b>tags</b>. Second sentence here.",
    ]
    chunk = segment_chunk(nlp, texts, config.lowercase, config.pipe_batch_size, surface=True)
    uncapped = SegmentedSplit(chunk.local_ids, chunk.sentence_lengths, chunk.sentence_counts)
    capped = uncapped.capped(max_sentences, max_words)
    assert capped.documents(chunk.words) == list(segment(nlp, texts, config))
    # Tokens keep their text as written and where whitespace (including line breaks) followed them.
    surface = np.asarray(chunk.surface_words, dtype=object)[chunk.surface_ids]
    offsets = uncapped.sentence_offsets
    first = [
        "".join(
            t + (" " if space else "") for t, space in zip(surface[a:b], chunk.space_after[a:b], strict=True)
        ).strip()
        for a, b in itertools.pairwise(offsets[:5])
    ]
    assert " | ".join(first) == "Great Dress! | It fits well. | The colour is lovely. | Would buy again."
    assert (surface[0], chunk.words[chunk.local_ids[0]], bool(chunk.space_after[0])) == ("Great", "great", True)
    assert chunk.sentence_counts.tolist() == [4, 0, 4, 2]


def test_document_views_mark_what_the_caps_cut(trained):
    long_sentence = " ".join(["goal"] * 25) + "."
    many = " ".join(f"The team won match {i}." for i in range(10))
    views = document_views(trained, [long_sentence, many, "   "], [1, 1, 1])
    caps = trained.config.preprocess  # tiny: 8 sentences, 20 words
    first, second, empty = views
    (sentence,) = first.sentences
    assert len(sentence.tokens) == 26 and len(sentence.word_weights) == caps.max_words
    assert sentence.words_cut == 26 - caps.max_words and not sentence.cut
    assert sentence.weight == pytest.approx(1.0, abs=1e-5)
    assert sum(sentence.word_weights) == pytest.approx(1.0, abs=1e-5)
    assert len(second.sentences) == 10 and second.sentences_cut == 10 - caps.max_sentences
    assert [s.cut for s in second.sentences] == [False] * caps.max_sentences + [True] * 2
    assert sum(s.weight for s in second.sentences if s.weight is not None) == pytest.approx(1.0, abs=1e-5)
    assert empty.sentences == [] and sum(empty.probabilities) == pytest.approx(1.0, abs=1e-5)
    record = document_record(first, trained.label_names)
    words = record["sentences"][0]
    assert words["word_weights"][caps.max_words :] == [None] * 6 and words["tokens"][-1] == "."
    assert record["true"] == "sport" and record["predicted"] == "sport" and record["correct"] is True
    cut = document_record(second, trained.label_names)["sentences"][-1]
    assert cut["cut"] and cut["weight"] is None and set(cut["word_weights"]) == {None}
    # The views' probabilities are the ones `han predict` gives for the same texts.
    expected = predict_probabilities(trained.model, trained.encode([long_sentence, many, "   "]), 4)
    np.testing.assert_allclose([v.probabilities for v in views], expected, atol=1e-5)


def _view(row, probabilities, true_label):
    sentence = SentenceView(["x"], [False], [1.0], [False], 1.0)
    return DocumentView(row, [sentence], probabilities, true_label)


def test_select_documents_filters_sorts_and_limits():
    views = [
        _view(1, [0.9, 0.05, 0.05], 0),  # correct, confident
        _view(2, [0.4, 0.35, 0.25], 1),  # wrong, unsure
        _view(3, [0.2, 0.7, 0.1], 1),  # correct
        _view(4, [0.1, 0.1, 0.8], 0),  # wrong, confident
    ]
    rows = lambda **kw: [v.row for v in select_documents(views, DocumentReportConfig(**kw), LABELS)]  # noqa: E731
    assert rows() == [1, 2, 3, 4]
    assert rows(sort="confidence") == [2, 3, 4, 1]
    assert rows(sort="misclassified") == [2, 4, 3, 1]
    assert rows(only="misclassified") == [2, 4]
    assert rows(only="correct", sort="confidence") == [3, 1]
    assert rows(true_label="food") == [1, 4]
    assert rows(predicted_label="tech", only="misclassified") == [4]
    assert rows(sort="confidence", limit=2) == [2, 3]
    unlabelled = [replace(v, true_label=None) for v in views]
    assert [v.row for v in select_documents(unlabelled, DocumentReportConfig(sort="confidence"), LABELS)] == [
        2,
        3,
        4,
        1,
    ]
    with pytest.raises(ConfigError, match="no true labels"):
        select_documents(unlabelled, DocumentReportConfig(only="misclassified"), LABELS)
    with pytest.raises(ConfigError, match="'music' is not a label"):
        select_documents(views, DocumentReportConfig(predicted_label="music"), LABELS)


def test_read_documents_from_files_and_splits(trained, tmp_path, corpus_rows):
    rows = make_corpus(9, seed=3)
    labelled = read_documents(trained, write_csv(tmp_path / "l.csv", rows))
    assert labelled.texts == [r["text"] for r in rows]
    assert labelled.labels == [LABELS.index(r["label"]) for r in rows]
    unlabelled = read_documents(trained, write_csv(tmp_path / "u.csv", [{"text": r["text"]} for r in rows]))
    assert unlabelled.texts == labelled.texts and unlabelled.labels is None
    lines = tmp_path / "docs.txt"
    lines.write_text("A goal.\nA chip.\n")
    assert read_documents(trained, lines).texts == ["A goal.", "A chip."]
    test_split = read_documents(trained, None, "test")  # the run's own source, split as in training
    expected = [r for r in corpus_rows if r["split"] == "test"]
    assert test_split.texts == [r["text"] for r in expected]
    assert test_split.labels == [LABELS.index(r["label"]) for r in expected]
    with pytest.raises(ConfigError, match="no such split"):
        read_documents(trained, None, "dev")


def test_corpus_statistics_find_topic_words_and_check_faithfulness(attentive):
    trained = attentive
    split, _ = load_split_for_corpus(trained, None, "test")
    options = CorpusReportConfig(
        min_word_count=2, top_words=5, words=["goal", "Chip", "zzz"], faithfulness_documents=20
    )
    stats = corpus_statistics(trained, split, options)
    assert stats.label_names == LABELS and stats.class_documents == [12, 12, 12]
    for c, name in enumerate(LABELS):
        words = stats.top_words[c]
        assert len(words) == 5 and all(w.count >= 2 for w in words)
        assert [w.mean for w in words] == sorted((w.mean for w in words), reverse=True)
        assert {w.word for w in words[:2]} <= set(TOPICS[name]), (name, words)
        assert sum(stats.top_position_share[c]) == pytest.approx(1.0)
        assert stats.position_mean[c][0] is not None and 0 < stats.position_mean[c][0] <= 1
    # "goal" occurs in sport documents only; its per-class counts are its occurrences there.
    goal_id = trained.vocab.index["goal"]
    sport_tokens = split.tokens[
        np.repeat(np.repeat(split.labels == 1, split.sentence_counts), np.diff(split.sentence_offsets))
    ]
    assert stats.chosen_words["goal"][1].count == int((sport_tokens == goal_id).sum()) > 0
    assert sum(stats.chosen_words["goal"][1].histogram) == stats.chosen_words["goal"][1].count
    assert stats.chosen_words["Chip"][2].count > 0  # looked up lower-cased, like the model reads it
    assert stats.chosen_words["zzz"] is None
    check = stats.faithfulness
    assert check.eligible == int((split.sentence_counts >= 2).sum()) and check.documents == 20
    assert len(check.top_drop) == len(check.random_drop) == 20
    assert json.loads(json.dumps(stats.as_dict()))["faithfulness"]["documents"] == 20


def test_faithfulness_drop_is_the_probability_change_without_the_top_sentence(trained, trained_run):
    split, _ = load_split_for_corpus(trained, None, "test")
    stats = corpus_statistics(trained, split, CorpusReportConfig(faithfulness_documents=1000, seed=5))
    check = stats.faithfulness
    eligible = np.flatnonzero(split.sentence_counts >= 2)
    assert check.documents == len(eligible)  # fewer eligible than asked: all of them, in split order
    weights = score_split(trained.model, split, 16, attention=True)
    d = int(eligible[3])
    first, last = split.document_offsets[d], split.document_offsets[d + 1]
    top = first + int(np.argmax(weights.sentence_weights[first:last]))
    kept = [
        split.tokens[split.sentence_offsets[s] : split.sentence_offsets[s + 1]] for s in range(first, last) if s != top
    ]
    with torch.no_grad():
        after = predict_probabilities(trained.model, EncodedSplit.from_documents([kept], [0]), 1)[0]
    predicted = int(weights.probabilities[d].argmax())
    assert check.top_drop[3] == pytest.approx(weights.probabilities[d][predicted] - after[predicted], abs=1e-5)


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)


def test_html_escapes_document_text_and_labels(trained, tmp_path):
    hostile = "Nice <script>alert('x')</script> \"quoted\" & 'single' <img src=x onerror=alert(1)> café 東京."
    source = write_csv(tmp_path / "h.csv", [{"text": hostile, "label": "sport"}])
    report = document_report(trained, source, None, DocumentReportConfig())
    report = replace(report, label_names=['<b onmouseover="x">food</b>', "sport & co", "tech's"])
    page = render_document_report(report)
    parser = _Elements()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags
    assert not {"onerror", "onmouseover", "src"} & parser.attributes
    assert "alert(&#x27;x&#x27;)&lt;/script</span>" in page and ">&lt;</span>" in page and ">&amp;</span>" in page
    assert "&lt;b onmouseover=&quot;x&quot;&gt;" in page and ">&quot;</span>" in page
    assert "東京" in page and "caf\u00e9" in page and "sport &amp; co" in page and "tech&#x27;s" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page


def test_report_commands_write_html_jsonl_and_json(trained_run, tmp_path):
    jsonl = tmp_path / "r.jsonl"
    invoke("report", trained_run, "--split", "test", "-o", jsonl, "--sort", "confidence", check=True)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 36
    assert [r["confidence"] for r in records] == sorted(r["confidence"] for r in records)
    assert all(r["true"] in LABELS and abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in records)
    page = tmp_path / "r.html"
    invoke("report", trained_run, "--split", "test", "-o", page, "--limit", "3", check=True)
    assert page.read_text().count('<article class="card doc"') == 3
    corpus = tmp_path / "c.json"
    result = invoke("corpus-report", trained_run, "-o", corpus, "--words", "goal,chip", "--min-count", "2", check=True)
    stats = json.loads(corpus.read_text())
    assert set(stats["classes"]) == set(LABELS) and set(stats["chosen_words"]) == {"goal", "chip"}
    assert "faithfulness" in result.stdout
    html_page = tmp_path / "c.html"
    invoke("corpus-report", trained_run, "-o", html_page, "--faithfulness-docs", "10", check=True)
    text = html_page.read_text()
    assert text.count("<svg") >= 4 and 'id="faithfulness"' in text and "<script" not in text
    # A file of documents without labels: grouped by the predicted class; the check can be skipped.
    unlabelled = write_csv(tmp_path / "u.csv", [{"text": r["text"]} for r in make_corpus(30, seed=4)])
    corpus = tmp_path / "u.json"
    invoke("corpus-report", trained_run, unlabelled, "-o", corpus, "--faithfulness-docs", "0", check=True)
    stats = json.loads(corpus.read_text())
    assert stats["documents"] == 30 and stats["group_by"] == "predicted" and stats["accuracy"] is None
    assert stats["faithfulness"] is None and sum(c["documents"] for c in stats["classes"].values()) == 30


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--sort", "random"], 2, "sort: Input should be"),
        (["--limit", "0"], 2, "limit: Input should be greater than or equal to 1"),
        (["--only", "misclassified", "TXT"], 2, "no true labels"),
        (["--format", "pdf", "TXT"], 2, "use html or jsonl"),
        (["--split", "dev"], 2, "no such split"),
        (["/nowhere/docs.csv"], 3, "input file not found"),
    ],
)
def test_report_errors_are_one_line(trained_run, tmp_path, args, code, message):
    lines = tmp_path / "docs.txt"
    lines.write_text("A goal.\n")
    args = [str(lines) if a == "TXT" else a for a in args]
    out = tmp_path / "out.html"
    one_line_error(invoke("report", trained_run, *args, "-o", out), code, message)
    assert not out.exists()


@pytest.fixture(scope="module")
def flat_attentive(tmp_path_factory, tiny_overrides):
    """A tiny run of kind rnn with attention pooling: document-level token attention."""
    from conftest import TINY_CONFIG
    from han.config import load_config
    from han.workflows.run import run_all

    run_dir = tmp_path_factory.mktemp("flat") / "run"
    overrides = [*tiny_overrides, "model.kind=rnn", "model.pooling=attention", "train.lazy_embedding_updates=false"]
    run_all(load_config(TINY_CONFIG, overrides), run_dir)
    return load_trained_run(run_dir)


def test_reports_show_a_flat_rnn_attention_as_sentence_and_word_weights(flat_attentive, tmp_path):
    trained = flat_attentive
    split, _ = load_split_for_corpus(trained, None, "test")
    weights = score_split(trained.model, split, batch_size=7, attention=True)
    per_document = np.add.reduceat(weights.sentence_weights, split.document_offsets[:-1])
    np.testing.assert_allclose(per_document, 1.0, atol=1e-5)
    np.testing.assert_allclose(np.add.reduceat(weights.word_weights, split.sentence_offsets[:-1]), 1.0, atol=1e-5)
    stats = corpus_statistics(trained, split, CorpusReportConfig(min_word_count=2, faithfulness_documents=10))
    assert stats.label_names == LABELS and all(len(words) > 0 for words in stats.top_words)
    report = tmp_path / "report.jsonl"
    invoke("report", trained.run.root, "--split", "test", "--limit", "3", "-o", report, check=True)
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        assert sum(s["weight"] for s in record["sentences"] if s["weight"] is not None) == pytest.approx(1.0, abs=1e-5)
