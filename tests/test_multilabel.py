"""Multi-label documents (task: multilabel): label layouts, settings, the stages end to end, resume and refusals."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from test_resume import stop_by_sigint_after_step

from conftest import TINY_CONFIG, TOPICS, invoke, make_multilabel_corpus, one_line_error, write_csv
from distributed_worker import rounding_bound
from han.config import load_config
from han.data.label_sets import label_matrix
from han.data.splits import load_data
from han.errors import ConfigError, DataError, RunDirError
from han.store.encoded import EncodedSplit
from han.text.preprocess import preprocess
from han.training.distributed import batch_loss
from han.training.train import train
from han.workflows.run import run_all

NAMES = sorted(TOPICS)  # food, sport, tech


def make_rows(n: int, seed: int = 0, split: bool = True) -> list[dict[str, str]]:
    return make_multilabel_corpus(n, seed, split)


def multilabel_overrides(source: Path, *more: str) -> list[str]:
    return [
        f"data.source={source}",
        "task=multilabel",
        "data.label_column=topics",
        "data.label_separator=;",
        "train.threads=1",
        *more,
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("multilabel") / "topics.csv", make_rows(300))


@pytest.fixture(scope="module")
def overrides(corpus: Path) -> list[str]:
    return multilabel_overrides(corpus, "data.split_column=split", "train.max_epochs=4")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, overrides: list[str]) -> Path:
    run_dir = tmp_path_factory.mktemp("multilabel") / "run"
    run_all(load_config(TINY_CONFIG, overrides), run_dir)
    return run_dir


# --- label layouts --------------------------------------------------------------------------------


def _layouts(folder: Path, rows: list[dict[str, str]]) -> dict[str, list[str]]:
    """The same documents and label sets in every layout, each with the overrides that read it."""
    sets = [row["topics"].split(";") for row in rows]
    texts = [row["text"] for row in rows]
    write_csv(folder / "sep.csv", [{"text": t, "topics": row["topics"]} for t, row in zip(texts, rows, strict=True)])
    with open(folder / "list.jsonl", "w", encoding="utf-8") as handle:
        for text, labels in zip(texts, sets, strict=True):
            handle.write(json.dumps({"text": text, "topics": labels}) + "\n")
    datasets.Dataset.from_dict({"text": texts, "topics": sets}).to_parquet(str(folder / "list.parquet"))
    flags = [{"text": t, **{n: str(int(n in s)) for n in NAMES}} for t, s in zip(texts, sets, strict=True)]
    write_csv(folder / "flags.csv", flags)
    hub = folder / "hub"
    (hub / "data").mkdir(parents=True)
    features = datasets.Features(
        {"text": datasets.Value("string"), "topics": datasets.List(datasets.ClassLabel(names=NAMES))}
    )
    encoded = [[NAMES.index(n) for n in s] for s in sets]
    datasets.Dataset.from_dict({"text": texts, "topics": encoded}, features=features).to_parquet(
        str(hub / "data" / "train-00000.parquet")
    )
    (hub / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n---\n"
    )
    base = ["task=multilabel", "data.label_column=topics"]
    return {
        "separator": [*base, f"data.source={folder / 'sep.csv'}", "data.label_separator=;"],
        "jsonl list": [*base, f"data.source={folder / 'list.jsonl'}"],
        "parquet list": [*base, f"data.source={folder / 'list.parquet'}"],
        "0/1 columns": ["task=multilabel", f"data.source={folder / 'flags.csv'}", f"data.label_columns={NAMES}"],
        "hub Sequence(ClassLabel)": [*base, f"data.source={hub}"],
    }


def test_every_label_layout_reads_the_same_label_sets_and_splits(tmp_path):
    rows = make_rows(120, seed=3, split=False)
    loaded = {}
    for layout, overrides in _layouts(tmp_path, rows).items():
        config = load_config(TINY_CONFIG, overrides)
        loaded[layout] = load_data(config.data, config.seed, multilabel=True)
    expected = [tuple(row["topics"].split(";")) for row in rows]
    for layout, data in loaded.items():
        assert data.label_names == NAMES, layout
        every = {
            r: labels for split in data.splits.values() for r, labels in zip(split.rows, split.labels, strict=True)
        }
        assert [every[r] for r in range(1, len(rows) + 1)] == expected, layout
        assert {n: s.rows for n, s in data.splits.items()} == {n: s.rows for n, s in loaded["separator"].splits.items()}


def test_a_bad_flag_cell_names_column_and_row(tmp_path):
    path = write_csv(tmp_path / "f.csv", [{"text": "a b", "x": "1", "y": "0"}, {"text": "c d", "x": "maybe", "y": "1"}])
    config = load_config(TINY_CONFIG, ["task=multilabel", f"data.source={path}", "data.label_columns=[x, y]"])
    with pytest.raises(DataError, match=r"label column 'x' holds 'maybe' at row 2"):
        load_data(config.data, 0, multilabel=True)


def test_documents_without_labels_are_bad_rows_unless_allowed(tmp_path):
    rows = make_rows(60, seed=1, split=False)
    rows[5]["topics"] = ""
    path = write_csv(tmp_path / "c.csv", rows)
    overrides = ["task=multilabel", f"data.source={path}", "data.label_column=topics", "data.label_separator=;"]
    config = load_config(TINY_CONFIG, overrides)
    with pytest.raises(DataError, match=r"1 document\(s\) without a label .* row\(s\) 6"):
        load_data(config.data, 0, multilabel=True)
    config = load_config(TINY_CONFIG, [*overrides, "data.allow_empty_labels=true"])
    data = load_data(config.data, 0, multilabel=True)
    assert sum(labels == () for split in data.splits.values() for labels in split.labels) == 1


def test_min_label_count_removes_rare_labels_and_the_summary_lists_them(tmp_path):
    rows = make_rows(80, seed=2, split=False)
    for i in (0, 1):
        rows[i]["topics"] += ";rare"
    path = write_csv(tmp_path / "c.csv", rows)
    overrides = ["task=multilabel", f"data.source={path}", "data.label_column=topics", "data.label_separator=;"]
    config = load_config(TINY_CONFIG, overrides)
    data = load_data(config.data, 0, multilabel=True)
    assert "rare" in data.label_names and 1 <= data.rare_labels["rare"] <= 2
    assert "rare" in [n for labels in data.splits["train"].labels for n in labels]  # kept in train by the carve
    data = load_data(load_config(TINY_CONFIG, [*overrides, "data.min_label_count=3"]).data, 0, multilabel=True)
    assert data.label_names == NAMES
    assert all("rare" not in labels for split in data.splits.values() for labels in split.labels)


def test_unseen_labels_in_a_given_test_split_are_an_error_or_removed(tmp_path):
    rows = make_rows(90, seed=4)
    test_row = next(i for i, row in enumerate(rows) if row["split"] == "test")
    rows[test_row]["topics"] = "sport;weather"
    path = write_csv(tmp_path / "c.csv", rows)
    overrides = multilabel_overrides(path, "data.split_column=split")
    config = load_config(TINY_CONFIG, overrides)
    with pytest.raises(DataError, match=r"\[test\]: label\(s\) 'weather' never seen in training, at row\(s\)"):
        load_data(config.data, 0, multilabel=True)
    data = load_data(load_config(TINY_CONFIG, [*overrides, "data.unseen_labels=drop"]).data, 0, multilabel=True)
    test = data.splits["test"]
    assert test.labels[test.rows.index(test_row + 1)] == ("sport",)


def test_multilabel_settings_are_refused_for_a_multiclass_config(corpus):
    with pytest.raises(ConfigError, match=r"data.label_separator applies to task: multilabel"):
        load_config(TINY_CONFIG, [f"data.source={corpus}", "data.label_separator=;"])
    config = load_config(TINY_CONFIG, multilabel_overrides(corpus))
    assert config.train.early_stopping_metric == "micro_f1"
    assert load_config(TINY_CONFIG, [f"data.source={corpus}"]).train.early_stopping_metric == "macro_f1"


# --- the stages end to end ------------------------------------------------------------------------


def test_a_multilabel_run_learns_label_sets_and_saves_its_thresholds(trained):
    manifest = json.loads((trained / "manifest.json").read_text())
    assert "thresholds.json" in manifest["artifacts"]
    thresholds = json.loads((trained / "thresholds.json").read_text())
    assert set(thresholds["per_label"]) == set(NAMES)
    test = json.loads((trained / "metrics.json").read_text())["test"]
    assert test["micro_f1"] > 0.8 and test["exact_match"] > 0.5, test
    assert set(test["per_label"]) == set(NAMES)
    assert manifest["preprocess"]["labels_per_document"]["train"] > 1.2
    split = EncodedSplit.load(trained / "data" / "test")
    assert split.labels.shape == (len(split), len(NAMES)) and set(np.unique(split.labels)) <= {0, 1}


def test_predict_writes_label_sets_that_follow_the_thresholds(trained, corpus, tmp_path):
    out_csv, out_jsonl = tmp_path / "p.csv", tmp_path / "p.jsonl"
    for out in (out_csv, out_jsonl):
        invoke("predict", trained, corpus, "-o", out, check=True)
    thresholds = json.loads((trained / "thresholds.json").read_text())["per_label"]
    with open(out_csv, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    records = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert len(rows) == len(records) == 300
    agree = 0
    for row, record, source in zip(rows, records, make_rows(300), strict=True):
        expected = [n for n in NAMES if float(row[f"p_{n}"]) >= thresholds[n]]
        assert row["labels"] == ";".join(record["labels"])
        assert record["labels"] == expected or any(abs(float(row[f"p_{n}"]) - thresholds[n]) < 1e-6 for n in NAMES)
        agree += record["labels"] == source["topics"].split(";")
    assert agree > 0.5 * len(rows)  # exact set; guessing one of the 6 possible sets gets about 1/6


def test_evaluate_a_labelled_file_and_a_split_agree(trained, corpus, tmp_path):
    test_rows = [row for row in make_rows(300) if row["split"] == "test"]
    path = write_csv(tmp_path / "test.csv", [{"text": r["text"], "topics": r["topics"]} for r in test_rows])
    result = invoke("evaluate", trained, "--data", path, check=True)
    assert "micro-F1" in result.output and "exact match" in result.output
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics[str(path)]["micro_f1"] == pytest.approx(metrics["test"]["micro_f1"])
    assert metrics[str(path)]["documents"] == metrics["test"]["documents"]


def test_a_run_directory_of_one_task_is_refused_by_the_other(trained, corpus, tmp_path):
    multiclass = load_config(
        TINY_CONFIG, [f"data.source={corpus}", "data.split_column=split", "data.label_column=topics"]
    )
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    with pytest.raises(RunDirError, match=r"preprocessed for task multilabel, but this config's task is multiclass"):
        train(multiclass, run_dir, overwrite=True)
    single = tmp_path / "single"
    preprocess(multiclass, single)
    multilabel = load_config(TINY_CONFIG, multilabel_overrides(corpus, "data.split_column=split"))
    with pytest.raises(RunDirError, match=r"preprocessed for task multiclass, but this config's task is multilabel"):
        train(multilabel, single)
    result = invoke("train", TINY_CONFIG, *multilabel_overrides(corpus, "data.split_column=split"), "--run-dir", single)
    one_line_error(result, RunDirError.exit_code, "task multiclass")


def test_an_interrupted_multilabel_training_resumes_bit_identical(overrides, tmp_path):
    config = load_config(
        TINY_CONFIG, [*overrides, "model.dropout=0.3", "train.checkpoint_every_steps=5", "train.max_epochs=3"]
    )
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    preprocess(config, straight)
    shutil.copytree(straight, stopped)
    train(config, straight)
    stop_by_sigint_after_step(config, stopped, 13)
    assert not (stopped / "thresholds.json").exists()
    train(config, stopped, resume=True)
    for name in ("best", "last"):
        ours, theirs = (
            load_file(str(stopped / "model" / f"{name}.safetensors")),
            load_file(str(straight / "model" / f"{name}.safetensors")),
        )
        assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)
    assert (stopped / "thresholds.json").read_bytes() == (straight / "thresholds.json").read_bytes()


def test_kind_linear_fits_one_classifier_per_label(overrides, tmp_path):
    config = load_config(TINY_CONFIG, [*overrides, "model.kind=linear", "embeddings.source=random"])
    run_all(config, tmp_path / "run")
    test = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert test["micro_f1"] > 0.8, test
    assert (tmp_path / "run" / "thresholds.json").is_file()


def test_label_matrix_orders_by_label_names():
    matrix = label_matrix([("b",), ("a", "c"), ()], ["c", "b", "a"])
    assert matrix.tolist() == [[0, 1, 0], [1, 0, 1], [0, 0, 0]]


def test_rank_losses_of_label_sets_average_to_the_global_mean():
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 3), torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    weight = torch.tensor([1.0, 2.0, 3.0])
    ranks = [batch_loss(logits[:3], labels[:3], 3, 5, 2, weight), batch_loss(logits[3:], labels[3:], 2, 5, 2, weight)]
    per_label = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, labels.float(), pos_weight=weight, reduction="none"
    )
    assert float(sum(ranks) / 2) == pytest.approx(float(per_label.sum(dim=1).mean()), rel=1e-6)


@pytest.mark.slow
def test_two_processes_train_a_multilabel_run_like_one(overrides, tmp_path):
    """`han train --nproc 2`: the label sets are sharded with their documents; weights match one process."""
    more = [*overrides, "train.max_epochs=1", "train.batch_size=3", "train.lr=0.002", "device=cpu"]
    single, double = tmp_path / "single", tmp_path / "double"
    preprocess(load_config(TINY_CONFIG, more), single)
    shutil.copytree(single, double)
    train(load_config(TINY_CONFIG, more), single)
    command = [sys.executable, "-m", "pipelines", "train", str(TINY_CONFIG), *more, "--run-dir", str(double)]
    result = subprocess.run([*command, "--nproc", "2"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    expected, got = (
        load_file(str(single / "model" / "last.safetensors")),
        load_file(str(double / "model" / "last.safetensors")),
    )
    bound = rounding_bound(load_config(TINY_CONFIG, more), single, tmp_path)  # the order of the sums only
    for key in expected:
        assert np.abs(expected[key] - got[key]).max() <= bound, key
    assert json.loads((double / "manifest.json").read_text())["train"]["world_size"] == 2
    assert set(json.loads((double / "thresholds.json").read_text())["per_label"]) == set(NAMES)


def test_show_page_of_a_multilabel_run_counts_documents_per_label(trained, tmp_path):
    page = tmp_path / "show.html"
    invoke("show", trained, "-o", page, check=True)
    text = page.read_text(encoding="utf-8")
    assert "Per-label scores" in text and "Documents per label and split" in text
    train_rows = [row for row in make_rows(300) if row["split"] == "train"]
    sport = sum("sport" in row["topics"].split(";") for row in train_rows)
    assert f"<td>sport</td><td>{sport:,} " in text.replace('<td class="num">', "<td>")


def test_the_model_card_of_a_multilabel_run_has_per_label_scores_thresholds_and_counts(trained):
    card = (trained / "MODEL_CARD.md").read_text(encoding="utf-8")
    metrics = json.loads((trained / "metrics.json").read_text())["test"]
    section = card.split("### Per-label scores: test", 1)[1].split("\n\n", 2)[1]
    rows = {line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ")[1:] for line in section.splitlines()[2:]}
    keys = ("precision", "recall", "f1", "support", "threshold")
    expected = {
        name: [str(e[k]) if k == "support" else f"{e[k]:.4f}" for k in keys] for name, e in metrics["per_label"].items()
    }
    assert rows == expected
    train_rows = [row for row in make_rows(300) if row["split"] == "train"]
    sport = sum("sport" in row["topics"].split(";") for row in train_rows)
    assert f"| sport | {sport} | " in card and "once for each of its labels" in card
    assert "micro-F1" in card and "gets no label unless `predict.at_least_one`" in card


def test_the_printed_table_shows_the_most_frequent_labels_and_says_the_rest_are_in_metrics_json():
    from han.evaluation.metrics import multilabel_metrics
    from pipelines.ui import multilabel_table

    rng = np.random.default_rng(0)
    labels = (rng.random((200, 30)) < np.linspace(0.02, 0.6, 30)).astype(np.int8)
    names = [f"topic{i}" for i in range(30)]
    metrics = multilabel_metrics(labels, rng.random((200, 30)), names, np.full(30, 0.5))
    table = multilabel_table("test", metrics, limit=5)
    assert table.row_count == 5 and "5 most frequent of 30 labels" in str(table.caption)
    shown = list(table.columns[0].cells)
    assert shown == [f"topic{i}" for i in sorted(range(30), key=lambda i: -labels[:, i].sum())[:5]]


def test_a_fitted_wide_channel_holds_one_binary_classifier_per_label(tmp_path, overrides):
    from safetensors.torch import load_file

    fitted, linear = tmp_path / "fitted", tmp_path / "linear"
    run_all(
        load_config(TINY_CONFIG, [*overrides, "train.max_epochs=2", "model.wide=true", "model.wide_weights=fitted"]),
        fitted,
    )
    run_all(load_config(TINY_CONFIG, [*overrides, "model.kind=linear"]), linear)
    wide, plain = (load_file(str(run / "model" / "best.safetensors")) for run in (fitted, linear))
    assert torch.equal(wide["wide.scores.weight"], plain["weight"].T)  # the linear kind's one-vs-rest fit, unmoved
    assert wide["wide.scores.weight"].shape[1] == len(json.loads((fitted / "labels.json").read_text())["labels"])
    metrics = json.loads((fitted / "metrics.json").read_text())["test"]
    assert 0.0 < metrics["micro_f1"] <= 1.0
