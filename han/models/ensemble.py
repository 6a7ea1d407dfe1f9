"""An ensemble of independently initialised networks of one kind (`model.ensemble`), read as one network.

Each member is a whole network (its own embedding table, encoders, attention and wide channel), built one
after another from the run's seed, so member 0 is the network `model.ensemble: 1` builds. In training,
each step gives every member a batch of its own (the epoch's batches in an order of its own; member 0
in the single network's order) and sums the members' own losses, so each member gets exactly the gradient
it would get alone: they differ by their initial weights, their batch order and their dropout draws.
The ensemble's logits are the mean of the members' logits (for softmax, the normalised geometric mean
of their probabilities), and its attention weights are the mean of theirs: still a distribution over
each sentence's words and each document's sentences, so reports read them as they read one network's.

Why: where networks of different seeds err on different documents (many rare classes: the `reuters_time`
stand-in, docs/results/ensembles.md), their mean errs less than any one of them; where they all miss the same
documents it buys nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from han.models.hierarchical import HANOutput, ModelOutput
from han.models.ngrams import WideChannel


class Ensemble(nn.Module):
    """`size` networks made by `make_member`, scored as the mean of their logits."""

    def __init__(self, make_member: Callable[[], nn.Module], size: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(make_member() for _ in range(size))

    def load_embeddings(self, vectors: object) -> None:
        """Initialise every member's embedding table from the run's vectors."""
        for member in self.members:
            member.load_embeddings(vectors)  # type: ignore[operator]

    def forward(
        self,
        word_ids: torch.Tensor,
        sentence_lengths: torch.Tensor,
        sentence_counts: torch.Tensor,
        member_documents: list[int] | None = None,
    ) -> HANOutput | ModelOutput:
        """Every member's output on the batch, combined: mean logits (and attention).

        `member_documents` (training): the batch is the members' own batches one after another, this many
        documents each; every member reads only its own, and the logits are theirs, in batch order.
        """
        if member_documents is not None:
            return ModelOutput(self._own_batches(word_ids, sentence_lengths, sentence_counts, member_documents))
        outputs = [member(word_ids, sentence_lengths, sentence_counts) for member in self.members]
        logits = torch.stack([output.logits for output in outputs]).mean(0)  # (K, B, C) -> (B, C)
        first = outputs[0]
        if not isinstance(first, HANOutput):
            return ModelOutput(logits)
        wide = [output.wide_logits for output in outputs]
        return dataclasses.replace(
            first,
            logits=logits,
            # Members see the same packed layout (it depends only on the batch), so weights align position by position.
            word_weights=torch.stack([output.word_weights for output in outputs]).mean(0),  # (P_w,)
            sentence_weights=torch.stack([output.sentence_weights for output in outputs]).mean(0),  # (P_s,)
            wide_logits=None if wide[0] is None else torch.stack(wide).mean(0),  # (B, C)
        )

    def _own_batches(
        self,
        word_ids: torch.Tensor,
        sentence_lengths: torch.Tensor,
        sentence_counts: torch.Tensor,
        member_documents: list[int],
    ) -> torch.Tensor:
        # word_ids (N_s, W); sentence_lengths (N_s,); sentence_counts (B,) with B = sum(member_documents)
        sentence_ends = torch.cumsum(sentence_counts, 0).tolist()  # (B,)
        logits, first_document, first_sentence = [], 0, 0
        for member, documents in zip(self.members, member_documents, strict=True):
            last_document = first_document + documents
            last_sentence = sentence_ends[last_document - 1]
            own = slice(first_sentence, last_sentence)
            lengths = sentence_lengths[own]  # (N_s_k,)
            width = int(lengths.max())  # the member's own batch as collate would pad it
            output = member(word_ids[own, :width], lengths, sentence_counts[first_document:last_document])
            logits.append(output.logits)  # (documents, C)
            first_document, first_sentence = last_document, last_sentence
        return torch.cat(logits)  # (B, C)


def members(model: nn.Module) -> list[nn.Module]:
    """The networks a model is made of: an ensemble's members, or the model itself."""
    return list(model.members) if isinstance(model, Ensemble) else [model]


def fitted_wide_channel(model: nn.Module) -> WideChannel | None:
    """The first network's wide n-gram channel (model.wide) once its table is fitted; None for a kind without one."""
    wide = getattr(members(model)[0], "wide", None)
    return wide if isinstance(wide, WideChannel) and wide.num_features > 0 else None
