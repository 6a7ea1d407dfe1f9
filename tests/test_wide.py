"""Wide and deep (`model.wide`): TF-IDF n-gram scores beside the HAN, added to its logits (han/models/ngrams.py): a linear
classifier fitted before training and held fixed (`model.wide_weights: fitted`) or weights learnt with the network."""

from __future__ import annotations

import collections
import json
import logging
import math
from pathlib import Path

import pytest
import torch

from conftest import TINY_CONFIG, random_batch
from han.config import ModelConfig, TrainConfig, load_config
from han.errors import ConfigError
from han.models.hierarchical import HANOutput, HierarchicalAttentionNetwork
from han.models.linear import TfidfLinearModel
from han.models.ngrams import WideChannel, _feature_counts_torch, feature_counts, ngram_keys
from han.store.weights import load_weights, save_weights
from han.training.optim import LazyAdam, make_optimizer, wide_learning_rate

VOCAB, CLASSES = 40, 3
SMALL = {"word_hidden": 5, "sentence_hidden": 4, "attention_dim": 3, "dropout": 0.0}


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return random_batch(VOCAB, seed)


def fitted_table(word_ids: torch.Tensor, lengths: torch.Tensor, counts: torch.Tensor, max_n: int = 2):
    """A table holding every n-gram of the batch, with made-up idf values."""
    real = torch.arange(word_ids.size(1))[None] < lengths[:, None]
    document = torch.repeat_interleave(torch.repeat_interleave(torch.arange(counts.numel()), counts), lengths)
    _, keys = ngram_keys(word_ids[real], document, VOCAB, max_n)
    keys = torch.unique(keys)
    idf = 1 + torch.arange(keys.numel(), dtype=torch.float64) / keys.numel()
    return torch.ones(VOCAB, dtype=torch.bool), keys, idf


