"""`model.ensemble`: several networks of one kind trained together, each on its own loss, scored as the mean
of their logits and attention (han/models/ensemble.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY_CONFIG, random_batch
from han.config import ModelConfig, load_config
from han.errors import ConfigError
from han.models.build import build_model, parameter_counts
from han.models.ensemble import Ensemble, members
from han.models.hierarchical import HANOutput

VOCAB, CLASSES = 40, 3
SMALL = {"word_hidden": 5, "sentence_hidden": 4, "attention_dim": 3, "dropout": 0.0, "word_dropout": 0.0}


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return random_batch(VOCAB, seed)


def test_member_zero_is_the_single_network_of_the_seed_and_the_members_differ():
    torch.manual_seed(7)
    single = build_model(ModelConfig(**SMALL), VOCAB, 6, CLASSES)
    torch.manual_seed(7)
    ensemble = build_model(ModelConfig(**SMALL, ensemble=3), VOCAB, 6, CLASSES)
    assert isinstance(ensemble, Ensemble) and len(members(ensemble)) == 3 and members(single) == [single]
    first, second = (member.state_dict() for member in members(ensemble)[:2])
    for name, tensor in single.state_dict().items():
        assert torch.equal(tensor, first[name]), name
    assert not torch.equal(first["classifier.weight"], second["classifier.weight"])


def test_the_ensemble_scores_the_mean_of_its_members_logits_and_attention():
    ensemble = build_model(ModelConfig(**SMALL, ensemble=3), VOCAB, 6, CLASSES).eval()
    word_ids, lengths, counts = batch()
    output = ensemble(word_ids, lengths, counts)
    alone = [member(word_ids, lengths, counts) for member in members(ensemble)]
    assert isinstance(output, HANOutput)
    assert torch.allclose(output.logits, torch.stack([o.logits for o in alone]).mean(0))
    mean_words = torch.stack([o.word_attention for o in alone]).mean(0)
    assert torch.allclose(output.word_attention, mean_words)
    assert torch.allclose(output.sentence_attention, torch.stack([o.sentence_attention for o in alone]).mean(0))
    # still a distribution over each document's sentences
    assert torch.allclose(output.sentence_attention.sum(1), torch.ones(4))
    assert not torch.allclose(alone[0].logits, alone[1].logits)


def test_in_training_each_member_reads_only_its_own_batch():
    ensemble = build_model(ModelConfig(**SMALL, ensemble=2), VOCAB, 6, CLASSES).eval()
    first, second = batch(1), batch(2)
    counts = (2, 4)  # the second batch's first four documents
    sentences = (int(first[2][:2].sum()), int(second[2][:4].sum()))
    word_ids = torch.zeros(sum(sentences), 6, dtype=torch.int64)
    word_ids[: sentences[0]] = first[0][: sentences[0]]
    word_ids[sentences[0] :] = second[0][: sentences[1]]
    lengths = torch.cat([first[1][: sentences[0]], second[1][: sentences[1]]])
    document_counts = torch.cat([first[2][:2], second[2][:4]])
    logits = ensemble(word_ids, lengths, document_counts, list(counts)).logits
    member_zero, member_one = members(ensemble)
    alone_zero = member_zero(first[0][: sentences[0]], first[1][: sentences[0]], first[2][:2]).logits
    alone_one = member_one(second[0][: sentences[1]], second[1][: sentences[1]], second[2][:4]).logits
    assert logits.shape == (6, CLASSES)
    assert torch.allclose(logits[:2], alone_zero, atol=1e-6) and torch.allclose(logits[2:], alone_one, atol=1e-6)


def test_ensemble_parameters_and_memory_count_every_member():
    one = parameter_counts(ModelConfig(**SMALL), VOCAB, 6, CLASSES)
    three = parameter_counts(ModelConfig(**SMALL, ensemble=3), VOCAB, 6, CLASSES)
    assert three == {setting: 3 * count for setting, count in one.items()}


def test_kind_linear_refuses_an_ensemble():
    with pytest.raises(ConfigError, match=r"model\.ensemble"):
        load_config(TINY_CONFIG, ["data.source=x.csv", "model.kind=linear", "model.ensemble=2"])


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory, tiny_overrides) -> Path:
    from han.workflows.run import run_all

    run_dir = tmp_path_factory.mktemp("ensemble") / "run"
    overrides = [
        *tiny_overrides,
        "model.ensemble=2",
        "model.wide=true",
        "model.wide_weights=fitted",
        "train.beat_linear_start=at_all",  # the tiny corpus's linear start is perfect: keep the trained members
    ]
    run_all(load_config(TINY_CONFIG, overrides), run_dir)
    return run_dir


def test_an_ensemble_run_trains_each_member_and_evaluates_from_its_directory(ensemble_run: Path, trained_run: Path):
    from safetensors.torch import load_file

    from han.evaluation.scoring import predict_probabilities
    from han.serving.trained import load_trained_run

    weights = load_file(str(ensemble_run / "model" / "best.safetensors"))
    single = load_file(str(trained_run / "model" / "best.safetensors"))
    assert {name.split(".", 2)[2] for name in weights if name.startswith("members.1.")} >= set(single)
    # both members trained away from their (different) starting points, and hold the same fitted n-gram weights
    assert not torch.equal(weights["members.0.classifier.weight"], weights["members.1.classifier.weight"])
    assert torch.equal(weights["members.0.wide.scores.weight"], weights["members.1.wide.scores.weight"])
    trained = load_trained_run(ensemble_run)
    split = trained.run.load_split("test")
    probabilities = predict_probabilities(trained.model, split, 64)
    accuracy = float((probabilities.argmax(1) == split.labels).mean())
    metrics = json.loads((ensemble_run / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test"]["accuracy"]) and accuracy > 0.8


@pytest.mark.slow
def test_an_interrupted_ensemble_resumes_to_the_uninterrupted_weights(tmp_path, tiny_overrides):
    """Every member's weights and optimizer state (its learnt n-gram weights too) survive a stop and resume."""
    from test_resume import RESUME_OVERRIDES, train_straight_and_resumed

    from han.text.preprocess import preprocess

    config = load_config(
        TINY_CONFIG,
        [*tiny_overrides, *RESUME_OVERRIDES, "model.ensemble=2", "model.wide=true", "model.wide_weights=learnt"],
    )
    preprocessed = tmp_path / "preprocessed"
    preprocess(config, preprocessed)
    train_straight_and_resumed(config, preprocessed, tmp_path, 30)


