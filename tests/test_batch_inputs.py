"""Batch inputs of `han predict` and `han report`: folders of .txt files (one document a file, named by its path),
--id-column passed through beside `row`, `han report -` reading standard input as `han predict` does, and one
warning counting the empty documents (which still get their row)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import invoke, make_corpus, one_line_error, write_csv


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [row["text"] for row in make_corpus(9, seed=7)]


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def make_folder(folder: Path, texts: list[str]) -> list[str]:
    """texts[i] into files of a nested folder (plus a hidden file and a non-.txt file, both skipped); the
    names in the order han reads them (sorted paths)."""
    names = ["b.txt", "a.txt", "sub/c.txt", "sub/deeper/a.txt", "z.txt", "m.TXT", "k.txt", "c.txt", "sub/0.txt"]
    for name, text in zip(names, texts, strict=True):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    (folder / ".hidden.txt").write_text("not a document", encoding="utf-8")
    (folder / "notes.md").write_text("not a document either", encoding="utf-8")
    return sorted(names, key=lambda name: Path(folder / name).parts)


def shown(stderr: str) -> str:
    """Standard error as one line (rich wraps log lines at the terminal's width)."""
    return " ".join(stderr.split())


def probabilities(record: dict) -> dict:
    return {key: value for key, value in record.items() if key.startswith("p_")}


def test_a_folder_of_txt_files_is_predicted_one_document_a_file_named_by_its_path(trained_run, tmp_path, texts):
    folder = tmp_path / "docs"
    names = make_folder(folder, texts)
    result = invoke("predict", trained_run, folder, check=True)
    records = jsonl(result.stdout)
    assert [r["id"] for r in records] == names
    assert [r["row"] for r in records] == list(range(1, len(names) + 1))
    assert list(records[0])[:3] == ["row", "id", "label"]
    assert "1 file(s) not ending in .txt were skipped" in shown(result.stderr)
    # the same texts, in the same order, in a CSV: the same probabilities
    by_name = {name: (folder / name).read_text(encoding="utf-8") for name in names}
    table = write_csv(tmp_path / "same.csv", [{"text": by_name[name]} for name in names])
    from_csv = jsonl(invoke("predict", trained_run, table, check=True).stdout)
    assert [probabilities(r) for r in records] == [probabilities(r) for r in from_csv]
    assert [r["label"] for r in records] == [r["label"] for r in from_csv]
    # into CSV, the id column beside row
    out = tmp_path / "out.csv"
    invoke("predict", trained_run, folder, "-o", out, check=True)
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == names


def test_folder_refusals_are_one_line_naming_the_file(trained_run, tmp_path, texts):
    folder = tmp_path / "latin1"
    make_folder(folder, texts)
    (folder / "sub" / "bad.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    out = tmp_path / "out.jsonl"
    one_line_error(invoke("predict", trained_run, folder, "-o", out), 3, "bad.txt: not valid UTF-8", progress=True)
    assert not out.exists(), "no partial output"
    nothing = tmp_path / "nothing"
    (nothing / "sub").mkdir(parents=True)
    (nothing / "readme.md").write_text("hello", encoding="utf-8")
    one_line_error(invoke("predict", trained_run, nothing), 3, f"{nothing}: no .txt files in the folder")
    one_line_error(invoke("predict", trained_run, nothing, "--id-column", "id"), 3, "no id column 'id'")


def test_id_column_is_copied_beside_row_from_every_table_format(trained_run, tmp_path, texts):
    rows = [{"doc": f"d-{i:02d}", "text": text} for i, text in enumerate(texts)]
    expected = [row["doc"] for row in rows]
    table = write_csv(tmp_path / "docs.csv", rows)
    tsv = write_csv(tmp_path / "docs.tsv", rows, delimiter="\t")
    lines = tmp_path / "docs.jsonl"
    lines.write_text("".join(json.dumps({**row, "doc": i}) + "\n" for i, row in enumerate(rows)), encoding="utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"doc": expected, "text": texts}), parquet)
    plain = jsonl(invoke("predict", trained_run, table, check=True).stdout)
    assert "id" not in plain[0]
    for source, ids in ((table, expected), (tsv, expected), (lines, list(range(len(rows)))), (parquet, expected)):
        records = jsonl(invoke("predict", trained_run, source, "--id-column", "doc", check=True).stdout)
        assert [r["id"] for r in records] == ids, source
        assert [probabilities(r) for r in records] == [probabilities(r) for r in plain], source


def test_a_missing_id_column_is_one_line_listing_the_columns(trained_run, tmp_path, texts):
    table = write_csv(tmp_path / "docs.csv", [{"doc": "x", "text": text} for text in texts])
    line = one_line_error(invoke("predict", trained_run, table, "--id-column", "name"), 3, "id column 'name'")
    assert "columns: doc, text" in line
    lines = tmp_path / "docs.jsonl"
    lines.write_text(json.dumps({"text": texts[0], "doc": 1}) + "\n" + json.dumps({"text": texts[1]}) + "\n")
    line = one_line_error(invoke("predict", trained_run, lines, "--id-column", "doc"), 3, "docs.jsonl: line 2")
    assert "id column 'doc' not found (columns: text)" in line
    one_line_error(
        invoke("predict", trained_run, "-", "--id-column", "doc", input="one\ntwo\n"),
        3,
        "standard input: no id column 'doc'",
    )


def test_sharded_predictions_keep_their_ids_through_the_merge(trained_run, tmp_path, texts):
    folder = tmp_path / "docs"
    names = make_folder(folder, texts)
    out = tmp_path / "out.jsonl"
    for index in range(2):
        invoke("predict", trained_run, folder, "-o", out, "--shard", f"{index}/2", "--chunk-size", "2", check=True)
    invoke("merge-predictions", out, "--shards", 2, check=True)
    merged = jsonl(out.read_text(encoding="utf-8"))
    assert [r["id"] for r in merged] == names
    assert [probabilities(r) for r in merged] == [
        probabilities(r) for r in jsonl(invoke("predict", trained_run, folder, check=True).stdout)
    ]


def test_empty_documents_keep_their_rows_and_are_counted_in_one_warning(trained_run, tmp_path, texts):
    lines = [texts[0], "", texts[1], "   \t ", texts[2], "\u200b"]  # a zero-width space: nothing once cleaned
    result = invoke("predict", trained_run, input="\n".join(lines) + "\n", check=True)
    records = jsonl(result.stdout)
    assert [r["row"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert shown(result.stderr).count("documents are empty") == 1, result.stderr
    assert "standard input: 3 of 6 documents are empty (rows 2, 4, 6); their labels" in shown(result.stderr)
    assert records[1]["label"] == records[3]["label"] == records[5]["label"]  # one guess for no text
    clean = invoke("predict", trained_run, input="\n".join(texts) + "\n", check=True)
    assert "empty" not in clean.stderr
    folder = tmp_path / "docs"
    (folder).mkdir()
    (folder / "a.txt").write_text(texts[0], encoding="utf-8")
    (folder / "b.txt").write_text("", encoding="utf-8")
    result = invoke("predict", trained_run, folder, check=True)
    assert [r["id"] for r in jsonl(result.stdout)] == ["a.txt", "b.txt"]
    assert "1 of 2 documents are empty (row 2)" in shown(result.stderr)


def test_report_reads_standard_input_like_a_file(trained_run, tmp_path, texts):
    documents = tmp_path / "docs.txt"
    documents.write_text("\n".join(texts) + "\n", encoding="utf-8")
    for suffix in ("jsonl", "html"):
        from_file, from_stdin = tmp_path / f"file.{suffix}", tmp_path / f"stdin.{suffix}"
        invoke("report", trained_run, documents, "-o", from_file, check=True)
        invoke("report", trained_run, "-", "-o", from_stdin, input=documents.read_text(encoding="utf-8"), check=True)
        expected = from_file.read_text(encoding="utf-8").replace(str(documents), "standard input")
        assert from_stdin.read_text(encoding="utf-8") == expected, suffix
    assert len(jsonl((tmp_path / "stdin.jsonl").read_text(encoding="utf-8"))) == len(texts)
    one_line_error(
        invoke("report", trained_run, "-", "--split", "test", "-o", tmp_path / "r.html", input="x\n"),
        2,
        "standard input has no splits",
    )


def test_report_counts_empty_documents_and_reads_a_folder(trained_run, tmp_path, texts):
    result = invoke(
        "report", trained_run, "-", "-o", tmp_path / "r.jsonl", input=f"{texts[0]}\n\n{texts[1]}\n", check=True
    )
    assert "standard input: 1 of 3 documents are empty (row 2)" in shown(result.stderr)
    records = jsonl((tmp_path / "r.jsonl").read_text(encoding="utf-8"))
    assert [r["row"] for r in records] == [1, 2, 3] and records[1]["sentences"] == []
    folder = tmp_path / "docs"
    make_folder(folder, texts)
    invoke("report", trained_run, folder, "-o", tmp_path / "f.jsonl", check=True)
    assert len(jsonl((tmp_path / "f.jsonl").read_text(encoding="utf-8"))) == len(texts)
