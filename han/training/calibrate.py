"""The last step of training a multi-label run: each label's decision threshold, chosen on validation.

A sigmoid output of 0.5 is rarely the best cut for a label, least of all for a rare one, whose
probabilities stay low. The best weights score the validation split once, `han.evaluation.thresholds` picks
the thresholds (`train.thresholds`: one global, or one per label with the global one as the
fallback for labels with fewer than `train.threshold_min_positives` validation documents), and
they are saved as thresholds.json, which evaluate, predict and the reports read.
"""

from __future__ import annotations

import logging
from typing import Any

from han.config import Config
from han.evaluation.metrics import split_metrics
from han.evaluation.scoring import predict_probabilities
from han.evaluation.thresholds import choose_thresholds, save_thresholds
from han.models.build import build_model
from han.store.encoded import EncodedSplit
from han.store.rundir import RunDir
from han.store.weights import load_weights
from han.util.device import resolve_device

log = logging.getLogger(__name__)


def choose_run_thresholds(config: Config, run: RunDir) -> dict[str, Any]:
    """Score validation with the run's best weights, choose and save the thresholds; return the manifest entry."""
    vocab, label_names = run.load_vocab(), run.load_labels()
    model = build_model(config.model, len(vocab), config.embeddings.dim, len(label_names), multilabel=True)
    load_weights(model, run.best_weights_path)
    model.to(resolve_device(config.device))
    validation = EncodedSplit.load(run.data_path("validation"))
    probabilities = predict_probabilities(model, validation, config.train.eval_batch_size, config.precision)
    chosen = choose_thresholds(
        validation.labels, probabilities, config.train.thresholds, config.train.threshold_min_positives
    )
    save_thresholds(run.thresholds_path, chosen, label_names)
    run.record_artifacts(run.thresholds_path)
    at_half = split_metrics(validation.labels, probabilities, label_names)
    tuned = split_metrics(validation.labels, probabilities, label_names, chosen.values, config.predict.at_least_one)
    entry = {
        "mode": chosen.mode,
        "global": chosen.global_threshold,
        "labels_on_global": len(chosen.fallback_labels),
        "validation_micro_f1_at_half": round(at_half["micro_f1"], 6),
        "validation_micro_f1": round(tuned["micro_f1"], 6),
        "validation_macro_f1_at_half": round(at_half["macro_f1"], 6),
        "validation_macro_f1": round(tuned["macro_f1"], 6),
    }
    run.update_manifest(thresholds=entry)
    log.info(
        "thresholds (%s, global %.2f) chosen on validation: micro-F1 %.4f (at 0.5: %.4f), macro-F1 %.4f (at 0.5: %.4f)",
        chosen.mode,
        chosen.global_threshold,
        tuned["micro_f1"],
        at_half["micro_f1"],
        tuned["macro_f1"],
        at_half["macro_f1"],
    )
    return entry
