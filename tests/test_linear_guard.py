"""The linear kind beside every network (train.linear_baseline), the fitted channel's epoch 0, and linear_c auto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY_CONFIG, invoke, record_callers
from han.config import load_config
from han.evaluation.scoring import score_split
from han.models.ensemble import members
from han.reports.run_page import render_run_page
from han.store.encoded import EncodedSplit
from han.store.rundir import RunDir
from han.text.batching import collate
from han.training.fit_linear import LINEAR_C_CHOICES, fitted_linear_model, validation_record
from han.training.initial_model import build_training_start
from han.workflows.run import run_all

METRICS = ("validation_accuracy", "validation_macro_f1", "validation_micro_f1")


def run_tiny(tmp_path_factory, tiny_overrides, name: str, *overrides: str) -> Path:
    run_dir = tmp_path_factory.mktemp(name) / "run"
    run_all(load_config(TINY_CONFIG, [*tiny_overrides, *overrides]), run_dir)
    return run_dir


def train_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def manifest_linear(run_dir: Path) -> dict | None:
    return json.loads((run_dir / "manifest.json").read_text())["train"].get("linear_kind")


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory, tiny_overrides) -> Path:
    return run_tiny(tmp_path_factory, tiny_overrides, "linear", "model.kind=linear")


@pytest.mark.parametrize("channel", ["off", "learnt"])
def test_a_network_run_records_the_linear_kinds_validation_score(tmp_path_factory, tiny_overrides, linear_run, channel):
    wide = ["model.wide=false"] if channel == "off" else ["model.wide=true", "model.wide_weights=learnt"]
    run_dir = run_tiny(tmp_path_factory, tiny_overrides, channel, *wide)
    linear, fitted_alone = manifest_linear(run_dir), train_log(linear_run)[0]
    assert linear is not None and linear["source"] == "fitted after training"
    for metric in METRICS:  # the same features and fit as the linear kind's own run (the channel's table reused)
        assert linear[metric] == pytest.approx(fitted_alone[metric], abs=1e-12)
    log = train_log(run_dir)
    best = json.loads((run_dir / "manifest.json").read_text())["train"]["best_epoch"]
    network = next(record for record in log if record["epoch"] == best)["validation_macro_f1"]
    assert linear["compared_metric"] == "validation_macro_f1" and linear["network"] == network
    assert linear["network_trails"] == (network < linear["validation_macro_f1"])
    shown = json.loads((run_dir / "metrics.json").read_text())["validation"]["linear_kind"]
    assert shown["accuracy"] == linear["validation_accuracy"] and shown["macro_f1"] == linear["validation_macro_f1"]


def test_the_fitted_channel_starts_as_the_linear_kind_and_scores_it_as_epoch_0(
    tmp_path_factory, tiny_overrides, linear_run
):
    run_dir = run_tiny(tmp_path_factory, tiny_overrides, "fitted", "model.wide=true", "model.wide_weights=fitted")
    log, alone = train_log(run_dir), train_log(linear_run)[0]
    assert log[0]["epoch"] == 0 and log[0]["train_loss"] is None and [r["epoch"] for r in log[1:3]] == [1, 2]
    for metric in METRICS:
        assert log[0][metric] == pytest.approx(alone[metric], abs=1e-12)
    train = json.loads((run_dir / "manifest.json").read_text())["train"]
    assert train["epochs_run"] == len(log) - 1  # epoch 0 trains nothing
    best = next(record for record in log if record["epoch"] == train["best_epoch"])
    assert best["validation_macro_f1"] >= log[0]["validation_macro_f1"]  # never behind it on validation
    assert train["linear_kind"]["source"] == "epoch 0" and not train["linear_kind"]["network_trails"]
    page = render_run_page([run_dir])  # the curves start at epoch 0, drawn apart from epoch 1
    assert "<title>epoch 0: " in page and "<title>epoch 1: " in page


def test_the_fitted_starting_model_scores_exactly_as_the_linear_kind(trained_run: Path, tiny_overrides):
    config = load_config(TINY_CONFIG, [*tiny_overrides, "model.wide=true", "model.wide_weights=fitted"])
    run = RunDir(trained_run)
    model = build_training_start(config, run).model.eval()
    assert all(not network.classifier.weight.detach().any() for network in members(model))
    train, validation = (EncodedSplit.load(run.data_path(name)) for name in ("train", "validation"))
    linear = fitted_linear_model(config, run, train, len(run.load_labels()), validation)
    batch = collate(validation, torch.arange(min(len(validation), 40)).numpy())
    inputs = (batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
    with torch.no_grad():
        assert torch.allclose(model(*inputs).logits, linear(*inputs).logits, atol=1e-5)
    shares = score_split(model, validation, 64, attention=True).attention_share
    assert shares is not None and shares.max() < 1e-6  # the output layer's bias is no attention: the n-grams decide


def test_linear_c_auto_keeps_the_c_validation_prefers(trained_run: Path, tiny_overrides, monkeypatch):
    from han.training import fit_linear

    fit_rows = fit_linear._fit_rows

    def reversed_at_c_1(rows, train, num_classes, config, run, c):  # scikit-learn's default C, made worst
        weight, bias = fit_rows(rows, train, num_classes, config, run, c)
        return (-weight, -bias) if c == 1.0 else (weight, bias)

    monkeypatch.setattr(fit_linear, "_fit_rows", reversed_at_c_1)
    run = RunDir(trained_run)
    train, validation = (EncodedSplit.load(run.data_path(name)) for name in ("train", "validation"))
    labels = run.load_labels()

    def score(c: str) -> float:
        config = load_config(TINY_CONFIG, [*tiny_overrides, "model.kind=linear", f"model.linear_c={c}"])
        model = fitted_linear_model(config, run, train, len(labels), validation)
        return validation_record(model, validation, labels, config)["validation_macro_f1"]

    fixed = {c: score(str(c)) for c in LINEAR_C_CHOICES}
    assert LINEAR_C_CHOICES[0] == 1.0 and fixed[1.0] < 0.5 < max(fixed.values())  # the first choice is the bad one
    assert score("auto") == pytest.approx(max(fixed.values()), abs=1e-12)


def test_linear_c_auto_fits_side_by_side_the_same_numbers(trained_run: Path, tiny_overrides, tmp_path, monkeypatch):
    """The fits at each C run in forked workers, one per core, when there are several: nothing else changes."""
    import os

    from han.training import fit_linear

    log = tmp_path / "fitted_by.txt"
    record_callers(monkeypatch, fit_linear, "_fit_rows", log)
    run = RunDir(trained_run)
    train, validation = (EncodedSplit.load(run.data_path(name)) for name in ("train", "validation"))
    config = load_config(TINY_CONFIG, [*tiny_overrides, "model.kind=linear", "model.linear_c=auto"])
    fitted = {}
    for cores in (1, 2):
        monkeypatch.setattr("han.util.forked.cores_per_process", lambda cores=cores: cores)
        log.unlink(missing_ok=True)
        fitted[cores] = fitted_linear_model(config, run, train, len(run.load_labels()), validation).state_dict()
        pids = log.read_text().split()
        assert len(pids) == len(LINEAR_C_CHOICES)
        assert (str(os.getpid()) in pids) == (cores == 1)  # two cores: every fit in a worker
    assert fitted[1].keys() == fitted[2].keys()
    assert all(torch.equal(fitted[1][name], fitted[2][name]) for name in fitted[1])


def test_the_summary_says_when_the_network_trails_the_linear_kind(tmp_path, tiny_overrides):
    behind = [*tiny_overrides, "train.max_epochs=1", "train.lr=1e-6"]  # a network that has learnt nothing
    result = invoke("run", TINY_CONFIG, *behind, "--run-dir", tmp_path / "behind", check=True)
    output = " ".join(result.output.split())
    assert "han's linear kind on the same features: validation macro-f1" in output
    compare = f"`han compare {TINY_CONFIG} --models han,linear`"
    assert (
        f"the network trails the linear kind on validation macro-f1: compare them over seeds with {compare}" in output
    )
    off = invoke("run", TINY_CONFIG, *behind, "train.linear_baseline=false", "--run-dir", tmp_path / "off", check=True)
    assert "linear kind" not in off.output and manifest_linear(tmp_path / "off") is None
    assert "linear_kind" not in json.loads((tmp_path / "off" / "metrics.json").read_text())["validation"]


def test_patience_counts_from_the_networks_best_epoch_not_epoch_0():
    from han.training.train import best_network_epoch

    def record(epoch: int, f1: float, loss: float = 1.0) -> dict:
        return {"epoch": epoch, "validation_macro_f1": f1, "validation_loss": loss}

    history = [record(0, 0.9), record(1, 0.5), record(2, 0.7), record(3, 0.6)]
    assert best_network_epoch(history, "macro_f1")["epoch"] == 2  # epoch 0 is better, but not the network's
    assert best_network_epoch(history[:1], "macro_f1") is None
    assert best_network_epoch([record(1, 0.7, 0.5), record(2, 0.7, 0.4)], "macro_f1")["epoch"] == 2  # loss breaks ties


def test_a_report_of_a_run_that_kept_epoch_0_says_its_attention_took_no_part(run_copy: Path, tmp_path):
    run = RunDir(run_copy)
    note = "this run kept epoch 0, the fitted n-gram channel alone"
    report = invoke("report", run_copy, "--split", "test", "--limit", "3", "-o", tmp_path / "a.html", check=True)
    assert note not in " ".join(report.output.split())
    run.update_manifest(train={**run.read_manifest()["train"], "best_epoch": 0})
    for command in (["report", run_copy, "--split", "test", "--limit", "3"], ["corpus-report", run_copy]):
        shown = invoke(*command, "-o", tmp_path / f"{command[0]}.html", check=True)
        assert note in " ".join(shown.output.split())
    last = invoke("report", run_copy, "--split", "test", "--weights", "last", "-o", tmp_path / "b.html", check=True)
    assert note not in " ".join(last.output.split())  # the last epoch's weights are the network's


def test_out_of_fold_training_scores_come_from_classifiers_that_never_saw_the_document(
    trained_run: Path, tiny_overrides
):
    import numpy as np

    from han.models.ngrams import TfidfFeatures
    from han.training import fit_linear

    run = RunDir(trained_run)
    train = EncodedSplit.load(run.data_path("train"))
    oof = ["model.wide=true", "model.wide_weights=fitted", "model.wide_training_scores=out_of_fold"]
    config = load_config(TINY_CONFIG, [*tiny_overrides, *oof])
    table = fit_linear.ngram_table(train, run.load_vocab(), config.model)
    features = TfidfFeatures(len(run.load_vocab()), config.model.linear_ngrams, config.model.linear_sublinear_tf)
    features.set_table(table.keep, table.keys, table.idf)
    rows, labels, classes = fit_linear.tfidf_rows(features, train), train.labels, len(run.load_labels())
    scores = fit_linear.out_of_fold_scores(rows, labels, classes, config, run, 1.0)
    fold = np.random.default_rng(config.seed).permutation(len(labels)) % fit_linear.WIDE_FOLDS
    assert sorted(np.bincount(fold)) == sorted([len(labels) // 5 + (k < len(labels) % 5) for k in range(5)])
    for k in range(fit_linear.WIDE_FOLDS):  # fold k: scored by a classifier fitted on the other folds alone
        held, kept = fold == k, fold != k
        weight, _ = fit_linear._fit_rows(rows[kept], labels[kept], classes, config, run, 1.0)
        assert np.allclose(scores[held], rows[held] @ weight.numpy().T, atol=1e-6)
    in_sample, _ = fit_linear._fit_rows(rows, labels, classes, config, run, 1.0)
    own = rows @ in_sample.numpy().T
    true_class = np.arange(len(labels)), labels
    assert scores[true_class].mean() < own[true_class].mean()  # held out, a document's own class scores lower


def test_a_run_with_out_of_fold_training_scores_trains_on_them_and_starts_as_the_linear_kind(
    tmp_path_factory, tiny_overrides, linear_run, monkeypatch
):
    from han.models.hierarchical import HierarchicalAttentionNetwork

    seen = []
    forward = HierarchicalAttentionNetwork.forward

    def spy(self, *args, **kwargs):
        if self.training:
            seen.append(kwargs.get("wide_scores"))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(HierarchicalAttentionNetwork, "forward", spy)
    oof = ["model.wide=true", "model.wide_weights=fitted", "model.wide_training_scores=out_of_fold"]
    run_dir = run_tiny(tmp_path_factory, tiny_overrides, "oof", *oof)
    assert seen and all(scores is not None and scores.dtype == torch.float32 for scores in seen)
    log, alone = train_log(run_dir), train_log(linear_run)[0]
    for metric in METRICS:  # validation reads the classifier fitted on the whole training split: epoch 0 unchanged
        assert log[0][metric] == pytest.approx(alone[metric], abs=1e-12)


def test_held_fitted_weights_score_the_training_split_once_as_the_channel_would(trained_run: Path, tiny_overrides):
    import numpy as np

    from han.training.fit_linear import tfidf_rows
    from han.training.initial_model import build_training_start
    from han.training.wide_entries import training_entries, training_wide_scores

    config = load_config(TINY_CONFIG, [*tiny_overrides, "model.wide=true", "model.wide_weights=fitted"])
    run = RunDir(trained_run)
    train = EncodedSplit.load(run.data_path("train"))
    start = build_training_start(config, run, train_split=train)
    wide = start.model.wide
    assert start.fitted_c in LINEAR_C_CHOICES and start.training_rows is not None
    assert (start.training_rows != tfidf_rows(wide, train)).nnz == 0  # set-up's rows are the split's, read once
    scores = training_wide_scores(
        config, run, start.model, train, training_entries(start.model, train, start.training_rows), start.fitted_c
    )
    assert scores is not None and scores.shape == (len(train), wide.num_classes) and np.abs(scores).max() > 0
    with torch.no_grad():
        for indices in (np.arange(len(train)), np.array([5, 1, 5, 0])):
            batch = collate(train, indices)
            computed = wide(batch.word_ids, batch.sentence_lengths, batch.sentence_counts).numpy()  # (B, C)
            assert np.allclose(scores[indices], computed, rtol=1e-5, atol=1e-6)
    learnt = load_config(TINY_CONFIG, [*tiny_overrides, "model.wide=true", "model.wide_weights=learnt"])
    start = build_training_start(learnt, run, train_split=train)  # learnt weights change every step: no scores
    assert start.training_rows is None and start.fitted_c is None
    entries = training_entries(start.model, train)
    assert training_wide_scores(learnt, run, start.model, train, entries, start.fitted_c) is None


def test_a_fitted_channels_training_steps_get_its_scores_not_its_entries(tmp_path_factory, tiny_overrides, monkeypatch):
    from han.models.hierarchical import HierarchicalAttentionNetwork

    seen = []
    forward = HierarchicalAttentionNetwork.forward

    def spy(self, *args, **kwargs):
        if self.training:
            seen.append((kwargs.get("wide_scores"), kwargs.get("wide_entries")))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(HierarchicalAttentionNetwork, "forward", spy)
    run_tiny(tmp_path_factory, tiny_overrides, "held", "model.wide=true", "model.wide_weights=fitted")
    assert seen and all(scores is not None and entries is None for scores, entries in seen)


@pytest.mark.parametrize(
    "overrides", [["model.wide_weights=learnt"], ["model.wide=false"], ["model.ensemble=2"]], ids=str
)
def test_out_of_fold_training_scores_do_not_apply_without_a_single_fitted_channel(
    trained_run: Path, tiny_overrides, overrides, caplog
):
    import logging

    from han.training.initial_model import build_training_start
    from han.training.wide_entries import training_entries, training_wide_scores

    setting = ["model.wide=true", "model.wide_weights=fitted", "model.wide_training_scores=calibrated"]
    config = load_config(TINY_CONFIG, [*tiny_overrides, *setting, *overrides])  # a config may hold it: R8's does
    run = RunDir(trained_run)
    train = EncodedSplit.load(run.data_path("train"))
    start = build_training_start(config, run, train_split=train)
    entries = training_entries(start.model, train, start.training_rows)
    with caplog.at_level(logging.INFO, logger="han.training.wide_entries"):
        assert training_wide_scores(config, run, start.model, train, entries, start.fitted_c) is None
    assert "does not apply" in caplog.text


def test_the_calibrated_scale_is_the_factor_the_labels_were_drawn_at():
    import numpy as np

    from han.training.wide_entries import calibrated_scale

    rng = np.random.default_rng(0)
    margins = rng.normal(size=(20_000, 4))
    drawn = torch.softmax(torch.from_numpy(3.0 * margins), dim=1)
    labels = torch.multinomial(drawn, 1, generator=torch.Generator().manual_seed(0))[:, 0].numpy()
    assert calibrated_scale(margins, labels) == pytest.approx(3.0, rel=0.05)
    sets = (rng.random((20_000, 4)) < 1 / (1 + np.exp(-0.5 * margins))).astype(np.int8)  # label sets, at 0.5
    assert calibrated_scale(margins, sets) == pytest.approx(0.5, rel=0.05)


def test_a_calibrated_run_starts_deciding_as_the_linear_kind(tmp_path_factory, tiny_overrides, linear_run):
    calibrated = ["model.wide=true", "model.wide_weights=fitted", "model.wide_training_scores=calibrated"]
    run_dir = run_tiny(tmp_path_factory, tiny_overrides, "calibrated", *calibrated)
    log, alone = train_log(run_dir), train_log(linear_run)[0]
    for metric in ("validation_accuracy", "validation_macro_f1"):  # scaled scores: the same decisions
        assert log[0][metric] == pytest.approx(alone[metric], abs=1e-12)
    assert log[0]["validation_loss"] != pytest.approx(alone["validation_loss"])  # with another confidence


def test_out_of_fold_scores_of_a_split_too_small_to_fold_are_zero_where_a_fold_sees_one_class(tiny_overrides):
    import numpy as np
    from scipy.sparse import csr_matrix

    from han.training.fit_linear import out_of_fold_scores

    config = load_config(TINY_CONFIG, tiny_overrides)
    rows = csr_matrix(np.eye(6)[:, :4] + 0.1)  # six documents, one of class 1
    scores = out_of_fold_scores(rows, np.array([0, 0, 0, 0, 0, 1]), 2, config, None, 1.0)  # type: ignore[arg-type]
    assert np.array_equal(scores[5], [0.0, 0.0])  # held out, its fold's training part holds class 0 alone
    assert np.all(scores[:5, 1] < 0)  # the others were scored by classifiers that had seen both classes


def test_a_network_epoch_replaces_the_linear_start_only_beyond_chance(tmp_path_factory, tiny_overrides):
    """train.beat_linear_start significantly (the default): every network epoch is tested against epoch 0, and
    only one that beats it may be kept; the start's weights are saved to test a resumed run's epochs against."""
    from safetensors.torch import load_file

    from han.serving.trained import load_trained_run

    run_dir = run_tiny(tmp_path_factory, tiny_overrides, "beyond", "model.wide=true", "model.wide_weights=fitted")
    log = train_log(run_dir)
    network = [record for record in log if record["epoch"] > 0]
    assert network and all({"gain_over_start", "p_over_start", "beats_start"} <= record.keys() for record in network)
    assert all(r["beats_start"] == (r["gain_over_start"] > 0 and r["p_over_start"] < 0.05) for r in network)
    # the tiny corpus's linear start is perfect on validation: no epoch can beat it, though some tie it with a
    # lower loss (which `at_all` keeps)
    assert not any(r["beats_start"] for r in network)
    assert any(r["validation_macro_f1"] == log[0]["validation_macro_f1"] for r in network)
    train = json.loads((run_dir / "manifest.json").read_text())["train"]
    assert train["best_epoch"] == 0
    start, best = (load_file(str(run_dir / "model" / f"{name}.safetensors")) for name in ("start", "best"))
    assert start.keys() == best.keys() and all(torch.equal(start[k], best[k]) for k in start)
    assert "model/start.safetensors" in json.loads((run_dir / "manifest.json").read_text())["artifacts"]
    card = " ".join((run_dir / "MODEL_CARD.md").read_text().split())
    assert "the fitted n-gram channel alone (no epoch of the network beat it on validation beyond chance)" in card
    trained = load_trained_run(run_dir)
    validation = trained.run.load_split("validation")
    probabilities = score_split(trained.model, validation, 64).probabilities
    assert float((probabilities.argmax(1) == validation.labels).mean()) == log[0]["validation_accuracy"]
    any_lead = run_tiny(
        tmp_path_factory,
        tiny_overrides,
        "at_all",
        "model.wide=true",
        "model.wide_weights=fitted",
        "train.beat_linear_start=at_all",
    )
    kept = json.loads((any_lead / "manifest.json").read_text())["train"]["best_epoch"]
    assert kept > 0 and "gain_over_start" not in train_log(any_lead)[kept]
    assert not (any_lead / "model" / "start.safetensors").exists()
    assert "n-gram channel alone" not in (any_lead / "MODEL_CARD.md").read_text()
    fitted_at_all = ["model.wide=true", "model.wide_weights=fitted", "train.beat_linear_start=at_all"]
    invoke("train", TINY_CONFIG, *tiny_overrides, *fitted_at_all, "--run-dir", run_dir, "--overwrite", check=True)
    assert not (run_dir / "model" / "start.safetensors").exists()  # han's own file, gone with the results it served


def test_only_an_epoch_that_beats_the_start_replaces_it():
    from han.training.train import replaces_kept_epoch

    def record(epoch: int, f1: float, beats: bool | None = None) -> dict:
        tested = {} if beats is None else {"beats_start": beats}
        return {"epoch": epoch, "validation_macro_f1": f1, "validation_loss": 1.0, **tested}

    start = record(0, 0.90)
    assert not replaces_kept_epoch(record(1, 0.93, beats=False), start, "macro_f1")
    assert replaces_kept_epoch(record(1, 0.93, beats=True), start, "macro_f1")
    assert replaces_kept_epoch(record(1, 0.93), start, "macro_f1")  # untested (at_all): any lead
    assert not replaces_kept_epoch(record(2, 0.95, beats=False), record(1, 0.93, beats=True), "macro_f1")
    assert not replaces_kept_epoch(record(2, 0.92, beats=True), record(1, 0.93, beats=True), "macro_f1")


def test_the_summary_says_why_a_run_kept_the_start_over_a_network_that_led_it(capsys):
    from pipelines import ui

    history = [
        {"epoch": 0},
        {"epoch": 1, "gain_over_start": 0.004, "p_over_start": 0.62, "beats_start": False},
        {"epoch": 2, "gain_over_start": -0.01, "p_over_start": 0.3, "beats_start": False},
    ]
    ui.show_start_kept(history, best_epoch=0)
    shown = " ".join(capsys.readouterr().out.split())
    assert "kept epoch 0: the network's epoch 1 led it by +0.0040 on validation, within chance (p = 0.62)" in shown
    ui.show_start_kept(history, best_epoch=1)
    ui.show_start_kept([{"epoch": 0}, {"epoch": 1, "gain_over_start": -0.01, "p_over_start": 1.0}], best_epoch=0)
    assert capsys.readouterr().out == ""
