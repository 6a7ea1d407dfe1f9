"""Class weights of single-label training (`train.class_weight`) and the skew warning of `han data inspect`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.sparse import csr_matrix

from conftest import TINY_CONFIG, invoke, make_document, make_multilabel_corpus, write_csv
from han.config import load_config
from han.errors import ConfigError
from han.text.inspection import IMBALANCE_RATIO, label_imbalance
from han.training.distributed import batch_loss
from han.training.fit_linear import _fit_classes
from han.training.weighting import class_weights, named_class_weights
from han.workflows.run import run_all

SKEWED = {"sport": 60, "tech": 20, "food": 5}  # training documents per label: 12x, food the rarest


def labelled_rows(train_counts: dict[str, int], held_out: int = 6, seed: int = 0) -> list[dict[str, str]]:
    """Synthetic documents with `train_counts` training documents per label and `held_out` of each label
    in validation and in test."""
    rng = random.Random(seed)
    rows = []
    for split, counts in (
        ("train", train_counts),
        ("validation", dict.fromkeys(train_counts, held_out)),
        ("test", dict.fromkeys(train_counts, held_out)),
    ):
        for label, count in counts.items():
            rows += [{"text": make_document(rng, label), "label": label, "split": split} for _ in range(count)]
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def skewed_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("skewed") / "skewed.csv", labelled_rows(SKEWED))


# --- the weights ------------------------------------------------------------------------------------


def test_balanced_weights_are_scikit_learns_and_average_one_over_training_documents():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0] * 60 + [1] * 20 + [2] * 5)
    weights = class_weights(labels, 3, "balanced")
    assert weights is not None
    assert weights.tolist() == pytest.approx([85 / 180, 85 / 60, 85 / 15])
    assert weights == pytest.approx(compute_class_weight("balanced", classes=np.arange(3), y=labels))
    assert float(weights[labels].mean()) == pytest.approx(1.0)
    assert class_weights(labels, 3, "none") is None


def test_sqrt_weights_are_the_square_roots_scaled_to_a_mean_of_one():
    labels = np.array([0] * 60 + [1] * 20 + [2] * 5)
    weights = class_weights(labels, 3, "sqrt")
    assert weights is not None
    raw = np.sqrt([85 / 180, 85 / 60, 85 / 15])
    assert weights == pytest.approx(raw / (raw[labels].mean()))
    assert float(weights[labels].mean()) == pytest.approx(1.0)
    assert weights[2] / weights[0] == pytest.approx(np.sqrt(12))  # the rare class's edge is the square root


def test_a_class_absent_from_training_weighs_zero_and_the_others_ignore_it():
    labels = np.array([0, 0, 0, 2])  # class 1 (of 3) has no training document
    weights = class_weights(labels, 3, "balanced")
    assert weights is not None
    assert weights.tolist() == pytest.approx([4 / 6, 0.0, 4 / 2])  # C counts the 2 classes present
    assert named_class_weights(weights, ["a", "b", "c"]) == {"a": pytest.approx(0.666667), "b": 0.0, "c": 2.0}


def test_the_weighted_loss_weights_each_document_by_its_class_and_adds_up_over_ranks():
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 3), torch.tensor([0, 2, 1, 2, 0])
    weight = torch.tensor([0.5, 1.0, 4.0])
    per_document = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    expected = float((weight[labels] * per_document).sum() / 5)  # weighted sum over the batch's size
    assert float(batch_loss(logits, labels, 5, 5, 1, weight)) == pytest.approx(expected, rel=1e-6)
    assert float(batch_loss(logits, labels, 5, 5, 1)) == pytest.approx(float(per_document.mean()), rel=1e-6)
    assert expected != pytest.approx(float(per_document.mean()))
    ranks = [batch_loss(logits[:3], labels[:3], 3, 5, 2, weight), batch_loss(logits[3:], labels[3:], 2, 5, 2, weight)]
    assert float(sum(ranks) / 2) == pytest.approx(expected, rel=1e-6)  # DDP's average is the global one


def test_the_linear_fit_takes_the_same_weights_as_scikit_learns_balanced(tiny_overrides):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = csr_matrix(rng.random((40, 6)) * (rng.random((40, 6)) < 0.5))
    labels = np.array([0] * 30 + [1] * 7 + [3] * 3)  # class 2 (of 4) absent
    logistic = [*tiny_overrides, "model.linear_classifier=logistic"]
    config = load_config(TINY_CONFIG, [*logistic, "train.class_weight=balanced"])
    weight, _ = _fit_classes(features, labels, 4, config, None, 0.3)  # type: ignore[arg-type]
    reference = LogisticRegression(C=0.3, class_weight="balanced", max_iter=1000, random_state=0)
    reference.fit(features, labels)
    assert weight[[0, 1, 3]].numpy() == pytest.approx(reference.coef_, abs=1e-6)
    plain, _ = _fit_classes(features, labels, 4, load_config(TINY_CONFIG, logistic), None, 0.3)  # type: ignore[arg-type]
    assert not np.allclose(plain.numpy(), weight.numpy())


def test_class_weight_is_refused_for_a_multilabel_run(tmp_path):
    source = write_csv(tmp_path / "topics.csv", make_multilabel_corpus(30))
    multilabel = [f"data.source={source}", "task=multilabel", "data.label_column=topics", "data.label_separator=;"]
    with pytest.raises(ConfigError, match=r"train.class_weight applies to task: multiclass.*train.positive_weight"):
        load_config(TINY_CONFIG, [*multilabel, "train.class_weight=balanced"])
    assert load_config(TINY_CONFIG, multilabel).train.class_weight == "none"


@pytest.mark.slow
def test_a_weighted_run_records_its_class_weights_in_the_manifest(skewed_csv, tmp_path):
    overrides = [f"data.source={skewed_csv}", "data.split_column=split", "train.threads=1", "train.max_epochs=1"]
    config = load_config(TINY_CONFIG, [*overrides, "model.kind=mean", "train.class_weight=balanced"])
    run_all(config, tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "manifest.json").read_text())["train"]["class_weights"]
    assert recorded == pytest.approx({"food": 85 / 15, "sport": 85 / 180, "tech": 85 / 60}, abs=1e-6)
    run_all(load_config(TINY_CONFIG, [*overrides, "model.kind=linear"]), tmp_path / "plain")
    assert "class_weights" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())["train"]


# --- the skew warning -------------------------------------------------------------------------------


def test_the_skew_warning_names_the_rare_labels_from_the_threshold_on():
    warning = label_imbalance(SKEWED)
    assert warning is not None
    assert "'sport' has 60 documents, 12.0x its rarest" in warning
    assert "rarest: 'food' 5 (5.9%)" in warning and "'tech'" not in warning.split("rarest:")[1]
    assert "train.class_weight=balanced" in warning
    assert label_imbalance({"a": 10 * 7, "b": 7}) is not None  # the ratio itself warns
    assert label_imbalance({"a": int(IMBALANCE_RATIO * 7) - 1, "b": 7}) is None
    assert label_imbalance({"a": 5, "b": 0}) is not None  # a label training lacks
    assert "while a label has none" in (label_imbalance({"a": 5, "b": 0}) or "")
    assert "train.positive_weight weights" in (label_imbalance(SKEWED, multilabel=True) or "")


def test_data_inspect_warns_on_a_skewed_csv_and_not_on_a_balanced_one(skewed_csv, tmp_path):
    skewed = invoke("data", "inspect", TINY_CONFIG, f"data.source={skewed_csv}", "data.split_column=split", check=True)
    assert "warning skewed labels" in " ".join(skewed.stdout.split())
    assert "train.class_weight=balanced" in " ".join(skewed.stdout.split())
    balanced_csv = write_csv(tmp_path / "balanced.csv", labelled_rows(dict.fromkeys(SKEWED, 20)))
    balanced = invoke(
        "data", "inspect", TINY_CONFIG, f"data.source={balanced_csv}", "data.split_column=split", check=True
    )
    assert "documents per label" in balanced.stdout and "skewed" not in balanced.stdout
