"""The n-gram channel's TF-IDF entries of every training document, computed once rather than once an epoch.

The wide channel (`model.wide`) reads a batch's n-grams from its token ids: on the IMDB-sized stand-in that
is 3.7 ms of a 70 ms training step, every epoch again although a document's entries never change. A
training session computes the training split's entries once, as one CSR matrix (`fit_linear.tfidf_rows`,
the rows the linear kind fits on), and hands each batch its documents' rows: the same entries, in the
same order, as the channel computes. When the channel's weights are fitted and held, a document's class scores
never change either: they are computed once too, and each batch gets its documents' scores
(`training_wide_scores`): in sample, or out of fold with `model.wide_training_scores: out_of_fold`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import csr_matrix

from han.config import Config
from han.models.ensemble import fitted_wide_channel, members
from han.models.ngrams import TfidfEntries
from han.store.encoded import EncodedSplit
from han.store.rundir import RunDir
from han.training.fit_linear import out_of_fold_scores, tfidf_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitEntries:
    """A split's TF-IDF entries, one CSR row per document (columns sorted within each row)."""

    rows: csr_matrix  # (N, F)

    def batch(self, indices: np.ndarray, device: torch.device) -> TfidfEntries:
        """The entries of documents `indices` of the split, as the channel computes them for a batch of them."""
        part = self.rows[indices]  # (B, F)
        document = np.repeat(np.arange(len(indices)), np.diff(part.indptr))  # (K',)
        return (
            torch.from_numpy(document).to(device),
            torch.from_numpy(part.indices.astype(np.int64)).to(device),
            torch.from_numpy(part.data).to(device),
        )


def training_entries(
    model: torch.nn.Module, split: EncodedSplit, rows: csr_matrix | None = None
) -> SplitEntries | None:
    """The entries of every document of `split` for a single network's fitted wide channel (read while the model
    is still on the CPU; `rows`: the split's TF-IDF rows when set-up computed them already); None for a model
    without one, or an ensemble (each member reads its own batch)."""
    wide = fitted_wide_channel(model)
    if len(members(model)) != 1 or wide is None:
        return None
    rows = tfidf_rows(wide, split) if rows is None else rows
    rows.sort_indices()
    return SplitEntries(rows)


def training_wide_scores(
    config: Config,
    run: RunDir,
    model: torch.nn.Module,
    split: EncodedSplit,
    entries: SplitEntries | None,
    fitted_c: float | None,
) -> np.ndarray | None:
    """(N, C) the training documents' class scores from a single network's wide channel whose weights were fitted
    at `fitted_c` and are held fixed (model.wide_weights fitted); None otherwise (the channel scores each batch).

    in_sample: the held weights' own scores, once instead of every step. out_of_fold or calibrated: each document's
    scores from classifiers fitted without it (`fit_linear.out_of_fold_scores`, at `fitted_c`). calibrated: the
    channel's weights, the network's starting class biases and these scores are all multiplied by the factor that
    best fits the training labels from the out-of-fold scores (`calibrated_scale`), so the starting model still
    decides as the linear kind does, with a confidence its real errors warrant."""
    wide, setting = fitted_wide_channel(model), config.model.wide_training_scores
    if wide is None or entries is None or fitted_c is None:  # no held channel: it scores each batch itself
        if setting != "in_sample":
            log.info(
                "model.wide_training_scores %s does not apply: it needs one network with a fitted wide channel", setting
            )
        return None
    if setting == "in_sample":
        weight = wide.scores.weight.detach().cpu().numpy()  # (F, C)
        return np.asarray(entries.rows @ weight, dtype=np.float32)  # (N, C)
    start = time.perf_counter()
    scores = out_of_fold_scores(entries.rows, split.labels, wide.num_classes, config, run, fitted_c)
    log.info("wide channel: out-of-fold training scores in %.1f s", time.perf_counter() - start)
    if setting == "calibrated":
        classifier = model.get_submodule("classifier")
        assert isinstance(classifier, torch.nn.Linear)
        bias = classifier.bias.detach().cpu().numpy().astype(np.float64)
        scale = calibrated_scale(scores.astype(np.float64) + bias, split.labels)
        with torch.no_grad():
            wide.scores.weight.mul_(scale)
            classifier.bias.mul_(scale)
        scores = scores * np.float32(scale)
        log.info("wide channel: fitted scores scaled by %.3g (calibrated on the out-of-fold scores)", scale)
    return scores


def calibrated_scale(margins: np.ndarray, labels: np.ndarray) -> float:
    """The factor s > 0 whose s * `margins` (N, C) best fit `labels` by the training loss: cross-entropy of their
    softmax for class ids (N,), binary cross-entropy of their sigmoids for label sets (N, C). A search on log s."""
    from scipy.optimize import minimize_scalar

    tensor = torch.from_numpy(margins)
    target = torch.from_numpy(labels)

    def loss(log_scale: float) -> float:
        logits = tensor * float(np.exp(log_scale))
        if target.ndim == 2:
            return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, target.double()))
        return float(torch.nn.functional.cross_entropy(logits, target))

    best = minimize_scalar(loss, bounds=(np.log(0.1), np.log(100.0)), method="bounded")
    return float(np.exp(best.x))
