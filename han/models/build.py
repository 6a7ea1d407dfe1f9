"""Which network a run uses (`model.kind`), built at the configured sizes once it is known to fit in memory.

| kind | network | module |
|---|---|---|
| han | HN-ATT: word and sentence encoders with attention (Yang et al. 2016) | han/models/hierarchical.py |
| han_avg, han_max | HN-AVE / HN-MAX: the same hierarchy, mean / max pooling | han/models/hierarchical.py |
| rnn | one recurrent network over the whole document (last / max / attention pooling) | han/models/flat.py |
| cnn | Kim (2014): convolutions of widths 3/4/5, max over time | han/models/flat.py |
| mean | the average word vector and a linear layer (fastText-style) | han/models/flat.py |
| linear | TF-IDF n-grams and a linear SVM or logistic regression (scikit-learn) | han/models/linear.py |
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from han.config import ModelConfig
from han.errors import ConfigError
from han.models.ensemble import Ensemble, members
from han.models.flat import ConvolutionalNetwork, FlatRecurrentNetwork, MeanEmbeddingNetwork
from han.models.hierarchical import HierarchicalAttentionNetwork
from han.models.linear import TfidfLinearModel

KINDS = ("han", "han_avg", "han_max", "rnn", "cnn", "mean", "linear")


def describe(config: ModelConfig) -> str:
    """One line naming the configured network."""
    cell = config.cell.upper() if config.cell != "rnn" else "RNN"
    network = {
        "han": f"HN-ATT: word and sentence bi{cell} with attention (Yang et al. 2016)",
        "han_avg": f"HN-AVE: word and sentence bi{cell}, mean pooling",
        "han_max": f"HN-MAX: word and sentence bi{cell}, max pooling",
        "rnn": f"{'bi' if config.bidirectional else ''}{cell} over the whole document, {config.pooling} pooling",
        "cnn": f"CNN (Kim 2014): widths {'/'.join(map(str, config.cnn_widths))}, {config.cnn_maps} maps each, "
        "max over time",
        "mean": "mean of word vectors + linear (fastText-style)",
        "linear": f"TF-IDF 1-{config.linear_ngrams}-grams + "
        f"{'linear SVM' if config.linear_classifier == 'svm' else 'logistic regression'} (scikit-learn)",
    }[config.kind]
    return network if config.ensemble == 1 else f"{network}; an ensemble of {config.ensemble}"


def has_attention(config: ModelConfig) -> bool:
    """Whether the network's output carries word and sentence attention weights (what the reports show).

    HN-ATT has both levels; kind rnn with attention pooling has token weights, shown as two levels.
    """
    return config.kind == "han" or (config.kind == "rnn" and config.pooling == "attention")


def trains_by_gradient(config: ModelConfig) -> bool:
    """Whether the network is trained by han's gradient loop (every kind but linear, which scikit-learn fits)."""
    return config.kind != "linear"


def _construct(
    config: ModelConfig, vocab_size: int, embedding_dim: int, num_classes: int, sparse_embedding: bool
) -> nn.Module:
    if config.ensemble == 1:
        return _construct_one(config, vocab_size, embedding_dim, num_classes, sparse_embedding)
    return Ensemble(
        lambda: _construct_one(config, vocab_size, embedding_dim, num_classes, sparse_embedding), config.ensemble
    )


def _construct_one(
    config: ModelConfig, vocab_size: int, embedding_dim: int, num_classes: int, sparse_embedding: bool
) -> nn.Module:
    if config.kind in ("han", "han_avg", "han_max"):
        pooling = {"han": "attention", "han_avg": "mean", "han_max": "max"}[config.kind]
        return HierarchicalAttentionNetwork(vocab_size, embedding_dim, num_classes, config, sparse_embedding, pooling)
    if config.kind == "linear":
        return TfidfLinearModel(vocab_size, num_classes, config)
    network = {"rnn": FlatRecurrentNetwork, "cnn": ConvolutionalNetwork, "mean": MeanEmbeddingNetwork}[config.kind]
    return network(vocab_size, embedding_dim, num_classes, config, sparse_embedding)


# What sizes each top-level part of a network: the setting to lower when it does not fit.
_SETTING_OF_PART = {
    "embedding": "preprocess.max_vocab or embeddings.dim",
    "word_encoder": "model.word_hidden",
    "encoder": "model.word_hidden",
    "word_attention": "model.attention_dim",
    "attention": "model.attention_dim",
    "sentence_encoder": "model.sentence_hidden",
    "sentence_attention": "model.attention_dim",
    "convolutions": "model.cnn_maps",
    "classifier": "model.sentence_hidden",
}


