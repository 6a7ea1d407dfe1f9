"""Initial word vectors: gensim word2vec (or FastText) on the training sentences, or a word2vec/GloVe/fastText
vectors file."""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from gensim.models import FastText, KeyedVectors, Word2Vec
from gensim.models.callbacks import CallbackAny2Vec
from gensim.models.fasttext import FastTextKeyedVectors, load_facebook_vectors

from han.config import EmbeddingsConfig
from han.errors import DataError
from han.progress import Progress
from han.store.vocab import PAD_ID, UNK_ID, Vocab
from han.util.cpus import available_cores
from han.util.files import check_user_file

log = logging.getLogger(__name__)


class _EpochProgress(CallbackAny2Vec):
    """Advances a progress bar at each word2vec epoch, with the words trained per second."""

    def __init__(self, progress: Progress, epochs: int) -> None:
        self.progress, self.epochs, self.started = progress, epochs, 0.0

    def on_train_begin(self, model: Word2Vec) -> None:
        self.progress.start(type(model).__name__.lower(), self.epochs, unit="epochs")  # word2vec or fasttext

    def on_epoch_begin(self, model: Word2Vec) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, model: Word2Vec) -> None:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        self.progress.advance(1, words_per_s=int(model.corpus_total_words / seconds))

    def on_train_end(self, model: Word2Vec) -> None:
        self.progress.stop()


AUTO_WORD_UPDATES = 20_000_000  # `epochs: auto`: passes over the training words to reach about this many
MAX_AUTO_EPOCHS = 10


def word2vec_epochs(setting: int | str, train_words: int) -> int:
    """Passes word2vec makes: the configured number, or (auto) enough to train on ~20M words, 1 to 10.

    What word vectors learn depends on how many words they were trained on: a small corpus needs
    many passes, a large one few (word2vec was made for one pass over billions). Corpora under 2M
    training words get 10 (the clothing reviews, R8, BBC: as before); 6.7M words get 3; 20M+ one.
    """
    if setting != "auto":
        return int(setting)
    return max(1, min(MAX_AUTO_EPOCHS, round(AUTO_WORD_UPDATES / max(train_words, 1))))


def word2vec_workers(setting: int | None) -> int:
    """Threads word2vec trains with: the configured number, or every available core."""
    return setting or available_cores()


def train_word2vec(
    sentences: Iterable[Sequence[str]],
    config: EmbeddingsConfig,
    seed: int,
    progress: Progress | None = None,
    train_words: int = 0,
) -> KeyedVectors:
    """Train word2vec (CBOW or skip-gram) on tokenised training sentences; `progress` advances once per epoch.

    `train_words` (the training split's token count) sets the passes of `epochs: auto`.
    """
    epochs = word2vec_epochs(config.epochs, train_words)
    model = (FastText if config.subwords else Word2Vec)(
        callbacks=[_EpochProgress(progress, epochs)] if progress is not None else (),
        sentences=sentences,
        vector_size=config.dim,
        sg=1 if config.algorithm == "skipgram" else 0,
        window=config.window,
        min_count=config.min_count,
        negative=config.negative,
        epochs=epochs,
        workers=word2vec_workers(config.workers),
        seed=seed,
    )
    return model.wv


def load_vectors_file(path: str | Path, file_format: str) -> KeyedVectors:
    """Read vectors in word2vec text/binary format, GloVe's header-less text format or a fastText .bin model (its
    own binary layout, read field by field: nothing is unpickled)."""
    path = Path(path)
    check_user_file(path, "vectors file", DataError, option="embeddings.path")
    try:
        if file_format == "fasttext_binary":
            return load_facebook_vectors(str(path))
        return KeyedVectors.load_word2vec_format(
            str(path),
            binary=file_format == "word2vec_binary",
            no_header=file_format == "glove",
            unicode_errors="replace",
        )
    except (ValueError, UnicodeDecodeError, EOFError, struct.error, NotImplementedError, MemoryError) as error:
        raise DataError(f"{path}: not a {file_format} vectors file ({error}); check embeddings.format") from None


def embedding_matrix(vocab: Vocab, vectors: KeyedVectors | None, dim: int, seed: int) -> tuple[np.ndarray, int]:
    """A (len(vocab), dim) float32 matrix in vocab order and the number of words found in `vectors`.

    Words without a vector get small random values scaled like the known vectors; padding is zero.
    """
    rng = np.random.default_rng(seed)
    if vectors is not None and vectors.vector_size != dim:
        raise DataError(
            f"the vectors have {vectors.vector_size} dimensions but embeddings.dim is {dim}; set embeddings.dim={vectors.vector_size}"
        )
    scale = float(np.std(vectors.vectors)) if vectors is not None and len(vectors) else 0.1
    matrix = rng.normal(0.0, scale, size=(len(vocab), dim)).astype(np.float32)
    found = 0
    if vectors is not None:
        subwords = isinstance(vectors, FastTextKeyedVectors) and vectors.bucket > 0
        for i, word in enumerate(vocab.words):
            j = vectors.key_to_index.get(word)
            if j is not None:
                matrix[i] = vectors.vectors[j]
                found += 1
            elif subwords and i not in (PAD_ID, UNK_ID):  # FastText: an unlisted word gets its n-grams' vectors
                matrix[i] = vectors.get_vector(word)
                found += 1
    matrix[PAD_ID] = 0.0
    return matrix, found
