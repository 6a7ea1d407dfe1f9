"""The network a training starts from: built at the configured sizes, its embedding from the run's vectors,
the wide channel's n-gram table fitted on the training split, and class biases at the labels' base rates."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy_file
from scipy.sparse import csr_matrix

from han.config import Config
from han.errors import RunDirError
from han.evaluation.significance import SIGNIFICANCE_LEVEL, paired_metric_bootstrap
from han.models.build import build_model
from han.models.ensemble import fitted_wide_channel, members
from han.models.ngrams import WideChannel
from han.store.encoded import EncodedSplit
from han.store.rundir import RunDir
from han.training.fit_linear import fit_ngram_classifier, ngram_table, tfidf_rows

log = logging.getLogger(__name__)

FITTED_BIAS_LIMIT = 10.0  # model.wide_weights fitted: the class biases start within +/- this


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's random number generators with `seed`."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def uses_sparse_embedding(config: Config, sparse_gradients: bool = True) -> bool:
    """Row-sparse embedding gradients; `sparse_gradients` False where the all-reduce has no sparse form (NCCL)."""
    return (
        config.train.optimizer == "adam"
        and config.train.lazy_embedding_updates
        and not config.model.freeze_embeddings
        and sparse_gradients
    )


@dataclass(frozen=True)
class TrainingStart:
    """The network a training starts from, with what fitting its wide channel computed that training reads again."""

    model: torch.nn.Module
    # model.wide_weights fitted: the training split's TF-IDF rows the held weights were fitted on, (N, F), and the C
    # they were fitted at (what out-of-fold training scores are fitted at); None otherwise
    training_rows: csr_matrix | None = None
    fitted_c: float | None = None


def build_training_start(
    config: Config,
    run: RunDir,
    sparse_gradients: bool = True,
    label_rates: np.ndarray | None = None,
    train_split: EncodedSplit | None = None,
    validation_split: EncodedSplit | None = None,
) -> TrainingStart:
    """The configured network with its embedding initialised from the run's vectors.

    `label_rates` (multi-label: each label's share of training documents) start the classifier's biases
    at the labels' log-odds, so the first steps learn what tells documents apart instead of pushing
    every one of many rare labels' logits down from 0 (a probability of 0.5) first. `train_split`: the
    run's training split when the caller has it loaded (`model.wide` fits its n-gram table on it), and
    `validation_split` its validation split (where `model.linear_c: auto` chooses C for fitted weights). The
    training split's TF-IDF rows and the C of fitted weights come with the model, so training reads neither again."""
    vocab = run.load_vocab()
    labels = run.load_labels()
    vectors = load_numpy_file(str(run.embeddings_path))["embeddings"]
    if vectors.shape[0] != len(vocab):
        raise RunDirError(
            f"{run.embeddings_path}: {vectors.shape[0]} vectors for a vocabulary of {len(vocab)}; rerun `han preprocess`"
        )
    sparse = uses_sparse_embedding(config, sparse_gradients)
    model = build_model(
        config.model, len(vocab), vectors.shape[1], len(labels), sparse, training=True, multilabel=config.multilabel
    )
    model.load_embeddings(vectors)  # type: ignore[operator]
    networks = members(model)  # model.ensemble: each member gets the same table, fitted weights and biases
    wides: list[WideChannel] = []
    rows, c = None, None
    for network in networks:
        if isinstance(wide := getattr(network, "wide", None), WideChannel):
            wides.append(wide)
    if wides:  # model.wide: the n-gram table of the training split
        train = train_split if train_split is not None else EncodedSplit.load(run.data_path("train"))
        start = time.perf_counter()
        table = ngram_table(train, vocab, config.model)
        for wide in wides:  # each its own copy: safetensors saves no tensor twice
            wide.set_table(table.keep.clone(), table.keys.clone(), table.idf.clone())
        log.info("wide channel: %d n-gram features in %.1f s", wides[0].num_features, time.perf_counter() - start)
        if config.model.wide_weights == "fitted":
            validation = (
                validation_split if validation_split is not None else EncodedSplit.load(run.data_path("validation"))
            )
            rows, c = hold_fitted_wide_weights(networks, wides, train, validation, len(labels), config, run)
            label_rates = None  # the fitted intercepts already hold each label's base rate
    if label_rates is not None:
        rates = np.clip(label_rates, 1e-4, 1 - 1e-4)
        for network in networks:
            start_class_biases(network, torch.from_numpy(np.log(rates / (1 - rates))))
    return TrainingStart(model, rows, c)


def starts_as_linear_kind(config: Config, model: torch.nn.Module) -> bool:
    """Whether `model` (as `build_training_start` made it) scores exactly as the linear kind before training: a
    network with a fitted wide channel (model.wide_weights fitted) and its output layer at zero."""
    return config.model.wide_weights == "fitted" and fitted_wide_channel(model) is not None


def compared_with_start(
    labels: np.ndarray, probabilities: np.ndarray, start_probabilities: np.ndarray, metric: str
) -> dict[str, Any]:
    """An epoch's validation predictions against the starting model's (train.beat_linear_start significantly): how
    far ahead it is on `metric`, the paired bootstrap's p-value, and whether it `beats_start` beyond chance (only
    then may it replace the start)."""
    gain, p_value = paired_metric_bootstrap(labels, probabilities, start_probabilities, metric)
    return {"gain_over_start": gain, "p_over_start": p_value, "beats_start": gain > 0 and p_value < SIGNIFICANCE_LEVEL}


def start_class_biases(network: torch.nn.Module, bias: torch.Tensor) -> None:
    """Set a network's output layer biases (its `classifier`) to `bias`."""
    classifier = network.get_submodule("classifier")
    assert isinstance(classifier, torch.nn.Linear)
    with torch.no_grad():
        classifier.bias.copy_(bias)


def hold_fitted_wide_weights(
    networks: list[torch.nn.Module],
    wides: list[WideChannel],
    train: EncodedSplit,
    validation: EncodedSplit,
    num_classes: int,
    config: Config,
    run: RunDir,
) -> tuple[csr_matrix, float]:
    """model.wide_weights fitted: the linear kind's classifier, fitted on the training split, becomes the wide
    channels' fixed weights, its intercepts the networks' starting class biases and their output layers' weights
    start at zero, so the starting model scores exactly as the linear model (training scores it as epoch 0) and
    the networks learn what it misses. (The output layer's own gradient is not zero: it moves off zero at the
    first step, and the layers beneath it learn from the second.) Returns the training split's TF-IDF rows and the C
    the weights were fitted at."""
    start = time.perf_counter()
    rows = tfidf_rows(wides[0], train)
    weight, bias, c = fit_ngram_classifier(wides[0], train, num_classes, config, run, rows, validation)
    for network, wide in zip(networks, wides, strict=True):
        wide.hold_weights(weight.float())
        # A class training never saw has a -1e4 intercept; -10 keeps it unpredicted without a huge logit.
        start_class_biases(network, bias.clamp(-FITTED_BIAS_LIMIT, FITTED_BIAS_LIMIT).float())
        classifier = network.get_submodule("classifier")
        assert isinstance(classifier, torch.nn.Linear)
        with torch.no_grad():
            classifier.weight.zero_()
    log.info(
        "wide channel: %s fitted in %.1f s, held fixed", config.model.linear_classifier, time.perf_counter() - start
    )
    return rows, c
