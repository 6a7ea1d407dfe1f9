"""train.label_smoothing: the cross-entropy's target spreads a share of its mass over every class."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY_CONFIG, make_multilabel_corpus, write_csv
from han.config import load_config
from han.errors import ConfigError
from han.training.distributed import batch_loss
from han.workflows.run import run_all


def test_the_smoothed_loss_is_the_mix_of_the_true_class_and_every_class():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    labels = torch.tensor([0, 2])
    log_p = torch.log_softmax(logits, dim=1)
    eps = 0.2
    by_document = -(1 - eps) * log_p[torch.arange(2), labels] - eps * log_p.mean(dim=1)
    assert float(batch_loss(logits, labels, 2, 2, 1, label_smoothing=eps)) == pytest.approx(float(by_document.mean()))
    assert float(batch_loss(logits, labels, 2, 2, 1)) != pytest.approx(float(by_document.mean()))


def test_a_run_trains_with_label_smoothing(tmp_path, tiny_overrides):
    losses = {}
    for smoothing in (0.0, 0.3):
        run_dir = tmp_path / f"run-{smoothing}"
        run_all(load_config(TINY_CONFIG, [*tiny_overrides, f"train.label_smoothing={smoothing}"]), run_dir)
        losses[smoothing] = json.loads((run_dir / "train_log.jsonl").read_text().splitlines()[-1])["train_loss"]
    # The smoothed target of three classes, (0.8, 0.1, 0.1), has entropy 0.639: no model's loss goes below it.
    assert losses[0.0] < 0.6 < 0.639 <= losses[0.3]


def test_label_smoothing_is_refused_for_label_sets(tmp_path):
    source = write_csv(tmp_path / "topics.csv", make_multilabel_corpus(30))
    multilabel = [f"data.source={source}", "task=multilabel", "data.label_column=topics", "data.label_separator=;"]
    with pytest.raises(ConfigError, match=r"train.label_smoothing applies to task: multiclass"):
        load_config(TINY_CONFIG, [*multilabel, "train.label_smoothing=0.1"])
