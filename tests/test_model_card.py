"""MODEL_CARD.md: every evaluated run says what it is in a Hugging Face style model card, made from its own files."""

from __future__ import annotations

import json
import re

import yaml

from conftest import invoke, write_csv
from han.store.model_card import markdown_cell, render_model_card
from han.store.rundir import RunDir

CELL_BORDER = re.compile(r"(?<!\\)\|")  # a table cell border: a pipe no backslash escapes


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    head, _ = card[4:].split("\n---\n", 1)
    return yaml.safe_load(head)


def table_rows(card: str, heading: str) -> list[list[str]]:
    """The cells of each body row of the first table after `heading`, cut at unescaped pipes."""
    section = card.split(heading + "\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(section) if line.startswith("|"))
    lines = []
    for line in section[start:]:
        if not line.startswith("|"):
            break
        lines.append(line)
    return [[cell.strip() for cell in CELL_BORDER.split(line)[1:-1]] for line in lines[2:]]


def figure(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def test_a_trained_run_has_a_card_listed_in_its_manifest(trained_run):
    run = RunDir(trained_run)
    card = run.model_card_path.read_text(encoding="utf-8")
    assert "MODEL_CARD.md" in run.listed_artifacts()
    run.verify_artifacts(run.model_card_path)  # the manifest's checksum is the card's
    assert card == render_model_card(run), "the card is what the run's files say now"


def test_the_front_matter_is_yaml_with_the_runs_results(trained_run):
    card = (trained_run / "MODEL_CARD.md").read_text(encoding="utf-8")
    front = front_matter(card)
    metrics = json.loads((trained_run / "metrics.json").read_text())
    labels = json.loads((trained_run / "labels.json").read_text())["labels"]
    assert front["library_name"] == "han" and front["labels"] == labels and front["language"] == ["en"]
    results = {r["dataset"]["split"]: r for r in front["model-index"][0]["results"]}
    assert set(results) == {"validation", "test"}
    for split, result in results.items():
        values = {m["name"]: m["value"] for m in result["metrics"]}
        assert values[f"{split} accuracy"] == round(metrics[split]["accuracy"], 4)
        assert values[f"{split} macro-F1"] == round(metrics[split]["macro_f1"], 4)


def test_every_class_has_a_row_with_the_numbers_of_metrics_json(trained_run):
    card = (trained_run / "MODEL_CARD.md").read_text(encoding="utf-8")
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for split in ("test", "validation"):
        rows = {row[0]: row[1:] for row in table_rows(card, f"### Per-class scores: {split}")}
        per_class = metrics[split]["per_class"]
        assert set(rows) == set(per_class)
        for name, entry in per_class.items():
            assert rows[name] == [figure(entry[k]) for k in ("precision", "recall", "f1", "support")]
    labels = {row[0]: row[1:] for row in table_rows(card, "## Labels")}
    manifest = json.loads((trained_run / "manifest.json").read_text())
    documents = manifest["preprocess"]["documents"]
    for i, split in enumerate(("train", "validation", "test")):
        assert sum(int(counts[i]) for counts in labels.values()) == documents[split]
    for name, entry in metrics["test"]["per_class"].items():
        assert labels[name][2] == str(entry["support"])


def test_the_card_names_data_caps_and_the_command_that_reproduces_it(trained_run):
    card = (trained_run / "MODEL_CARD.md").read_text(encoding="utf-8")
    config = json.loads((trained_run / "config.json").read_text())
    manifest = json.loads((trained_run / "manifest.json").read_text())
    assert f"han run {trained_run}/config.json --run-dir " in card and f"the seed ({config['seed']})" in card
    assert manifest["data_fingerprint"] in card and f"`{config['data']['source']}`" in card
    caps = card.split("## What the caps cut", 1)[1].split("\n## ", 1)[0]
    assert (
        f"at most {config['preprocess']['max_sentences']} sentences of {config['preprocess']['max_words']} words"
        in caps
    )
    handling = manifest["preprocess"]["text_handling"]
    rows = {row[0]: row for row in table_rows(card, "## What the caps cut")}
    assert set(rows) == set(handling)
    for split, counts in handling.items():
        assert rows[split][3:6] == [str(counts[k]) for k in ("capped_documents", "sentences_cut", "tokens_cut")]
    assert "no proof of causation" in card and "empty document" in card
    assert f'han.load("{trained_run}")' in card and f"han predict {trained_run} " in card


def test_han_show_names_the_card(trained_run, tmp_path):
    output = tmp_path / "run.html"
    result = invoke("show", trained_run, "-o", output, check=True)
    assert f"model card: {trained_run / 'MODEL_CARD.md'}" in result.stdout
    assert f"model card <code>{trained_run / 'MODEL_CARD.md'}</code>" in output.read_text(encoding="utf-8")


def test_evaluate_refreshes_the_card_and_keeps_a_hand_edited_one(run_copy, corpus_rows, tmp_path, caplog):
    data = write_csv(tmp_path / "more.csv", corpus_rows[:30])
    invoke("evaluate", run_copy, "--data", data, check=True)
    run = RunDir(run_copy)
    card = run.model_card_path.read_text(encoding="utf-8")
    assert str(data) in {row[0].replace("\\", "") for row in table_rows(card, "## Evaluation results")}
    run.verify_artifacts(run.model_card_path)

    edited = card + "\nA note of mine.\n"
    run.model_card_path.write_text(edited, encoding="utf-8")
    invoke("evaluate", run_copy, "--split", "validation", check=True)
    assert run.model_card_path.read_text(encoding="utf-8") == edited, "a card someone edited is never replaced"


def test_label_names_cannot_break_the_tables(run_copy):
    names = ["a|b", "two\nlines", "<b>*x*</b>"]
    run = RunDir(run_copy)
    old = run.load_labels()
    renamed = dict(zip(old, names, strict=True))
    (run_copy / "labels.json").write_text(json.dumps({"labels": names}))
    metrics = json.loads(run.metrics_path.read_text())
    for split in metrics.values():
        split["per_class"] = {renamed[k]: v for k, v in split["per_class"].items()}
    run.metrics_path.write_text(json.dumps(metrics))
    manifest = json.loads(run.manifest_path.read_text())
    counts = manifest["preprocess"]["label_counts"]
    manifest["preprocess"]["label_counts"] = {s: {renamed[k]: v for k, v in c.items()} for s, c in counts.items()}
    run.manifest_path.write_text(json.dumps(manifest))

    card = render_model_card(run)
    assert front_matter(card)["labels"] == names
    for heading, width in (("### Per-class scores: test", 5), ("## Labels", 4)):
        rows = table_rows(card, heading)
        assert [row[0] for row in rows] == [markdown_cell(name) for name in names]
        assert all(len(row) == width for row in rows), rows
    assert "<b>" not in card.split("\n---\n", 1)[1] and markdown_cell("a|b") == "a\\|b"
