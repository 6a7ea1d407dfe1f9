"""Training-step and inference throughput of the HAN on synthetic IMDB-like documents.

    python -m benchmarks.train --variant fused|torch|reference [--infer] [--docs 1280] [--reps 3] [--ensemble K]

Paper configuration: vocabulary 50k, embedding 200, GRU 50 per direction, attention 100, 5 classes,
batch 64. A training pass is one epoch over the documents through the real loop (length-bucketed
batches, collation, forward, backward, clipping, optimizer step). Variants:
  fused      han's model with the fused CPU GRU (`model.rnn: fused`) and LazyAdam (the defaults)
  torch      han's model with nn.GRU on packed sequences (`model.rnn: torch`) and LazyAdam
  reference  a straightforward HAN: nn.GRU over padded real sentences, dense Adam (benchmarks/reference_model.py)
`--ensemble K` (fused, torch): K networks (`model.ensemble`), each step every member on a batch of its own,
as han's training loop gives them (han.training.train.member_batch_orders). Prints one JSON line.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import emit, load_average, peak_rss_mb, rate, timed_passes
from benchmarks.reference_model import PaddedHAN
from benchmarks.synthetic import encoded_split, id_documents
from han.config import ModelConfig
from han.evaluation.scoring import predict_probabilities
from han.models.build import build_model
from han.models.ensemble import members
from han.store.encoded import EncodedSplit
from han.text.batching import bucketed_batches, collate
from han.training.optim import LazyAdam, clip_grad_norm
from han.training.train import member_batch_orders
from han.util.allocator import keep_freed_memory

VOCAB, EMBEDDING, HIDDEN, ATTENTION, CLASSES, BATCH = 50_000, 200, 50, 100, 5, 64


def make_model(variant: str, ensemble: int = 1) -> torch.nn.Module:
    if variant == "reference":
        return PaddedHAN(VOCAB, EMBEDDING, HIDDEN, ATTENTION, CLASSES)
    config = ModelConfig(
        word_hidden=HIDDEN,
        sentence_hidden=HIDDEN,
        attention_dim=ATTENTION,
        dropout=0.0,
        rnn=variant,
        ensemble=ensemble,
        wide=False,  # the network's kernels alone (the n-gram channel needs a fitted table)
    )
    return build_model(config, VOCAB, EMBEDDING, CLASSES, sparse_embedding=True)


def training_pass(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    split: EncodedSplit,
    variant: str,
    rng: np.random.Generator,
    epoch: int,
) -> None:
    """One epoch as han's loop runs it; an ensemble's members each on a batch of their own, their losses summed."""
    model.train()
    networks = members(model)
    batches = list(bucketed_batches(split, BATCH, rng))
    orders = member_batch_orders(len(networks), len(batches), seed=0, epoch=epoch)
    for position in range(len(batches)):
        own = [batches[order[position]] for order in orders]
        batch = collate(split, np.concatenate(own))
        sizes = [len(indices) for indices in own]
        if variant == "reference":
            logits = model(batch)
        elif len(networks) == 1:
            logits = model(batch.word_ids, batch.sentence_lengths, batch.sentence_counts).logits
        else:
            logits = model(batch.word_ids, batch.sentence_lengths, batch.sentence_counts, sizes).logits
        loss = sum(
            F.cross_entropy(part, labels)
            for part, labels in zip(logits.split(sizes), batch.labels.split(sizes), strict=True)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        for network in networks:
            if variant == "reference":
                torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            else:
                clip_grad_norm(network.parameters(), 5.0)
        optimizer.step()


@torch.no_grad()
def inference_pass(model: torch.nn.Module, split: EncodedSplit, variant: str) -> None:
    model.eval()
    if variant == "reference":
        for indices in bucketed_batches(split, BATCH, None):
            model(collate(split, indices)).softmax(-1)
    else:
        predict_probabilities(model, split, BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["fused", "torch", "reference"], default="fused")
    parser.add_argument("--infer", action="store_true")
    parser.add_argument("--docs", type=int, default=1280)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--long-share", type=float, default=0.0, help="share of extra documents 10x longer (tail test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ensemble", type=int, default=1, help="networks in the model (model.ensemble)")
    args = parser.parse_args()
    if args.ensemble > 1 and args.variant == "reference":
        parser.error("--ensemble applies to han's variants (fused, torch)")

    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `han train` and `han evaluate` do (han/util/allocator.py)
    torch.manual_seed(args.seed)
    documents = id_documents(args.docs, VOCAB, seed=args.seed)
    extra = round(args.docs * args.long_share)
    if extra:
        documents += id_documents(extra, VOCAB, seed=args.seed + 1, length_scale=10.0)
    split = encoded_split(documents, CLASSES, seed=args.seed)
    tokens = int(split.tokens.size)
    model = make_model(args.variant, args.ensemble)
    if args.infer:
        seconds = timed_passes(lambda: inference_pass(model, split, args.variant), args.reps)
    else:
        if args.variant == "reference":
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        else:
            optimizer = LazyAdam(model.parameters(), lr=1e-3)
        rng, epochs = np.random.default_rng(args.seed), iter(range(1, 10**6))
        seconds = timed_passes(
            lambda: training_pass(model, optimizer, split, args.variant, rng, next(epochs)), args.reps
        )
    docs_rate, tokens_rate = rate(len(split), seconds), rate(tokens, seconds)
    emit(
        {
            "bench": "infer" if args.infer else "train",
            "variant": args.variant,
            "ensemble": args.ensemble,
            "threads": args.threads,
            "docs": len(split),
            "long_docs": extra,
            "tokens": tokens,
            "docs_per_s": docs_rate["median"],
            "docs_per_s_min": docs_rate["min"],
            "docs_per_s_max": docs_rate["max"],
            "tokens_per_s": tokens_rate["median"],
            "passes": len(seconds),
            "peak_rss_mb": peak_rss_mb(),
            "load_avg_1m": load_average(),
        }
    )


if __name__ == "__main__":
    main()