@contextlib.contextmanager
def _shapes_only() -> Iterator[None]:
    """`nn.init.normal_` as a no-op while a network is built on the meta device to count its parameters.

    Counting needs shapes only, and torch's meta `normal_` (nn.Embedding's initialiser) first imports
    torch's Python reference kernels: 1.2 s of every `han evaluate` and `han predict` here.
    """
    normal = nn.init.normal_
    nn.init.normal_ = lambda tensor, *args, **kwargs: tensor
    try:
        yield
    finally:
        nn.init.normal_ = normal


def parameter_counts(config: ModelConfig, vocab_size: int, embedding_dim: int, num_classes: int) -> dict[str, int]:
    """Parameters of the network by the setting that sizes each part (counted on the meta device, no memory used).

    A linear model's size is known only once fitted (its n-gram table); it is not counted here.
    """
    if config.kind == "linear":
        return {}
    with torch.device("meta"), _shapes_only():
        network = _construct(config, vocab_size, embedding_dim, num_classes, sparse_embedding=False)
    counts: dict[str, int] = {}
    for member in members(network):  # model.ensemble: every member's parts count
        for name, part in member.named_children():
            setting = _SETTING_OF_PART.get(name, "model")
            counts[setting] = counts.get(setting, 0) + sum(p.numel() for p in part.parameters())
    return counts


def available_memory_bytes() -> int | None:
    """Memory this process can still allocate: MemAvailable (or free pages), capped by a cgroup v2 limit; None if unknown."""
    available: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return available


def check_model_fits(
    config: ModelConfig, vocab_size: int, embedding_dim: int, num_classes: int, training: bool = False
) -> None:
    """Raise `ConfigError` naming the largest setting when the network would not fit in the available memory.

    Counted: the fp32 weights, and for `training` also their gradients and two optimizer moments (4 copies).
    """
    if config.kind == "linear" and sum(vocab_size**n for n in range(1, config.linear_ngrams + 1)) >= 2**63:
        raise ConfigError(  # an n-gram's key (han/models/linear.py) must fit in 64 bits
            f"model.linear_ngrams {config.linear_ngrams} with a vocabulary of {vocab_size:,} words has too many "
            "possible n-grams to number; lower preprocess.max_vocab or model.linear_ngrams"
        )
    counts = parameter_counts(config, vocab_size, embedding_dim, num_classes)
    copies = 4 if training else 1
    total = sum(counts.values())
    needed = total * 4 * copies  # 4 bytes a float32
    available = available_memory_bytes()
    if not counts or available is None or needed <= available:
        return
    largest = max(counts, key=lambda name: counts[name])
    parts = {
        "preprocess.max_vocab or embeddings.dim": f"the embedding table, {vocab_size:,} words x {embedding_dim}",
        "model.word_hidden": f"the word encoder, model.word_hidden={config.word_hidden}",
        "model.sentence_hidden": f"the sentence encoder, model.sentence_hidden={config.sentence_hidden}",
        "model.attention_dim": f"the attention, model.attention_dim={config.attention_dim}",
        "model.cnn_maps": f"the convolutions, model.cnn_maps={config.cnn_maps}",
    }
    what = "weights, gradients and optimizer state" if training else "weights"
    ensemble = f", or model.ensemble ({config.ensemble} networks)" if config.ensemble > 1 else ""
    raise ConfigError(
        f"the model would need {_size(needed)} ({what} of {total:,} parameters) but only "
        f"{_size(max(available, 0))} of memory is available; lower {largest} "
        f"({parts.get(largest, largest)}, is the largest part){ensemble}"
    )


def _size(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def build_model(
    config: ModelConfig,
    vocab_size: int,
    embedding_dim: int,
    num_classes: int,
    sparse_embedding: bool = False,
    *,
    training: bool = False,
    multilabel: bool = False,
) -> nn.Module:
    """A freshly initialised network of the configured kind and sizes, once `check_model_fits` has found memory.

    `training` (implied by `sparse_embedding`, which only training uses) also counts gradients and optimizer state.
    `multilabel`: the logits are scored one sigmoid per label (han/evaluation/scoring.py) rather than one softmax;
    the network is the same, only `model.multilabel` says how its outputs are read.
    """
    check_model_fits(config, vocab_size, embedding_dim, num_classes, training=training or sparse_embedding)
    model = _construct(config, vocab_size, embedding_dim, num_classes, sparse_embedding)
    model.multilabel = multilabel  # type: ignore[assignment]  # a plain flag, read by han.evaluation.scoring
    return model