def test_an_ensemble_runs_report_shows_the_members_mean_attention(ensemble_run: Path):
    from han.reports.documents import document_views
    from han.serving.trained import load_trained_run

    trained = load_trained_run(ensemble_run)
    text = "Stocks fell as the bank raised rates. The team won the cup final."
    (view,) = document_views(trained, [text], None)
    networks = members(trained.model)
    assert view.attention_share is not None and 0.0 <= view.attention_share <= 1.0
    sentence_weights = [sentence.weight for sentence in view.sentences]
    assert sum(sentence_weights) == pytest.approx(1.0, abs=1e-5) and len(networks) == 2


@pytest.mark.slow
def test_member_zero_trains_exactly_as_the_single_network_and_the_others_read_other_orders(
    tmp_path, tiny_overrides, monkeypatch
):
    """Without dropout, an ensemble's first member ends with the single network's weights: each member gets the
    gradient it would get alone. The others read the epoch's batches in orders of their own."""
    import shutil

    from safetensors.torch import load_file

    import han.training.train
    from han.text.preprocess import preprocess
    from han.training.train import member_batch_orders, train

    collated: list[list[int]] = []

    def spy(split, indices):
        collated.append(indices.tolist())
        return han.text.batching.collate(split, indices)

    monkeypatch.setattr(han.training.train, "collate", spy)

    plain = [*tiny_overrides, "model.dropout=0", "model.word_dropout=0", "model.wide=true", "model.wide_weights=learnt"]
    single, ensemble = tmp_path / "single", tmp_path / "ensemble"
    preprocess(load_config(TINY_CONFIG, plain), single)
    shutil.copytree(single, ensemble)
    train(load_config(TINY_CONFIG, plain), single)
    single_batches, collated[:] = list(collated), []
    train(load_config(TINY_CONFIG, [*plain, "model.ensemble=3"]), ensemble)
    # each step's batch is the three members' batches one after another; member 0's is the single network's
    assert len(collated) == len(single_batches)
    for step, (ours, theirs) in enumerate(zip(collated, single_batches, strict=True)):
        assert ours[: len(theirs)] == theirs, step
    rest = [ours[len(theirs) :] for ours, theirs in zip(collated, single_batches, strict=True)]
    assert sum(r != theirs[: len(r)] for r, theirs in zip(rest, single_batches, strict=True)) > len(rest) // 2
    assert all(len(r) >= 2 for r in rest)  # two more members' batches
    alone = load_file(str(single / "model" / "last.safetensors"))
    together = load_file(str(ensemble / "model" / "last.safetensors"))
    for name, tensor in alone.items():
        assert torch.equal(together[f"members.0.{name}"], tensor), name
    assert not torch.equal(together["members.1.classifier.weight"], together["members.2.classifier.weight"])
    orders = member_batch_orders(3, 20, seed=0, epoch=1)
    assert orders[0].tolist() == list(range(20)) and sorted(orders[1].tolist()) == list(range(20))
    assert orders[1].tolist() != orders[2].tolist() != list(range(20))
    assert [o.tolist() for o in orders] == [o.tolist() for o in member_batch_orders(3, 20, seed=0, epoch=1)]
    assert orders[1].tolist() != member_batch_orders(3, 20, seed=0, epoch=2)[1].tolist()