def test_wide_scores_are_the_linear_kinds_tfidf_times_the_weights():
    word_ids, lengths, counts = batch()
    keep, keys, idf = fitted_table(word_ids, lengths, counts)
    weight = torch.randn(CLASSES, keys.numel())
    linear = TfidfLinearModel(VOCAB, CLASSES, ModelConfig(kind="linear"))
    linear.set_fitted(keep, keys, idf, weight, torch.zeros(CLASSES))
    wide = WideChannel(VOCAB, CLASSES, max_n=2, sublinear_tf=False)
    wide.set_table(keep, keys, idf)
    with torch.no_grad():
        wide.scores.weight.copy_(weight.t())
    assert torch.allclose(wide(word_ids, lengths, counts), linear(word_ids, lengths, counts).logits, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_feature_counts_on_the_cpu_are_the_torch_paths_and_count_each_documents_ngrams(seed):
    generator = torch.Generator().manual_seed(seed)
    document = torch.sort(torch.randint(0, 7, (400,), generator=generator)).values  # (K,) non-decreasing
    document = torch.cat([document, document[::2]])  # ngram_keys gives unigrams' documents, then bigrams'
    key = torch.randint(0, 60, (document.numel(),), generator=generator)  # (K,) n-gram keys, many repeated
    table = torch.unique(torch.randint(0, 60, (30,), generator=generator))  # sorted; some keys are not in it
    if seed % 2:
        table = table[: table.numel() // 2]  # many keys above the table's largest
    row, column, count = feature_counts(document, key, table)  # the CPU (numpy) path
    expected = collections.Counter(
        (int(d), int(torch.searchsorted(table, k))) for d, k in zip(document, key, strict=True) if k in table
    )
    assert dict(zip(zip(row.tolist(), column.tolist(), strict=True), count.tolist(), strict=True)) == expected
    for got, want in zip((row, column, count), _feature_counts_torch(document, key, table), strict=True):
        assert torch.equal(got, want)  # the same entries, in the same order (by document, then column)
    assert all(t.numel() == 0 for t in feature_counts(document, key, table[:0]))  # no table yet: nothing known


def test_a_batch_without_a_token_the_features_read_scores_zero():
    channel = WideChannel(vocab_size=10, num_classes=3, max_n=2, sublinear_tf=False)
    reads = torch.tensor([False] + [True] * 8 + [False])  # id 9 (say, punctuation under linear_tokens: words) unread
    channel.set_table(reads, torch.tensor([1, 2, 3]), torch.ones(3))
    word_ids, lengths, counts = torch.tensor([[9, 9, 9], [9, 0, 0]]), torch.tensor([3, 1]), torch.tensor([1, 1])
    assert torch.equal(channel(word_ids, lengths, counts), torch.zeros(2, 3))
    assert ngram_keys(torch.tensor([], dtype=torch.int64), torch.tensor([], dtype=torch.int64), 10, 2)[1].numel() == 0


def test_wide_gradient_touches_only_the_batchs_ngrams():
    word_ids, lengths, counts = batch()
    keep, keys, idf = fitted_table(word_ids[:3], lengths[:3], torch.tensor([2, 1]))  # the table knows 2 documents
    extra = torch.tensor([10**9, 10**9 + 1])  # two n-grams no document holds
    wide = WideChannel(VOCAB, CLASSES, max_n=2, sublinear_tf=False, sparse=True)
    wide.set_table(keep, torch.cat([keys, extra]), torch.cat([idf, torch.ones(2, dtype=torch.float64)]))
    wide(word_ids, lengths, counts).sum().backward()
    grad = wide.scores.weight.grad
    assert grad is not None and grad.is_sparse
    touched = set(grad.coalesce().indices()[0].tolist())
    assert touched and not touched & {keys.numel(), keys.numel() + 1}  # the unseen n-grams get no gradient


def test_han_with_a_zero_wide_channel_is_the_han_and_reports_the_wide_part():
    word_ids, lengths, counts = batch(1)
    torch.manual_seed(3)
    plain = HierarchicalAttentionNetwork(VOCAB, 6, CLASSES, ModelConfig(**SMALL)).eval()
    torch.manual_seed(3)
    wide = HierarchicalAttentionNetwork(VOCAB, 6, CLASSES, ModelConfig(**SMALL, wide=True)).eval()
    assert wide.wide is not None
    wide.wide.set_table(*fitted_table(word_ids, lengths, counts))
    out_plain, out_wide = plain(word_ids, lengths, counts), wide(word_ids, lengths, counts)
    assert isinstance(out_plain, HANOutput) and isinstance(out_wide, HANOutput)
    assert torch.equal(out_plain.logits, out_wide.logits)  # same draws at init; the wide weights start at zero
    with torch.no_grad():
        wide.wide.scores.weight.normal_()
    out_wide = wide(word_ids, lengths, counts)
    assert out_wide.wide_logits is not None and out_wide.wide_logits.abs().sum() > 0
    assert torch.allclose(out_wide.logits, out_plain.logits + out_wide.wide_logits)


def test_wide_weights_load_into_a_fresh_model(tmp_path: Path):
    word_ids, lengths, counts = batch(2)
    config = ModelConfig(**SMALL, wide=True)
    model = HierarchicalAttentionNetwork(VOCAB, 6, CLASSES, config).eval()
    assert model.wide is not None
    model.wide.set_table(*fitted_table(word_ids, lengths, counts))
    with torch.no_grad():
        model.wide.scores.weight.normal_()
    save_weights(model, tmp_path / "w.safetensors")
    fresh = HierarchicalAttentionNetwork(VOCAB, 6, CLASSES, config).eval()  # knows no n-gram yet
    load_weights(fresh, tmp_path / "w.safetensors")
    assert torch.equal(fresh(word_ids, lengths, counts).logits, model(word_ids, lengths, counts).logits)


def test_wide_weights_get_their_own_learning_rate():
    model = HierarchicalAttentionNetwork(VOCAB, 6, CLASSES, ModelConfig(**SMALL, wide=True), sparse_embedding=True)
    optimizer = make_optimizer(model, TrainConfig(lr=0.001, wide_lr=0.05), 100)
    assert isinstance(optimizer, LazyAdam)
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert model.wide is not None and rates[id(model.wide.scores.weight)] == 0.05
    assert rates[id(model.classifier.weight)] == 0.001 and len(rates) == len(list(model.parameters()))


@pytest.mark.parametrize(
    ("documents", "batch_size", "steps"), [(4_936, 32, 155), (1_602, 32, 51), (64, 64, 1), (65, 64, 2), (1, 8, 1)]
)
def test_auto_wide_learning_rate_is_one_over_the_steps_of_an_epoch(documents, batch_size, steps):
    config = TrainConfig(lr=0.001, wide_lr="auto", batch_size=batch_size)
    assert wide_learning_rate(config, documents) == 1.0 / steps
    assert wide_learning_rate(TrainConfig(wide_lr=0.05, batch_size=batch_size), documents) == 0.05  # a number is kept
    model = HierarchicalAttentionNetwork(VOCAB, 6, CLASSES, ModelConfig(**SMALL, wide=True), sparse_embedding=True)
    rates = {
        id(p): group["lr"] for group in make_optimizer(model, config, documents).param_groups for p in group["params"]
    }
    assert model.wide is not None and rates[id(model.wide.scores.weight)] == 1.0 / steps
    assert rates[id(model.classifier.weight)] == 0.001


def test_wide_lr_setting_takes_auto_or_a_positive_number():
    assert load_config(TINY_CONFIG, ["train.wide_lr=auto"]).train.wide_lr == "auto"
    assert load_config(TINY_CONFIG, ["train.wide_lr=0.003"]).train.wide_lr == 0.003
    for bad in ("0", "-0.1", "fast"):
        with pytest.raises(ConfigError, match="wide_lr"):
            load_config(TINY_CONFIG, [f"train.wide_lr={bad}"])


def test_held_wide_weights_are_left_out_of_the_optimizer():
    model = HierarchicalAttentionNetwork(VOCAB, 6, CLASSES, ModelConfig(**SMALL, wide=True), sparse_embedding=True)
    assert model.wide is not None
    model.wide.set_table(*fitted_table(*batch()))
    fitted = torch.randn(CLASSES, model.wide.num_features)
    model.wide.hold_weights(fitted)
    assert torch.equal(model.wide.scores.weight, fitted.T) and not model.wide.scores.weight.requires_grad
    optimizer = make_optimizer(model, TrainConfig(lr=0.001, wide_lr=0.05), 100)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model.wide.scores.weight) not in optimized and len(optimizer.param_groups) == 1
    assert optimized == {id(p) for name, p in model.named_parameters() if not name.startswith("wide.")}


def run_tiny(tmp_path_factory, tiny_overrides, name: str, *overrides: str) -> Path:
    from han.workflows.run import run_all

    run_dir = tmp_path_factory.mktemp(name) / "run"
    run_all(load_config(TINY_CONFIG, [*tiny_overrides, *overrides]), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory, tiny_overrides) -> Path:
    return run_tiny(tmp_path_factory, tiny_overrides, "wide", "model.wide=true", "model.wide_weights=learnt")


def test_a_fitted_wide_channel_holds_the_linear_kinds_fit_through_training(tmp_path_factory, tiny_overrides):
    from safetensors.torch import load_file

    fitted = run_tiny(tmp_path_factory, tiny_overrides, "fitted", "model.wide=true", "model.wide_weights=fitted")
    linear = run_tiny(tmp_path_factory, tiny_overrides, "linear", "model.kind=linear")
    wide, plain = (load_file(str(run / "model" / "best.safetensors")) for run in (fitted, linear))
    assert torch.equal(wide["wide.feature_keys"], plain["feature_keys"])
    assert torch.equal(wide["wide.scores.weight"], plain["weight"].T)  # the linear kind's weights, unmoved
    assert plain["weight"].abs().max() > 0
    log = [json.loads(line) for line in (fitted / "train_log.jsonl").read_text().splitlines()]
    assert len(log) >= 2  # the network trained for epochs around the held n-gram weights


def test_a_learnt_wide_run_trains_its_ngram_weights_and_evaluates_from_its_directory(wide_run: Path):
    from safetensors.torch import load_file

    from han.evaluation.scoring import predict_probabilities
    from han.serving.trained import load_trained_run

    weights = load_file(str(wide_run / "model" / "best.safetensors"))
    assert weights["wide.feature_keys"].numel() > 100 and weights["wide.scores.weight"].abs().max() > 0
    trained = load_trained_run(wide_run)
    split = trained.run.load_split("test")
    probabilities = predict_probabilities(trained.model, split, 64)
    accuracy = float((probabilities.argmax(1) == split.labels).mean())
    metrics = json.loads((wide_run / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test"]["accuracy"])


def test_attention_share_is_each_paths_push_on_the_top_class():
    from han.evaluation.scoring import attention_share

    wide = torch.tensor([[0.0, 0.0, 0.0], [2.0, -1.0, -1.0], [1.0, -0.5, -0.5]])
    deep = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, -0.5, -0.5]])
    shares = attention_share(deep + wide, wide)
    assert shares.tolist() == pytest.approx([1.0, 0.0, 0.5])  # attention alone; n-grams alone; half each
    bias = torch.tensor([0.5, -2.0, 1.0])  # the same for every document: neither path's push
    assert attention_share(deep + wide + bias, wide, bias).tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert attention_share(wide + bias, wide, bias).tolist() == pytest.approx([0.0, 0.0, 0.0])


