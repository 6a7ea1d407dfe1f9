"""Trains, saves, loads, scores the same: every model kind (and the ensemble and the wide channel where the
kind has them) through `han train`, `han evaluate` and `han.load`.

The saved weights file must reload to the very tensors that were saved, and the reloaded model must give
back what the run recorded: training's validation figures (scored by the in-memory model at the end of the
epoch), `han evaluate`'s test figures, and the same probabilities whether it scores the encoded split
directly or reads the raw texts as `han predict` does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import han
from conftest import TINY_CONFIG, invoke
from han.config import ModelKind, load_config
from han.evaluation.metrics import split_metrics
from han.evaluation.scoring import predict_probabilities
from han.store.encoded import EncodedSplit
from han.text.preprocess import preprocess

KINDS = get_args(ModelKind)
WIDE_KINDS = ("han", "han_avg", "han_max")  # the kinds with the wide n-gram channel (han/config.py, model.wide)
CASES = (
    [(kind, False, 1) for kind in KINDS]
    + [(kind, True, 1) for kind in WIDE_KINDS]
    + [(kind, False, 2) for kind in KINDS if kind != "linear"]  # linear is one fitted model: no ensemble
    + [("han", True, 2)]
)
# The figures training records for the validation split (train_log.jsonl) and evaluate for the test split.
FIGURES = ("loss", "accuracy", "macro_f1")


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory: pytest.TempPathFactory, tiny_overrides: list[str]) -> Path:
    """One preprocessing of the tiny corpus: it does not depend on the model, so every case trains on a copy."""
    run_dir = tmp_path_factory.mktemp("roundtrip") / "preprocessed"
    preprocess(load_config(TINY_CONFIG, tiny_overrides), run_dir)
    return run_dir


@pytest.mark.parametrize(
    ("kind", "wide", "ensemble"), CASES, ids=[f"{k}-wide{int(w)}-ensemble{e}" for k, w, e in CASES]
)
def test_a_run_reloads_to_the_model_it_trained(
    preprocessed, tiny_overrides, corpus_rows, tmp_path, kind, wide, ensemble
):
    overrides = [
        *tiny_overrides,
        f"model.kind={kind}",
        f"model.wide={str(wide).lower()}",
        f"model.ensemble={ensemble}",
        "train.max_epochs=1",
        "train.beat_linear_start=at_all",  # the tiny corpus's linear start is perfect: keep the trained epoch
    ]
    run_dir = tmp_path / "run"
    shutil.copytree(preprocessed, run_dir)
    invoke("train", TINY_CONFIG, *overrides, "--run-dir", run_dir, check=True)
    invoke("evaluate", run_dir, "--split", "test", check=True)

    classifier = han.load(run_dir)
    config, model = classifier.config, classifier.trained.model
    assert (config.model.kind, config.model.wide, config.model.ensemble) == (kind, wide, ensemble)

    # The weights file reloads to identical tensors: those of the loaded model, and (one epoch: best is last)
    # those of the last epoch's file.
    saved = load_file(str(run_dir / "model" / "best.safetensors"))
    state = model.state_dict()
    assert sorted(saved) == sorted(state)
    for name, tensor in saved.items():
        assert tensor.dtype == state[name].dtype and torch.equal(tensor, state[name].cpu()), name
    last = load_file(str(run_dir / "model" / "last.safetensors"))
    assert sorted(last) == sorted(saved) and all(torch.equal(last[name], saved[name]) for name in saved)
    if kind in WIDE_KINDS:  # the setting is really exercised: the wide channel's weights are saved, or none are
        assert any(".wide." in f".{name}" for name in saved) == wide
    if ensemble > 1:
        assert {name.split(".")[1] for name in saved} == {str(i) for i in range(ensemble)}

    # Exact equality below, no tolerance: the reloaded weights are the trained ones bit for bit, scored in this
    # process by the same kernels, on the same batches, with the same thread count (train.threads=1), so every
    # float operation repeats and so does every result.
    batch_size, precision, names = config.train.eval_batch_size, config.precision, classifier.classes

    # Training scored the validation split with its in-memory model at the end of the epoch (train_log.jsonl).
    validation = EncodedSplit.load(run_dir / "data" / "validation")
    again = split_metrics(validation.labels, predict_probabilities(model, validation, batch_size, precision), names)
    # The fitted n-gram channel (the default) adds epoch 0, the linear kind alone: the best epoch's record it is.
    best = json.loads((run_dir / "manifest.json").read_text())["train"]["best_epoch"]
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    (record,) = [r for r in log if r["epoch"] == best]
    assert {f: again[f] for f in FIGURES} == {f: record[f"validation_{f}"] for f in FIGURES}

    # `han evaluate` scored the test split from the files, in its own load.
    test = EncodedSplit.load(run_dir / "data" / "test")
    probabilities = predict_probabilities(model, test, batch_size, precision)
    again = split_metrics(test.labels, probabilities, names)
    evaluated = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert {f: again[f] for f in FIGURES} == {f: evaluated[f] for f in FIGURES}

    # The Python API reads the test documents' raw texts (as `han predict` does) to the same probabilities.
    texts = [row["text"] for row in corpus_rows if row["split"] == "test"]
    assert len(texts) == len(test)
    np.testing.assert_array_equal(classifier.predict_proba(texts), probabilities)
