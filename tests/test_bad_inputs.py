"""Bad input, everywhere: every case below is one distinct bad config, data file or prediction input.

Each runs through the `han` command and must give its expected one-line message on stderr with the
expected exit code (2 config, 3 data, 4 run directory), no traceback and no hang. The table is the
list of every refusal han promises. Inputs that are handled rather than refused (huge
documents, invisible and control characters, right-to-left text) are tested at the end.
"""

from __future__ import annotations

import gzip
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest

from conftest import TINY_CONFIG, invoke, make_corpus, one_line_error, write_csv

GOOD_ROWS = make_corpus(30, seed=5)


@dataclass
class Paths:
    tmp: Path
    trained: Path  # a trained run directory (conftest.trained_run)

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    def config(self, text: str) -> Path:
        return self.file("config.yaml", text)


Setup = Callable[[Paths], list[str]]


def config_case(text: str, *overrides: str) -> Setup:
    return lambda p: ["preprocess", str(p.config(text)), *overrides, "--run-dir", str(p.tmp / "run")]


def tiny_case(*overrides: str) -> Setup:
    return lambda p: ["preprocess", str(TINY_CONFIG), *overrides, "--run-dir", str(p.tmp / "run")]


def data_case(name: str, content: str | bytes | Callable[[Path], None], *overrides: str) -> Setup:
    def setup(p: Paths) -> list[str]:
        if callable(content):
            content(p.tmp / name)
        else:
            p.file(name, content)
        return [
            "preprocess",
            str(TINY_CONFIG),
            f"data.source={p.tmp / name}",
            *overrides,
            "--run-dir",
            str(p.tmp / "run"),
        ]

    return setup


def predict_case(name: str | None, content: str | bytes | Callable[[Path], None] | None, *options: str) -> Setup:
    def setup(p: Paths) -> list[str]:
        if name is None:
            return ["predict", str(p.trained), *options]
        if callable(content):
            content(p.tmp / name)
        elif content is not None:
            p.file(name, content)
        return ["predict", str(p.trained), str(p.tmp / name), *options]

    return setup


def csv_text(rows: list[dict[str, str]], delimiter: str = ",") -> str:
    header = delimiter.join(rows[0])
    return "\n".join([header, *(delimiter.join(row.values()) for row in rows)]) + "\n"


def parquet(rows: list[dict[str, str]]) -> Callable[[Path], None]:
    return lambda path: datasets.Dataset.from_list(rows).to_parquet(str(path))


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


SIMPLE_ROWS = [{"text": f"doc {i}.", "label": "ab"[i % 2]} for i in range(12)]
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefg", "bcdefgh", strict=True)
)

