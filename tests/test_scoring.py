"""The one scoring loop: batches follow the model's device, results come back to the CPU in split order."""

import random
from types import SimpleNamespace

import numpy as np
import torch

from conftest import make_document
from han.evaluation.scoring import score_split
from han.store.encoded import EncodedSplit


class DeviceRecordingModel(torch.nn.Module):
    """Parameters on the `meta` device (no real accelerator needed); records where its inputs live and
    answers with CPU tensors whose values identify each document (its token-id sum)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.classifier = torch.nn.Linear(4, classes, device="meta")
        self.input_devices: list[torch.device] = []

    def forward(self, word_ids, sentence_lengths, sentence_counts):
        self.input_devices += [word_ids.device, sentence_lengths.device, sentence_counts.device]
        # Only shapes can be read from meta tensors; the numbers below come from what the CPU knows.
        batch, sentences = sentence_counts.shape[0], int(self.max_sentences)
        logits = torch.arange(batch * 3, dtype=torch.float32).reshape(batch, 3)
        sentence_attention = torch.full((batch, sentences), 1.0 / sentences)
        word_attention = torch.full((batch, sentences, word_ids.shape[1]), 0.25)
        return SimpleNamespace(logits=logits, sentence_attention=sentence_attention, word_attention=word_attention)


def test_batches_follow_the_model_device_and_results_come_back_to_the_cpu(monkeypatch):
    split = EncodedSplit.from_documents([[[2, 3], [4]], [[5, 6, 7]], [[8], [9, 10], [11]]], [0, 1, 2])
    model = DeviceRecordingModel()
    model.max_sentences = 3
    moved = []
    original_to = torch.Tensor.to

    def spy(tensor, *args, **kwargs):
        moved.append(torch.device(args[0]) if args else kwargs.get("device"))
        return original_to(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    scores = score_split(model, split, batch_size=2, attention=True)
    monkeypatch.undo()
    assert model.input_devices and all(d.type == "meta" for d in model.input_devices)
    assert torch.device("meta") in moved
    assert isinstance(scores.probabilities, np.ndarray) and scores.probabilities.shape == (3, 3)
    np.testing.assert_allclose(scores.probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert scores.sentence_weights is not None and scores.sentence_weights.shape == (6,)
    assert scores.word_weights is not None and scores.word_weights.shape == (10,)
    assert np.all(scores.word_weights == np.float32(0.25))
    assert model.training  # restored after scoring in eval mode


def test_scoring_chunks_in_worker_processes_gives_the_same_rows_and_probabilities(trained_run):
    from han.serving.inference import predict_rows
    from han.serving.trained import load_trained_run

    rng = random.Random(3)
    texts = [make_document(rng, label) for label in ["sport", "tech", "food"] * 12]
    texts[5] = "word " * 300_000  # longer than max_chars: cut, and counted, in this process
    texts[9] = ""  # no token: one unknown word
    here = load_trained_run(trained_run)
    ahead = load_trained_run(trained_run)
    in_process = list(predict_rows(here, texts, chunk_size=5))
    with_worker = list(predict_rows(ahead, texts, chunk_size=5, processes=2))
    assert [row for row, _ in with_worker] == list(range(1, len(texts) + 1))
    assert [row for row, _ in in_process] == [row for row, _ in with_worker]
    np.testing.assert_array_equal(np.stack([p for _, p in in_process]), np.stack([p for _, p in with_worker]))
    assert ahead.text_stats.as_dict() == here.text_stats.as_dict() and ahead.text_stats.truncated == 1
    shard = list(predict_rows(ahead, texts, chunk_size=5, shard=(1, 2), processes=2))
    assert [row for row, _ in shard] == [r for r, _ in in_process if ((r - 1) // 5) % 2 == 1]


def test_scoring_batches_in_worker_processes_gives_the_same_probabilities(trained_run):
    from han.serving.trained import load_trained_run

    trained = load_trained_run(trained_run)
    split = trained.run.load_split("test")
    in_process = score_split(trained.model, split, batch_size=3)
    in_workers = score_split(trained.model, split, batch_size=3, processes=2)
    assert len(split) > 3 * 2  # more batches than workers: the work is shared out
    np.testing.assert_array_equal(in_process.probabilities, in_workers.probabilities)
    assert not trained.model.training
