"""An ensemble of independently initialised networks of one kind (`model.ensemble`), read as one network.

Each member is a whole network (its own embedding table, encoders, attention and wide channel), built one
after another from the run's seed, so member 0 is the network `model.ensemble: 1` builds. Training
sums the members' own losses (`member_logits`), so each member gets exactly the gradient it would get
alone on the same batches; what differs between them is their initial weights and dropout draws.
The ensemble's logits are the mean of the members' logits (for softmax, the normalised geometric mean
of their probabilities), and its attention weights are the mean of theirs: still a distribution over
each sentence's words and each document's sentences, so reports read them as they read one network's.

Why: networks of different seeds err on different documents. On the long-document stand-ins most of
each seed's errors are its own (README "What closes the gap"), so their mean errs less than any one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from han.model import HANOutput, ModelOutput


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
        self, word_ids: torch.Tensor, sentence_lengths: torch.Tensor, sentence_counts: torch.Tensor
    ) -> HANOutput | ModelOutput:
        """Every member's output on the batch, combined: mean logits (and attention), the members' logits kept."""
        outputs = [member(word_ids, sentence_lengths, sentence_counts) for member in self.members]
        member_logits = torch.stack([output.logits for output in outputs])  # (K, B, C)
        logits = member_logits.mean(0)  # (B, C)
        first = outputs[0]
        if not isinstance(first, HANOutput):
            return ModelOutput(logits, member_logits)
        wide = [output.wide_logits for output in outputs]
        return dataclasses.replace(
            first,
            logits=logits,
            # Members see the same packed layout (it depends only on the batch), so weights align position by position.
            word_weights=torch.stack([output.word_weights for output in outputs]).mean(0),  # (P_w,)
            sentence_weights=torch.stack([output.sentence_weights for output in outputs]).mean(0),  # (P_s,)
            wide_logits=None if wide[0] is None else torch.stack(wide).mean(0),  # (B, C)
            member_logits=member_logits,
        )


def members(model: nn.Module) -> list[nn.Module]:
    """The networks a model is made of: an ensemble's members, or the model itself."""
    return list(model.members) if isinstance(model, Ensemble) else [model]