# (id, setup, exit code, expected message; {tmp} is the test's folder)
CASES: list[tuple[str, Setup, int, str]] = [
    # --- config files and overrides -------------------------------------------------------------
    ("config: file missing", lambda p: ["run", str(p.tmp / "nope.yaml")], 2, "nope.yaml: config file not found"),
    ("config: a folder", lambda p: ["run", str(p.tmp)], 2, "is a folder, not a config file"),
    ("config: invalid YAML", config_case("data: [unclosed\n"), 2, "config.yaml: not valid YAML"),
    (
        "config: binary garbage",
        lambda p: ["run", str(p.file("bin.yaml", b"\xff\xfe\x00\x81garbage"))],
        2,
        "not valid YAML",
    ),
    ("config: a list, not a mapping", config_case("- data\n- train\n"), 2, "expected a mapping of sections"),
    ("config: empty file", config_case(""), 2, "data: required key is missing"),
    ("config: unknown top-level key", config_case("data: {source: x.csv}\nepochs: 3\n"), 2, "epochs: unknown key"),
    (
        "config: unknown nested key",
        config_case("data: {source: x.csv}\ntrain: {lrate: 1}\n"),
        2,
        "train.lrate: unknown key",
    ),
    (
        "config: wrong type",
        config_case("data: {source: x.csv}\ntrain: {batch_size: lots}\n"),
        2,
        "train.batch_size: Input should be a valid integer, unable to parse string as an integer (got 'lots')",
    ),
    (
        "config: out of range (dropout 1.5)",
        config_case("data: {source: x.csv}\nmodel: {dropout: 1.5}\n"),
        2,
        "model.dropout: Input should be less than 1",
    ),
    (
        "config: negative learning rate",
        config_case("data: {source: x.csv}\ntrain: {lr: -0.1}\n"),
        2,
        "train.lr: Input should be greater than 0",
    ),
    (
        "config: zero batch size",
        config_case("data: {source: x.csv}\ntrain: {batch_size: 0}\n"),
        2,
        "train.batch_size: Input should be greater than or equal to 1",
    ),
    (
        "config: unknown optimizer",
        config_case("data: {source: x.csv}\ntrain: {optimizer: rmsprop}\n"),
        2,
        "train.optimizer: Input should be 'adam' or 'sgd'",
    ),
    (
        "config: section given as a number",
        config_case("data: {source: x.csv}\ntrain: 5\n"),
        2,
        "train: Input should be a valid dictionary",
    ),
    (
        "config: vectors file source without a path",
        config_case("data: {source: x.csv}\nembeddings: {source: file}\n"),
        2,
        "embeddings.path is not set",
    ),
    (
        "config: YAML python tag (code execution attempt)",
        config_case("data:\n  source: !!python/object/apply:os.system [echo hi]\n"),
        2,
        "could not determine a constructor for the tag",
    ),
    ("config: alias bomb", config_case(ALIAS_BOMB + "data: {source: x.csv, text_column: *h}\n"), 2, "more problem(s)"),
    (
        "config: zero max_chars",
        config_case("data: {source: x.csv}\npreprocess: {max_chars: 0}\n"),
        2,
        "preprocess.max_chars: Input should be greater than or equal to 1",
    ),
    (
        "config: zero checkpoint interval",
        config_case("data: {source: x.csv}\ntrain: {checkpoint_every_steps: 0}\n"),
        2,
        "train.checkpoint_every_steps",
    ),
    ("override: not key=value", tiny_case("train.lr"), 2, "is not of the form key.path=value"),
    ("override: into a value", tiny_case("seed.x=2"), 2, "seed is a value, not a section"),
    ("override: unknown key", tiny_case("train.nope=1"), 2, "train.nope: unknown key"),
    ("override: wrong type", tiny_case("train.max_epochs=many"), 2, "train.max_epochs"),
    (
        "config: spaCy pipeline not installed",
        lambda p: tiny_case(
            f"data.source={write_csv(p.tmp / 'ok.csv', GOOD_ROWS)}", "preprocess.spacy_model=xx_missing_pipeline"
        )(p),
        2,
        "spaCy pipeline 'xx_missing_pipeline' is not installed",
    ),
    (
        "config: vectors file missing",
        lambda p: tiny_case(
            f"data.source={write_csv(p.tmp / 'ok.csv', GOOD_ROWS)}",
            "embeddings.source=file",
            f"embeddings.path={p.tmp / 'none.vec'}",
        )(p),
        3,
        "none.vec: vectors file not found",
    ),
    (
        "config: data file missing",
        tiny_case("data.source=/nowhere/data.csv"),
        3,
        "data.source '/nowhere/data.csv': no such file or folder",
    ),
    (
        "flags: --resume with --overwrite",
        lambda p: ["run", str(TINY_CONFIG), "--resume", "--overwrite", "--run-dir", str(p.tmp / "r")],
        2,
        "--resume and --overwrite exclude each other",
    ),
    # --- data files -----------------------------------------------------------------------------
    (
        "data: binary garbage .csv",
        data_case("garbage.csv", bytes(range(256)) * 20),
        3,
        "garbage.csv: binary data (a NUL byte at line 1), not a .csv text file",
    ),
    (
        "data: semicolon-separated .csv",
        data_case("semi.csv", csv_text(SIMPLE_ROWS, ";")),
        3,
        "the file looks semicolon-separated, but han reads .csv files as comma-separated",
    ),
    (
        "data: tab-separated file named .csv",
        data_case("tabs.csv", csv_text(SIMPLE_ROWS, "\t")),
        3,
        "looks tab-separated, but han reads .csv files as comma-separated; rename it to .tsv",
    ),
    (
        "data: comma-separated file named .tsv",
        data_case("commas.tsv", csv_text(SIMPLE_ROWS)),
        3,
        "looks comma-separated, but han reads .tsv files as tab-separated",
    ),
    (
        "data: text column missing",
        data_case("notext.csv", csv_text([{"body": "x.", "label": "a"}] * 4)),
        3,
        "column 'text' not found (columns: body, label)",
    ),
    (
        "data: label column missing",
        data_case("nolabel.csv", csv_text([{"text": "x.", "y": "a"}] * 4)),
        3,
        "column 'label' not found",
    ),
    ("data: empty file", data_case("empty.csv", b""), 3, "empty.csv: the file is empty"),
    ("data: header only", data_case("header.csv", "text,label\n"), 3, "header.csv: has a header row but no documents"),
    ("data: whitespace only", data_case("blank.jsonl", "\n\n   \n"), 3, "blank.jsonl: holds only whitespace"),
    # Invalid UTF-8 in training data is not refused: it is decoded with replacement and counted in a
    # warning (tests/test_ingestion.py); prediction inputs must be valid UTF-8 (cases below).
    (
        "data: UTF-16 file",
        data_case("utf16.csv", csv_text(SIMPLE_ROWS).encode("utf-16")),
        3,
        "utf16.csv: is UTF-16 text",
    ),
    (
        "data: gzip file named .csv",
        data_case("packed.csv", gzip.compress(csv_text(SIMPLE_ROWS).encode())),
        3,
        "packed.csv: is gzip-compressed, not a .csv text file",
    ),
    (
        "data: pickle named .csv",
        data_case("evil.csv", pickle.dumps(Evil())),
        3,
        "evil.csv: is a Python pickle, not a .csv text file",
    ),
    (
        "data: PDF named .csv",
        data_case("doc.csv", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"),
        3,
        "doc.csv: is a PDF document",
    ),
    (
        "data: NUL byte inside a text field",
        data_case("nul.csv", csv_text(SIMPLE_ROWS) + "bad\x00 text,a\n"),
        3,
        "nul.csv: binary data (a NUL byte at line 14), not a .csv text file",
    ),
    (
        "data: ragged rows",
        data_case("ragged.csv", "text,label\nfine.,a\nfine too.,b\nodd,a,extra\n"),
        3,
        "ragged.csv: could not be parsed (Error tokenizing data. C error: Expected 2 fields in line 4, saw 3)",
    ),
    (
        "data: unclosed quote",
        data_case("quote.csv", 'text,label\n"never closed,a\nnext,b\n'),
        3,
        "quote.csv: could not be parsed (Error tokenizing data. C error: EOF inside string",
    ),
    (
        "data: invalid JSON line",
        data_case("bad.jsonl", '{"text": "a.", "label": "x"}\n{oops\n'),
        3,
        "bad.jsonl: could not be parsed (JSON parse error",
    ),
    ("data: JSON scalar", data_case("scalar.json", "42\n"), 3, "scalar.json: could not be parsed"),
    (
        "data: fake Parquet",
        data_case("fake.parquet", b"PAR1 but not really" * 10),
        3,
        "fake.parquet: not a Parquet file (no PAR1 magic bytes at its start and end)",
    ),
    ("data: unsupported type", data_case("sheet.xlsx", b"PK\x03\x04"), 3, "sheet.xlsx: unsupported file type '.xlsx'"),
    (
        "data: too few documents to split",
        data_case("two.csv", "text,label\nfirst.,a\nsecond.,b\n"),
        3,
        "two.csv: 1 training document(s) are too few to carve a 0.2 split",
    ),
    (
        "data: one label only",
        data_case("onelabel.csv", csv_text([{"text": f"doc {i}.", "label": "a"} for i in range(12)])),
        3,
        "classification needs at least 2",
    ),
    (
        "data: split column missing",
        data_case("nosplit.csv", csv_text(SIMPLE_ROWS), "data.split_column=split"),
        3,
        "split column 'split' not found",
    ),
    (
        "data: empty folder",
        lambda p: tiny_case(f"data.source={(p.tmp / 'folder').mkdir() or p.tmp / 'folder'}")(p),
        3,
        "no text files found in class sub-folders",
    ),
    (
        "evaluate --data: binary garbage",
        lambda p: ["evaluate", str(p.trained), "--data", str(p.file("junk.csv", b"\x00\x01" * 100))],
        3,
        "junk.csv: binary data",
    ),
    # --- prediction inputs ----------------------------------------------------------------------
    ("predict: empty .txt", predict_case("empty.txt", b""), 3, "empty.txt: the file is empty (no documents)"),
    ("predict: empty .csv", predict_case("empty.csv", b""), 3, "empty.csv: the file is empty"),
    (
        "predict: wrong columns",
        predict_case("wrong.csv", csv_text([{"body": "x", "label": "a"}])),
        3,
        "column(s) text not found (columns: body, label)",
    ),
    ("predict: header only", predict_case("header.csv", "text\n"), 3, "header.csv: has a header row but no documents"),
    (
        "predict: semicolon-separated",
        predict_case("semi.csv", "text;id\nhello;1\n"),
        3,
        "semi.csv: the header 'text;id' is one column: the file looks semicolon-separated",
    ),
    (
        "predict: TSV without the column",
        predict_case("wrong.tsv", "body\tid\nhello\t1\n"),
        3,
        "column(s) text not found (columns: body, id)",
    ),
    (
        "predict: invalid JSON line",
        predict_case("bad.jsonl", '{"text": "fine"}\n{nope\n'),
        3,
        "bad.jsonl: line 2 is not valid JSON",
    ),
    (
        "predict: JSON line without the field",
        predict_case("nofield.jsonl", '{"body": "x"}\n'),
        3,
        "nofield.jsonl: line 1 has no text field(s)",
    ),
    (
        "predict: JSON line that is a list",
        predict_case("list.jsonl", '["text"]\n'),
        3,
        "list.jsonl: line 1 has no text field(s)",
    ),
    ("predict: unsupported type", predict_case("doc.docx", b"PK"), 3, "doc.docx: unsupported input type '.docx'"),
    ("predict: file missing", predict_case("missing.csv", None), 3, "missing.csv: input file not found"),
    (
        "predict: a folder without .txt files",
        lambda p: ["predict", str(p.trained), str((p.tmp / "d.csv").mkdir() or p.tmp / "d.csv")],
        3,
        "d.csv: no .txt files in the folder",
    ),
    (
        "predict: binary .txt",
        predict_case("bin.txt", b"\x7fELF\x02\x01\x01\x00" + bytes(200)),
        3,
        "bin.txt: binary data (a NUL byte at line 1)",
    ),
    (
        "predict: Latin-1 .txt",
        predict_case("latin1.txt", b"fine line\nna\xefve line\n"),
        3,
        "latin1.txt: line 2: byte 0xef is not valid UTF-8",
    ),
    ("predict: UTF-16 .txt", predict_case("utf16.txt", "hello\n".encode("utf-16")), 3, "utf16.txt: is UTF-16 text"),
    (
        "predict: whitespace-only .txt",
        predict_case("blank.txt", "\n \n\t\n"),
        3,
        "blank.txt: holds only whitespace, no documents",
    ),
    (
        "predict: fake Parquet",
        predict_case("fake.parquet", b"not parquet at all"),
        3,
        "fake.parquet: not a Parquet file",
    ),
    (
        "predict: Parquet without the column",
        predict_case("other.parquet", parquet([{"body": "x"}])),
        3,
        "other.parquet: column(s) text not found (columns: body)",
    ),
    (
        "predict: pickle named .jsonl",
        predict_case("evil.jsonl", pickle.dumps(Evil())),
        3,
        "evil.jsonl: is a Python pickle",
    ),
    ("predict: no stdin lines", predict_case(None, None), 3, "standard input: the input holds no documents"),
    (
        "predict: unknown --weights",
        predict_case("ok.txt", "hello\n", "--weights", "newest"),
        2,
        "--weights 'newest': use best or last",
    ),
]


def test_the_table_holds_at_least_40_distinct_cases():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    assert {i.split(":")[0] for i in ids} >= {"config", "data", "predict"}


@pytest.mark.parametrize(("setup", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_error(trained_run, tmp_path, setup, code, message, capsys):
    args = setup(Paths(tmp_path, trained_run))
    result = invoke(*args)  # with an empty standard input
    one_line_error(result, code, message.format(tmp=tmp_path))
    assert "unpickled!" not in result.output + capsys.readouterr().out
    manifest = tmp_path / "run" / "manifest.json"
    if manifest.exists():  # claimed (han's marker) but nothing finished: no artifact, no stage summary
        written = json.loads(manifest.read_text())
        assert not written.get("artifacts") and "preprocess" not in written, "a partial run that looks complete"


# --- inputs that are handled, not refused: documented and counted ----------------------------------
def test_a_50_mb_document_is_truncated_before_segmentation_with_bounded_memory():
    import tracemalloc

    from han.config import PreprocessConfig
    from han.text.segment import TextStats, build_pipeline, segment

    config = PreprocessConfig(max_sentences=40, max_words=50)
    huge = "word " * 10_000_000  # 50 MB, one sentence without an end
    stats = TextStats()
    nlp = build_pipeline(config)
    tracemalloc.start()
    (document,) = segment(nlp, [huge], config, stats)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert stats.truncated == 1 and len(document) == 1 and len(document[0]) == 50
    assert peak < 100 * 2**20, f"segmenting used {peak / 2**20:.0f} MiB of Python memory"


def test_a_100000_sentence_document_keeps_max_sentences_and_stays_small():
    import tracemalloc

    from han.config import PreprocessConfig
    from han.text.segment import TextStats, build_pipeline, segment

    config = PreprocessConfig(max_sentences=40, max_words=50)
    text = "".join(f"Sentence number {i} is here. " for i in range(100_000))
    stats = TextStats()
    nlp = build_pipeline(config)
    tracemalloc.start()
    (document,) = segment(nlp, [text], config, stats)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(document) == 40 and document[0] == ["sentence", "number", "0", "is", "here", "."]
    assert stats.truncated == 1 and peak < 100 * 2**20


def test_invisible_control_and_rtl_text_through_preprocess_and_predict(tmp_path, trained_run):
    from han.config import load_config
    from han.serving.inference import predict_texts
    from han.serving.trained import load_trained_run
    from han.text.preprocess import preprocess

    rows = make_corpus(60, seed=3)
    rows[0]["text"] = "The te\u200bam sco\u00adred\x07 a go\u202eal.\x1b[31m Match\ufeff day."
    rows[1]["text"] = (
        "\u0645\u0628\u0627\u0631\u0627\u0629 \u0643\u0631\u0629 \u0627\u0644\u0642\u062f\u0645. \u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd. "
        + rows[1]["text"]
    )
    rows[2]["text"] = "x" * 300 + " " + rows[2]["text"]
    path = write_csv(tmp_path / "odd.csv", rows)
    config = load_config(TINY_CONFIG, [f"data.source={path}", "data.split_column=split", "preprocess.max_chars=250"])
    summary = preprocess(config, tmp_path / "run")
    handling = summary.text_handling["train"]
    assert {k: handling[k] for k in ("documents", "truncated", "cleaned")} == {
        "documents": 42,
        "truncated": 1,
        "cleaned": 1,
    }
    words = json.loads((tmp_path / "run" / "vocab.json").read_text())["words"]
    assert "team" in words and "scored" in words and "goal" in words  # invisible characters removed
    assert "\u0645\u0628\u0627\u0631\u0627\u0629" in words and "\u05e9\u05dc\u05d5\u05dd" in words  # RTL words kept
    assert not any(ch in w for w in words for ch in "\x00\x1b\u200b\u202e\ufeff")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["preprocess"]["text_handling"]["train"]["truncated"] == 1

    trained = load_trained_run(trained_run)
    texts = ["", "\x00\x01\x02", "\u200b\u200b", "\u05e9\u05dc\u05d5\u05dd", "\ud800 lone surrogate", "word " * 100_000]
    probabilities = list(predict_texts(trained, texts))
    assert len(probabilities) == len(texts) and all(abs(p.sum() - 1) < 1e-4 for p in probabilities)
    assert trained.text_stats.truncated == 1 and trained.text_stats.cleaned == 3