def test_a_wide_runs_report_gives_the_attention_paths_share(wide_run: Path):
    from han.reports.documents import document_record, document_views
    from han.reports.pages import _share_note
    from han.serving.trained import load_trained_run

    trained = load_trained_run(wide_run)
    views = document_views(trained, ["Stocks fell as the bank raised rates.", "The team won the cup final."], None)
    for view in views:
        assert view.attention_share is not None and 0.0 <= view.attention_share <= 1.0
        record = document_record(view, trained.label_names)
        assert record["attention_share"] == pytest.approx(view.attention_share, abs=1e-6)
        assert "attention path" in _share_note(view)[0]


def test_a_run_resolves_auto_from_its_training_split(tmp_path_factory, tiny_overrides, caplog):
    with caplog.at_level(logging.INFO, logger="han.training.train"):
        learnt = ("model.wide=true", "model.wide_weights=learnt", "train.wide_lr=auto")
        run_dir = run_tiny(tmp_path_factory, tiny_overrides, "auto", *learnt)
    documents = json.loads((run_dir / "manifest.json").read_text())["preprocess"]["documents"]["train"]
    train = json.loads((run_dir / "config.json").read_text())["train"]  # the resolved config keeps the setting
    batch_size = train["batch_size"]
    assert train["wide_lr"] == "auto" and documents > batch_size
    expected = 1.0 / math.ceil(documents / batch_size)
    assert f"wide channel learning rate {expected:.4g} (auto: 1 / steps an epoch)" in caplog.text


def test_the_training_splits_entries_read_once_are_those_the_channel_computes(wide_run: Path, trained_run: Path):
    import numpy as np

    from han.serving.trained import load_trained_run
    from han.text.batching import collate
    from han.training.wide_entries import training_entries

    trained = load_trained_run(wide_run)
    split = trained.run.load_split("train")
    entries = training_entries(trained.model, split)
    assert entries is not None
    for indices in (np.arange(len(split)), np.array([7, 2, 9, 2]), np.arange(len(split))[::-3]):
        batch = collate(split, indices)
        computed = trained.model.wide.features(batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
        for read, made in zip(entries.batch(indices, torch.device("cpu")), computed, strict=True):
            assert torch.equal(read, made)  # the same entries, in the same order, to the bit
    assert training_entries(load_trained_run(trained_run).model, split) is None  # no channel, nothing to read
