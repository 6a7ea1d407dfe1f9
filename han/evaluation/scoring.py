"""The one loop that runs a model over an encoded split: class probabilities and, on request, attention.

Multi-label models (`model.multilabel`, set by han/models/build.py) give one sigmoid probability per label.

Evaluation, validation during training, prediction, the reports and the faithfulness check all
score through `score_split`. Batches go to the model's device, the forward pass runs under the
configured autocast precision without autograd, and results come back to the CPU as float32 numpy
arrays in split order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from han.models.ensemble import members
from han.progress import Progress
from han.store.encoded import EncodedSplit
from han.text.batching import bucketed_batches, collate
from han.util.cpus import adjust_threads
from han.util.device import autocast
from han.util.forked import can_fork, forked_map

# A scoring batch ends at `train.eval_batch_size` documents or at this many tokens, whichever comes
# first: the packed GRU runs fastest when a batch's gates stay this small (measured on 2 cores: short
# reviews score 20% faster in batches of 256 than of 64; ~260-token documents no faster past 64).
SCORE_BATCH_TOKENS = 16_384


@dataclass
class SplitScores:
    """Predictions of every document of a split, in split order, and (when asked for) both levels of attention."""

    probabilities: np.ndarray  # (N_doc, C): each row sums to 1, or (multi-label) each label's own probability
    sentence_weights: np.ndarray | None = None  # (N_sent,) aligned with the split's sentences; each document's sum to 1
    word_weights: np.ndarray | None = None  # (T,) aligned with the split's tokens; each sentence's sum to 1
    # model.wide: the attention path's share of each document's decision (`attention_share`), else None
    attention_share: np.ndarray | None = None  # (N_doc,) in [0, 1]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device the model's parameters live on."""
    return next(model.parameters()).device


def num_classes(model: torch.nn.Module) -> int:
    """The classes the model scores (the width of its classifier, or its `num_classes` when it has none)."""
    if isinstance(getattr(model, "num_classes", None), int):
        return int(model.num_classes)  # type: ignore[arg-type]
    classifier = members(model)[0].get_submodule("classifier")  # model.ensemble: every member scores the classes
    assert isinstance(classifier, torch.nn.Linear)
    return classifier.out_features


def output_bias(model: torch.nn.Module) -> torch.Tensor | None:
    """(C,) the output layer's bias, the members' mean for an ensemble (their logits are averaged); None for a
    model without a `classifier` layer."""
    layers = [getattr(network, "classifier", None) for network in members(model)]
    biases: list[torch.Tensor] = [
        layer.bias.detach() for layer in layers if isinstance(layer, torch.nn.Linear) and layer.bias is not None
    ]
    return torch.stack(biases).mean(0) if len(biases) == len(layers) else None


def is_multilabel(model: torch.nn.Module) -> bool:
    """Whether the model's logits are read one sigmoid per label (task multilabel) rather than as one softmax."""
    return bool(getattr(model, "multilabel", False))


