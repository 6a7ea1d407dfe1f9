"""`model.ensemble`: several networks of one kind trained together, each on its own loss, scored as the mean
of their logits and attention (han/ensemble.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY_CONFIG, random_batch
from han.config import ModelConfig, load_config
from han.ensemble import Ensemble, members
from han.errors import ConfigError
from han.model import HANOutput
from han.networks import build_model, parameter_counts

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
    assert isinstance(output, HANOutput) and output.member_logits is not None
    assert output.member_logits.shape == (3, 4, CLASSES)
    for k, member_output in enumerate(alone):
        assert torch.allclose(output.member_logits[k], member_output.logits)
    assert torch.allclose(output.logits, torch.stack([o.logits for o in alone]).mean(0))
    mean_words = torch.stack([o.word_attention for o in alone]).mean(0)
    assert torch.allclose(output.word_attention, mean_words)
    assert torch.allclose(output.sentence_attention, torch.stack([o.sentence_attention for o in alone]).mean(0))
    # still a distribution over each document's sentences
    assert torch.allclose(output.sentence_attention.sum(1), torch.ones(4))
    assert not torch.allclose(alone[0].logits, alone[1].logits)


def test_ensemble_parameters_and_memory_count_every_member():
    one = parameter_counts(ModelConfig(**SMALL), VOCAB, 6, CLASSES)
    three = parameter_counts(ModelConfig(**SMALL, ensemble=3), VOCAB, 6, CLASSES)
    assert three == {setting: 3 * count for setting, count in one.items()}


def test_kind_linear_refuses_an_ensemble():
    with pytest.raises(ConfigError, match=r"model\.ensemble"):
        load_config(TINY_CONFIG, ["data.source=x.csv", "model.kind=linear", "model.ensemble=2"])


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory, tiny_overrides) -> Path:
    from han.runner import run_all

    run_dir = tmp_path_factory.mktemp("ensemble") / "run"
    overrides = [*tiny_overrides, "model.ensemble=2", "model.wide=true", "model.wide_weights=fitted"]
    run_all(load_config(TINY_CONFIG, overrides), run_dir)
    return run_dir


def test_an_ensemble_run_trains_each_member_and_evaluates_from_its_directory(ensemble_run: Path, trained_run: Path):
    from safetensors.torch import load_file

    from han.scoring import predict_probabilities
    from han.trained import load_trained_run

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
