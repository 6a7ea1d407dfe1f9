"""Parallel tokenisation equals the reference path; the preprocess cache; bad rows in the manifest; inspection."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import TINY_CONFIG, invoke, make_corpus, one_line_error, write_csv
from han.config import PreprocessConfig, load_config
from han.data.rows import RawSplit, RowCounts
from han.data.splits import LoadedData
from han.errors import DataError, RunDirError
from han.store.encoded import EncodedSplit
from han.store.rundir import RunDir
from han.store.vocab import Vocab
from han.text.corpus import SegmentedSplit
from han.text.inspection import inspect_data
from han.text.preprocess import preprocess
from han.text.segment import build_pipeline, segment
from han.text.segment_datasets import SegmentedData, drop_tokenless, segment_and_encode

TRICKY = [
    "Hello World. This is\nhan!  Is it?",
    "   leading spaces.\n\n\nTrailing newlines.\n\n",
    "",
    " \n\t ",
    "One two three four five six. Seven eight. Nine! Ten? Eleven. Twelve.",
    "Ünïcödé wörds — and emoji 🙂 too. ÇA VA?",
    "no final punctuation and a very long sentence that goes on and on without end",
    'Mr. Smith went to Washington. He said: "Hi." Then left.',
]


def reference(texts, config):
    """An independent oracle: spaCy's Doc.sents token by token, whitespace tokens and empty sentences
    dropped, caps, vocabulary from train, Vocab.encode."""
    from collections import Counter

    nlp = build_pipeline(config)
    docs = []
    for doc in nlp.pipe(texts):
        sentences = []
        for sent in doc.sents:
            words = [t.lower_ if config.lowercase else t.text for t in sent if not t.is_space]
            if words:
                sentences.append(words[: config.max_words])
        docs.append(sentences[: config.max_sentences])
    vocab = Vocab.build(Counter(w for d in docs for s in d for w in s), config.min_count, config.max_vocab)
    encoded = [[vocab.encode(sentence) for sentence in doc] for doc in docs]
    return EncodedSplit.from_documents(encoded, [-1] * len(docs)), vocab, docs


def assert_same(a: EncodedSplit, b: EncodedSplit) -> None:
    for name in ("tokens", "sentence_offsets", "document_offsets", "labels"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize("caps", [(40, 50), (2, 3)])
def test_segment_and_encode_equals_the_reference_with_any_workers(lowercase, caps):
    texts = TRICKY * 3 + [row["text"] for row in make_corpus(60, seed=3)]
    config = PreprocessConfig(lowercase=lowercase, max_sentences=caps[0], max_words=caps[1], min_count=1)
    expected, vocab, documents_expected = reference(texts, config)
    for workers in (1, 2):
        corpus = segment_and_encode({"train": texts}, config, workers=workers)
        assert corpus.vocab.words == vocab.words
        assert_same(corpus.encoded("train"), expected)
        documents = corpus.splits["train"].documents(corpus.words)
        assert documents == documents_expected == list(segment(build_pipeline(config), texts, config))


def test_validation_words_outside_train_are_unknown():
    config = PreprocessConfig(min_count=1)
    corpus = segment_and_encode(
        {"train": ["alpha beta gamma.", "alpha beta."], "test": ["alpha zebra."]}, config, workers=2
    )
    assert corpus.encoded("test").tokens.tolist() == [corpus.vocab.index["alpha"], 1, corpus.vocab.index["."]]


def test_preprocess_output_does_not_depend_on_workers(tmp_path, tiny_config):
    outputs = []
    for workers in (1, 2):
        config = tiny_config.model_copy(
            update={"preprocess": tiny_config.preprocess.model_copy(update={"workers": workers})}
        )
        run = RunDir(tmp_path / f"w{workers}")
        summary = preprocess(config, run.root)
        assert summary.workers == workers
        outputs.append(
            (
                run.vocab_path.read_text(),
                load_file(str(run.embeddings_path))["embeddings"],
                [EncodedSplit.load(run.data_path(s)) for s in ("train", "validation", "test")],
                summary.data_fingerprint,
            )
        )
    (vocab1, emb1, splits1, fp1), (vocab2, emb2, splits2, fp2) = outputs
    assert vocab1 == vocab2 and np.array_equal(emb1, emb2) and fp1 == fp2
    for a, b in zip(splits1, splits2, strict=True):
        assert_same(a, b)


def test_data_fingerprint_matches_loaded_data(tmp_path, tiny_config):
    from han.data.splits import load_data

    summary = preprocess(tiny_config, tmp_path)
    assert summary.data_fingerprint == load_data(tiny_config.data, tiny_config.seed).fingerprint()


# --- cache --------------------------------------------------------------------------------------------


def test_second_preprocess_reuses_and_changes_rebuild(tmp_path, tiny_overrides, corpus_rows, caplog):
    data = write_csv(tmp_path / "data.csv", corpus_rows)
    overrides = [*tiny_overrides, f"data.source={data}"]
    run_dir = tmp_path / "run"
    first = preprocess(load_config(TINY_CONFIG, overrides), run_dir)
    assert not first.reused and len(first.cache_key) == 64
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["preprocess_key"] == first.cache_key

    caplog.set_level("INFO", logger="han")
    again = preprocess(load_config(TINY_CONFIG, [*overrides, "preprocess.workers=2"]), run_dir)
    assert again.reused and again.cache_key == first.cache_key  # workers change speed, not output
    assert "reused cached preprocessing" in caplog.text
    assert again.documents == first.documents and again.data_fingerprint == first.data_fingerprint

    with pytest.raises(RunDirError, match="--overwrite"):  # a rebuild replaces the run directory's data
        preprocess(load_config(TINY_CONFIG, [*overrides, "preprocess.max_words=5"]), run_dir)
    changed = preprocess(load_config(TINY_CONFIG, [*overrides, "preprocess.max_words=5"]), run_dir, overwrite=True)
    assert not changed.reused and changed.cache_key != first.cache_key
    assert np.diff(EncodedSplit.load(run_dir / "data" / "train").sentence_offsets).max() == 5

    write_csv(data, corpus_rows[:-3])  # the data changes: rebuild
    rebuilt = preprocess(load_config(TINY_CONFIG, [*overrides, "preprocess.max_words=5"]), run_dir, overwrite=True)
    assert not rebuilt.reused and sum(rebuilt.documents.values()) == len(corpus_rows) - 3

    uncached = preprocess(
        load_config(TINY_CONFIG, [*overrides, "preprocess.max_words=5", "preprocess.cache=false"]),
        run_dir,
        overwrite=True,
    )
    assert not uncached.reused


def test_cli_preprocess_says_it_reused_the_cache(tmp_path, tiny_overrides):
    args = ["preprocess", TINY_CONFIG, *tiny_overrides, "--run-dir", tmp_path / "run"]
    first = invoke(*args, check=True)
    assert "preprocessed" in first.stdout and "documents/s" in first.stdout and "rows in 240, kept 240" in first.stdout
    second = invoke(*args, check=True)
    assert "reused cached preprocessing" in second.stdout


# --- bad rows -----------------------------------------------------------------------------------------


def test_dropped_rows_are_counted_in_summary_and_manifest(tmp_path, tiny_overrides, corpus_rows):
    rows = [dict(r) for r in corpus_rows]
    rows[3]["text"] = "  "
    rows[10]["label"] = ""
    test_row = next(i for i, r in enumerate(rows) if r["split"] == "test")
    rows[test_row]["label"] = "weather"  # never seen in training
    data = write_csv(tmp_path / "bad.csv", rows)
    overrides = [*tiny_overrides, f"data.source={data}"]
    with pytest.raises(DataError, match=r"empty text in column\(s\) text at row\(s\) 4;"):
        preprocess(load_config(TINY_CONFIG, overrides), tmp_path / "strict")
    config = load_config(TINY_CONFIG, [*overrides, "data.bad_rows=drop", "data.unseen_labels=drop"])
    summary = preprocess(config, tmp_path / "run")
    assert summary.rows_in == 240 and summary.rows_kept == 237
    assert summary.rows_dropped == {"empty_text": 1, "missing_label": 1, "unseen_label": 1, "no_tokens": 0}
    assert sum(summary.documents.values()) == 237
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["preprocess"]
    assert manifest["rows_in"] == 240 and manifest["rows_kept"] == 237
    assert manifest["rows_dropped"]["unseen_label"] == 1
    assert manifest["rows_dropped_by_split"]["test"] == {"unseen_label": 1}


def tokenless_case(policy: str):
    from han.config import Config

    texts = ["Some words.", "", "More words here.", "x"]
    split = RawSplit(texts, ["a", "b", "a", "b"], [2, 5, 7, 9])
    loaded = LoadedData({"train": split}, ["a", "b"], [], RowCounts(rows_in=4))
    tokenised = SegmentedData(
        ["some", "words", ".", "more", "here", "x"],
        {
            "train": SegmentedSplit(
                np.array([0, 1, 2, 3, 1, 4, 2, 5], dtype=np.int32),
                np.array([3, 4, 1]),
                np.array([1, 0, 1, 1]),
            )
        },
        "fingerprint",
        1.0,
        1,
    )
    config = Config.model_validate({"data": {"source": "file.csv", "bad_rows": policy}})
    return loaded, tokenised, config


def test_documents_without_tokens_error_or_drop():
    loaded, tokenised, config = tokenless_case("error")
    with pytest.raises(DataError) as info:
        drop_tokenless(loaded, tokenised, config)
    assert "1 document(s) have no tokens after preprocessing, at row(s) 5;" in str(info.value)
    assert "\n" not in str(info.value)
    loaded, tokenised, config = tokenless_case("drop")
    drop_tokenless(loaded, tokenised, config)
    assert loaded.splits["train"].rows == [2, 7, 9] and len(tokenised.splits["train"]) == 3
    assert tokenised.splits["train"].documents(tokenised.words) == [
        [["some", "words", "."]],
        [["more", "words", "here", "."]],
        [["x"]],
    ]
    assert loaded.counts.as_dict()["rows_dropped"]["no_tokens"] == 1 and loaded.counts.rows_kept == 3


# --- inspection ---------------------------------------------------------------------------------------


def test_inspect_reports_lengths_caps_and_oov(tmp_path):
    train = ["One two three. Four five.", "Aa bb cc dd ee ff. Gg.", "Six seven eight nine ten eleven twelve."] * 4
    rows = [{"text": t, "label": "xy"[i % 2], "split": "train"} for i, t in enumerate(train)]
    rows += [{"text": "One unknownword.", "label": "x", "split": "validation"}]
    rows += [{"text": "Two two.", "label": "y", "split": "test"}]
    path = write_csv(tmp_path / "c.csv", rows)
    config = load_config(
        TINY_CONFIG,
        [f"data.source={path}", "data.split_column=split", "preprocess.max_sentences=1", "preprocess.max_words=4"],
    )
    report = inspect_data(config)
    assert report.rows == {"train": 12, "validation": 1, "test": 1}
    assert report.label_counts["train"] == {"x": 6, "y": 6}
    # sentences per document: train 2, 2, 1 (x4), validation 1, test 1
    assert report.sentences_per_document["max"] == 2 and report.sentences_per_document["p50"] == 2
    caps = report.caps
    assert caps["documents_over_max_sentences"] == pytest.approx(8 / 14, abs=1e-6)
    assert caps["sentences_cut"] == pytest.approx(8 / 22, abs=1e-6)
    # words (tokens): doc1 4+3, doc2 7+2, doc3 8 -> per 3 docs 24; x4 = 96; validation 3; test 3 -> 102
    kept = (4 + 4 + 4) * 4 + 3 + 3  # first sentence of each document, at most 4 tokens
    assert caps["words_cut_in_all"] == pytest.approx((102 - kept) / 102, abs=1e-6)
    cut_by_words = ((4 - 4) + (7 - 4) + (8 - 4)) * 4  # in kept sentences only
    assert caps["words_cut_by_max_words"] == pytest.approx(cut_by_words / 102, abs=1e-6)
    assert report.oov_rate["train"] == 0.0 and report.oov_rate["validation"] == pytest.approx(1 / 3, abs=1e-6)


def test_cli_data_inspect(tmp_path, tiny_overrides):
    result = invoke("data", "inspect", TINY_CONFIG, *tiny_overrides, check=True)
    for text in ("documents per label", "sentences per document", "words per sentence", "what the caps cut"):
        assert text in result.stdout
    assert "out-of-vocabulary rate" in result.stdout and "240 rows read" in result.stdout
    one_line_error(invoke("data", "inspect", TINY_CONFIG, "data.source=/nowhere/x.csv"), 3, "no such file")


def test_cached_preprocess_imports_no_heavy_library(tmp_path, tiny_overrides):
    """A cached `han preprocess` answers without importing torch, spaCy, gensim or datasets (seconds each)."""
    import subprocess
    import sys

    args = ["preprocess", str(TINY_CONFIG), *tiny_overrides, "--run-dir", str(tmp_path / "run")]
    invoke(*args, check=True)
    probe = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from pipelines.cli import app\n"
        f"result = CliRunner().invoke(app, {args!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'reused cached preprocessing' in result.stdout, result.stdout\n"
        "print(json.dumps([m for m in ('torch', 'spacy', 'gensim', 'datasets') if m in sys.modules]))\n"
    )
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert output.returncode == 0, output.stderr
    assert json.loads(output.stdout.strip().splitlines()[-1]) == []


def test_spilled_capped_tokenisation_equals_in_memory_and_parts_write_like_save(tmp_path):
    """Bounded-memory preprocessing: token arrays spilled to memory-mapped files and splits written part by
    part give exactly what the in-memory path gives."""
    from han.text.corpus import build_corpus
    from han.text.segment_datasets import chunked, segment_splits

    texts = [make_corpus(1, seed=i)[0]["text"] for i in range(60)] + ["", "One. Two words here. " * 30]
    config = PreprocessConfig(min_count=1, max_sentences=3, max_words=4)
    words, in_memory = segment_splits({"train": chunked(texts, 7)}, config, workers=1)
    spilled_words, spilled = segment_splits(
        {"train": chunked(texts, 7)}, config, workers=1, capped=True, spill=tmp_path / "spill"
    )
    assert spilled_words == words and isinstance(spilled["train"].ids, np.memmap)
    capped = in_memory["train"].capped(config.max_sentences, config.max_words)
    for name in ("ids", "sentence_lengths", "sentence_counts"):
        assert np.array_equal(getattr(spilled["train"], name), getattr(capped, name)), name
    corpus = build_corpus(spilled_words, spilled, config)
    labels = np.arange(len(texts), dtype=np.int64) % 3
    documents, tokens, unknown = corpus.write_encoded("train", labels, tmp_path / "parts", part_documents=8)
    corpus.encoded("train", labels).save(tmp_path / "whole")
    parts, whole = EncodedSplit.load(tmp_path / "parts"), EncodedSplit.load(tmp_path / "whole")
    assert documents == len(texts) and tokens == len(whole.tokens) and unknown == 0
    for name in ("tokens", "sentence_offsets", "document_offsets", "labels"):
        assert np.array_equal(getattr(parts, name), getattr(whole, name)), name


def test_preprocess_leaves_no_spilled_token_files(tmp_path, tiny_config):
    preprocess(tiny_config, tmp_path / "run")
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


def test_encoded_split_writer_leaves_nothing_behind_on_error(tmp_path):
    from han.store.encoded import EncodedSplitWriter

    target = tmp_path / "split"
    with pytest.raises(RuntimeError), EncodedSplitWriter(target) as writer:
        writer.write(EncodedSplit.from_documents([[[2, 3]]], [0]))
        raise RuntimeError("disk trouble")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_the_manifest_counts_what_the_caps_cut(tmp_path, workers):
    rows = make_corpus(90, seed=11)
    path = write_csv(tmp_path / "corpus.csv", rows)
    overrides = [f"data.source={path}", "data.split_column=split", "preprocess.max_sentences=2"]
    overrides += ["preprocess.max_words=4", f"preprocess.workers={workers}"]
    config = load_config(TINY_CONFIG, overrides)
    preprocess(config, tmp_path / "run")
    handling = json.loads((tmp_path / "run" / "manifest.json").read_text())["preprocess"]["text_handling"]
    uncapped = config.preprocess.model_copy(update={"max_sentences": 10_000, "max_words": 10_000})
    nlp = build_pipeline(uncapped)
    for name in ("train", "validation", "test"):
        documents = list(segment(nlp, [r["text"] for r in rows if r["split"] == name], uncapped))
        tokens = sum(len(s) for d in documents for s in d)
        kept = sum(min(len(s), 4) for d in documents for s in d[:2])
        touched = sum(len(d) > 2 or any(len(s) > 4 for s in d[:2]) for d in documents)
        expected = {"tokens": tokens, "tokens_cut": tokens - kept, "capped_documents": touched}
        expected["sentences_cut"] = sum(max(0, len(d) - 2) for d in documents)
        assert {k: handling[name][k] for k in expected} == expected, name


# --- word2vec's text ------------------------------------------------------------------------------


def spy_on_word2vec(monkeypatch) -> list[list[str]]:
    """Every sentence word2vec (or FastText) is trained on, in order, in the list returned."""
    import han.text.embeddings

    read: list[list[str]] = []
    real = han.text.embeddings.train_word2vec

    def spy(sentences, *args, **kwargs):
        read.extend(sentences)
        return real(sentences, *args, **kwargs)

    monkeypatch.setattr(han.text.embeddings, "train_word2vec", spy)
    return read


@pytest.mark.parametrize("extra", [[], ["validation", "test"], ["test"]])
def test_word2vec_reads_the_training_text_and_the_extra_splits_text(tmp_path, tiny_overrides, monkeypatch, extra):
    read = spy_on_word2vec(monkeypatch)
    overrides = [*tiny_overrides, f"embeddings.extra_text.splits={json.dumps(extra)}"]
    summary = preprocess(load_config(TINY_CONFIG, overrides), tmp_path)

    splits = ["train", *extra]
    vocab = Vocab.load(tmp_path / "vocab.json")
    encoded = [EncodedSplit.load(tmp_path / "data" / name) for name in splits]
    expected = [
        split.tokens[a:b].tolist()
        for split in encoded
        for a, b in zip(split.sentence_offsets[:-1], split.sentence_offsets[1:], strict=True)
    ]
    # every sentence of those splits, in order, as the words they were encoded from, and nothing else
    assert [vocab.encode(sentence) for sentence in read] == expected
    assert summary.word2vec is not None and summary.word2vec["splits"] == splits
    assert summary.word2vec["words"] == sum(summary.words[name] for name in splits) == sum(map(len, read))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["preprocess"]["word2vec"]["splits"] == splits


def test_extra_text_changes_the_vectors_and_the_cache_key(tmp_path, tiny_overrides):
    alone = preprocess(load_config(TINY_CONFIG, tiny_overrides), tmp_path / "alone")
    more = preprocess(
        load_config(TINY_CONFIG, [*tiny_overrides, "embeddings.extra_text.splits=[test]"]), tmp_path / "more"
    )
    assert more.cache_key != alone.cache_key
    assert (tmp_path / "alone" / "vocab.json").read_text() == (tmp_path / "more" / "vocab.json").read_text()
    vectors = [load_file(str(tmp_path / name / "embeddings.safetensors"))["embeddings"] for name in ("alone", "more")]
    assert not np.allclose(*vectors)  # the vocabulary is the training split's; its vectors saw more text


@pytest.mark.parametrize("splits", ["[train]", "[test, test]", "[predict]"])
def test_extra_text_names_other_splits_once(tiny_overrides, splits):
    from han.errors import ConfigError

    with pytest.raises(ConfigError, match="extra_text"):
        load_config(TINY_CONFIG, [*tiny_overrides, f"embeddings.extra_text.splits={splits}"])


@pytest.mark.parametrize(
    "setting",
    ["embeddings.extra_text.splits=[test]", "embeddings.extra_text.files=[a.txt]", "embeddings.subwords=true"],
)
def test_settings_of_trained_vectors_are_refused_with_other_sources(tiny_overrides, setting):
    from han.errors import ConfigError

    load_config(TINY_CONFIG, [*tiny_overrides, setting])  # word2vec: fine
    with pytest.raises(ConfigError, match=r"embeddings\.(extra_text|subwords) is for vectors han trains"):
        load_config(TINY_CONFIG, [*tiny_overrides, setting, "embeddings.source=random"])


def test_word2vec_reads_extra_text_files_after_the_splits(tmp_path, tiny_overrides, monkeypatch):
    read = spy_on_word2vec(monkeypatch)
    lines = ["Zebra crossings are new. The zebra was here.", "", "Quokka data today!"]
    (tmp_path / "more.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = [{"text": "A quokka and a zebra.", "label": "never read"}, {"text": "Network chip."}]
    (tmp_path / "more.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    files = f"[{tmp_path / 'more.txt'}, {tmp_path / 'more.jsonl'}]"
    config = load_config(TINY_CONFIG, [*tiny_overrides, f"embeddings.extra_text.files={files}"])
    summary = preprocess(config, tmp_path / "run")

    train = EncodedSplit.load(tmp_path / "run" / "data" / "train")
    from_files = read[len(train.sentence_offsets) - 1 :]  # after every training sentence
    nlp = build_pipeline(config.preprocess)
    texts = [*lines, *(r["text"] for r in records)]
    assert from_files == [sentence for doc in segment(nlp, texts, config.preprocess) for sentence in doc]
    assert ["the", "zebra", "was", "here", "."] in from_files
    assert summary.word2vec["files"] == [str(tmp_path / "more.txt"), str(tmp_path / "more.jsonl")]
    assert summary.word2vec["words"] == summary.words["train"] + sum(map(len, from_files))
    assert "zebra" not in Vocab.load(tmp_path / "run" / "vocab.json").index  # the vocabulary stays the training split's


def test_extra_text_files_are_part_of_the_cache_key_and_a_missing_one_is_named(tmp_path, tiny_overrides):
    extra = tmp_path / "more.txt"
    extra.write_text("Zebra crossings are new.\n", encoding="utf-8")
    overrides = [*tiny_overrides, f"embeddings.extra_text.files=[{extra}]"]
    first = preprocess(load_config(TINY_CONFIG, overrides), tmp_path / "run")
    assert preprocess(load_config(TINY_CONFIG, overrides), tmp_path / "run").reused
    extra.write_text("Zebra crossings are old.\n", encoding="utf-8")  # the text changed: the vectors are rebuilt
    second = preprocess(load_config(TINY_CONFIG, overrides), tmp_path / "run", overwrite=True)
    assert not second.reused and second.cache_key != first.cache_key

    shown = invoke("preprocess", TINY_CONFIG, *overrides, "--run-dir", tmp_path / "cli", check=True)
    assert "words of the train + 1 file(s) text (no labels)" in " ".join(shown.output.split())

    missing = [*tiny_overrides, f"embeddings.extra_text.files=[{tmp_path / 'gone.txt'}]"]
    with pytest.raises(DataError, match=r"embeddings\.extra_text\.files .*gone\.txt.*: no such file"):
        preprocess(load_config(TINY_CONFIG, missing), tmp_path / "other")
    assert not (tmp_path / "other").exists()  # refused before anything was written
    result = invoke("preprocess", TINY_CONFIG, *missing, "--run-dir", tmp_path / "r")
    one_line_error(result, DataError.exit_code, "gone.txt")