def probabilities_of(model: torch.nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """Probabilities from a batch's logits (B, C): a softmax over classes, or a sigmoid per label (multi-label)."""
    logits = logits.float()
    return torch.sigmoid(logits) if is_multilabel(model) else torch.softmax(logits, dim=-1)


def sentence_ids_of(split: EncodedSplit, indices: np.ndarray) -> np.ndarray:
    """Ids of the sentences of documents `indices`, in the order `collate` puts them in a batch."""
    first, last = split.document_offsets[indices], split.document_offsets[indices + 1]
    return np.concatenate([np.arange(a, b) for a, b in zip(first, last, strict=True)])


@torch.no_grad()
def score_split(
    model: torch.nn.Module,
    split: EncodedSplit,
    batch_size: int,
    precision: str = "fp32",
    attention: bool = False,
    progress: Progress | None = None,
    processes: int = 1,
) -> SplitScores:
    """Run `model` over every document of `split` (length-ordered batches) on the model's device.

    With `processes` > 1 (a model on the CPU, probabilities only), the batches are scored by that many
    forked workers, one torch thread each (`han.util.forked`): the same batches, so the same numbers.
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    scores = SplitScores(np.zeros((len(split), num_classes(model)), dtype=np.float32))
    if attention:
        scores.sentence_weights = np.zeros(len(split.sentence_offsets) - 1, dtype=np.float32)
        scores.word_weights = np.zeros(len(split.tokens), dtype=np.float32)
    if progress is not None:
        progress.start("score", len(split))
    batches = list(bucketed_batches(split, batch_size, rng=None, max_tokens=SCORE_BATCH_TOKENS))
    if processes > 1 and len(batches) > processes and not attention and device.type == "cpu" and can_fork():
        for indices, probabilities in forked_map(_score_batch, (model, split, precision), batches, processes):
            scores.probabilities[indices] = probabilities
            if progress is not None:
                progress.advance(len(indices))
    else:
        class_bias = output_bias(model) if attention else None  # left out of the attention path's share
        for indices in batches:
            adjust_threads()
            output = _forward(model, split, indices, device, precision)
            scores.probabilities[indices] = probabilities_of(model, output.logits).cpu().numpy()
            if attention:
                _keep_attention(scores, split, indices, output, class_bias)
            if progress is not None:
                progress.advance(len(indices))
    if progress is not None:
        progress.stop()
    model.train(was_training)
    return scores


def _forward(
    model: torch.nn.Module, split: EncodedSplit, indices: np.ndarray, device: torch.device, precision: str
) -> Any:
    """The model's output on documents `indices` of `split`, batched on `device` under `precision`."""
    batch = collate(split, indices).to(device)
    with autocast(device, precision):
        return model(batch.word_ids, batch.sentence_lengths, batch.sentence_counts)


def _score_batch(
    shared: tuple[torch.nn.Module, EncodedSplit, str], indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, probabilities) of one batch, in a forked scoring worker (the model is on the CPU, in eval mode)."""
    model, split, precision = shared
    with torch.no_grad():
        output = _forward(model, split, indices, torch.device("cpu"), precision)
    return indices, probabilities_of(model, output.logits).numpy()


def attention_share(
    logits: torch.Tensor, wide_logits: torch.Tensor, class_bias: torch.Tensor | None = None
) -> torch.Tensor:
    """(B,) the attention path's share of each document's decision when a wide n-gram channel adds to its logits.

    For the top class c, each path's push is how far it moves c's score from its own mean over the classes (a
    softmax ignores a shift common to all classes): share = |deep_c - mean(deep)| / (that + |wide_c - mean(wide)|),
    with deep = logits - wide_logits - class_bias. The output layer's bias (C,) is the same for every document
    (a prior over the classes, the fitted channel's intercepts), so it is neither path's push: a fitted run whose
    best epoch is 0 (the linear kind alone) has share 0. 1: the n-grams did not move the decision; 0: the
    attention path did not.
    """
    logits, wide_logits = logits.float(), wide_logits.float()  # (B, C) each
    top = logits.argmax(1, keepdim=True)  # (B, 1)
    deep = logits - wide_logits if class_bias is None else logits - wide_logits - class_bias.float()
    deep_push = (deep.gather(1, top) - deep.mean(1, keepdim=True)).abs().squeeze(1)  # (B,)
    wide_push = (wide_logits.gather(1, top) - wide_logits.mean(1, keepdim=True)).abs().squeeze(1)  # (B,)
    return deep_push / (deep_push + wide_push).clamp_min(1e-12)


def _keep_attention(
    scores: SplitScores, split: EncodedSplit, indices: np.ndarray, output: object, class_bias: torch.Tensor | None
) -> None:
    """Copy a batch's attention weights (and the attention path's share, `class_bias` left out of it) into the
    split-aligned flat arrays of `scores`.

    Lengths come from the split (on the CPU), never back from the device."""
    if not hasattr(output, "sentence_attention"):
        raise TypeError(f"{type(output).__name__} carries no attention weights (model.kind han has them)")
    wide_logits = getattr(output, "wide_logits", None)
    if wide_logits is not None:
        if scores.attention_share is None:
            scores.attention_share = np.full(len(split), np.nan, dtype=np.float32)
        share = attention_share(output.logits, wide_logits, class_bias)  # type: ignore[attr-defined]
        scores.attention_share[indices] = share.cpu().numpy()
    sentence_attention = output.sentence_attention.float().cpu()  # (B, S)
    word_attention = output.word_attention.float().cpu()  # type: ignore[attr-defined]  # (B, S, W)
    counts = torch.from_numpy(np.diff(split.document_offsets)[indices])  # (B,)
    # Real sentences of the (B, S) grid, row-major: the same order as the batch's sentences.
    sentence_mask = torch.arange(sentence_attention.size(1)) < counts[:, None]  # (B, S)
    sentence_ids = sentence_ids_of(split, indices)  # (N_s,)
    lengths = np.diff(split.sentence_offsets)[sentence_ids]  # (N_s,)
    scores.sentence_weights[sentence_ids] = sentence_attention[sentence_mask].numpy()  # type: ignore[index]
    width = int(lengths.max())
    per_sentence = word_attention[sentence_mask][:, :width].numpy()  # (N_s, W)
    columns = np.arange(width)
    valid = columns[None, :] < lengths[:, None]  # (N_s, W)
    starts = split.sentence_offsets[sentence_ids]
    scores.word_weights[(starts[:, None] + columns[None, :])[valid]] = per_sentence[valid]  # type: ignore[index]


def predict_probabilities(
    model: torch.nn.Module, split: EncodedSplit, batch_size: int, precision: str = "fp32"
) -> np.ndarray:
    """Class probabilities (N, C) for every document of `split`, in split order."""
    return score_split(model, split, batch_size, precision).probabilities
