"""The train stage: fit the network on the encoded training split, early-stopped on validation."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy_file
from safetensors.torch import load_file, save_file

from han.artifacts import RunDir, atomic_path, read_json, write_text_atomic
from han.batching import EncodedSplit, bucketed_batches, collate
from han.config import Config, TrainConfig
from han.device import autocast, check_precision, grad_scaler
from han.distributed import (
    all_reduce_sum,
    barrier,
    batch_loss,
    evaluate_sharded,
    local_batch,
    reseed_per_rank,
    setup,
    threads_per_process,
    wrap_model,
)
from han.errors import RunDirError
from han.model import HierarchicalAttentionNetwork, build_model
from han.optim import LazyAdam, clip_grad_norm
from han.progress import Progress
from han.vocab import Vocab

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or os.cpu_count() or 1)


def load_label_names(run: RunDir) -> list[str]:
    data = read_json(run.labels_path)
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise RunDirError(f'{run.labels_path}: not a han label file (expected {{"labels": [...]}})')
    return labels


def save_weights(model: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load safetensors weights (never a pickle) into `model`, strictly."""
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise RunDirError(f"{path}: weights missing; run `han train` first") from None
    except Exception as error:  # safetensors raises its own error type for damaged files
        raise RunDirError(f"{path}: not a readable safetensors file ({error})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise RunDirError(f"{path}: weights do not fit the configured model ({str(error).splitlines()[0]})") from None


def uses_sparse_embedding(config: Config, sparse_gradients: bool = True) -> bool:
    """Row-sparse embedding gradients; `sparse_gradients` False where the all-reduce has no sparse form (NCCL)."""
    return (
        config.train.optimizer == "adam"
        and config.train.lazy_embedding_updates
        and not config.model.freeze_embeddings
        and sparse_gradients
    )


def build_initial_model(config: Config, run: RunDir, sparse_gradients: bool = True) -> HierarchicalAttentionNetwork:
    """The configured network with its embedding initialised from the run's vectors."""
    vocab = Vocab.load(run.vocab_path)
    labels = load_label_names(run)
    vectors = load_numpy_file(str(run.embeddings_path))["embeddings"]
    if vectors.shape[0] != len(vocab):
        raise RunDirError(
            f"{run.embeddings_path}: {vectors.shape[0]} vectors for a vocabulary of {len(vocab)}; rerun `han preprocess`"
        )
    sparse = uses_sparse_embedding(config, sparse_gradients)
    model = build_model(config.model, len(vocab), vectors.shape[1], len(labels), sparse)
    model.load_embeddings(vectors)
    return model


def check_same_preprocessing(config: Config, run: RunDir) -> None:
    """Refuse to train with data, preprocess or embedding settings other than those the run was preprocessed with."""
    saved = run.load_config()
    for section in ("data", "preprocess", "embeddings"):
        ours, theirs = getattr(config, section).model_dump(), getattr(saved, section).model_dump()
        changed = sorted(key for key in ours if ours[key] != theirs.get(key))
        if changed:
            raise RunDirError(
                f"{run.root}: preprocessed with different settings ({', '.join(f'{section}.{k}' for k in changed)}); "
                f"rerun `han preprocess` with this config or use another --run-dir"
            )


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return LazyAdam(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(step: int, total_steps: int, config: TrainConfig) -> float:
    """Learning-rate multiplier: linear warm-up, then constant, linear or cosine decay to zero."""
    warmup = int(config.warmup_fraction * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if config.scheduler == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if config.scheduler == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    epochs_run: int
    best_epoch: int
    best_metric: float
    metric_name: str
    seconds: float
    docs_per_second: float
    history: list[dict[str, Any]]


def _is_better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


def train(config: Config, run_dir: Path, progress: Progress | None = None) -> TrainResult:
    """Train on the run's encoded data; write best/last weights, the epoch log and the manifest entry.

    Under torchrun the processes train one model data-parallel (han/distributed.py); rank 0 writes.
    """
    ctx = setup(config.device)  # [distributed] single process: rank 0 of 1
    check_precision(ctx.device, config.precision)
    progress = progress if progress is not None and ctx.is_main else Progress()
    run = RunDir(Path(run_dir))
    run.require(
        run.vocab_path,
        run.labels_path,
        run.embeddings_path,
        run.data_path("train"),
        run.data_path("validation"),
        hint="run `han preprocess CONFIG --run-dir DIR` first",
    )
    check_same_preprocessing(config, run)
    if ctx.is_main:  # [distributed] only rank 0 writes
        run.save_config(config)
    seed_everything(config.seed)
    set_threads(threads_per_process(config.train.threads))
    tc = config.train
    train_split = EncodedSplit.load(run.data_path("train"))
    validation_split = EncodedSplit.load(run.data_path("validation"))
    label_names = load_label_names(run)
    model = build_initial_model(config, run, ctx.sparse_gradients).to(ctx.device)
    train_model = wrap_model(model, ctx)  # [distributed] DistributedDataParallel when world > 1
    reseed_per_rank(config.seed, ctx)
    optimizer = make_optimizer(model, tc)
    scaler = grad_scaler(ctx.device, config.precision)
    steps_per_epoch = math.ceil(len(train_split) / tc.batch_size)
    total_steps = steps_per_epoch * tc.max_epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, tc))
    rng = np.random.default_rng(config.seed)

    history: list[dict[str, Any]] = []
    best: float | None = None
    best_epoch = 0
    stale_epochs = 0
    started = time.perf_counter()
    trained_docs = 0
    for epoch in range(1, tc.max_epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        loss_sum, seen = 0.0, 0
        progress.start(f"epoch {epoch}/{tc.max_epochs}", len(train_split))
        for global_indices in bucketed_batches(train_split, tc.batch_size, rng):
            indices, counted = local_batch(global_indices, ctx)  # [distributed] this rank's part
            batch = collate(train_split, indices).to(ctx.device)
            with autocast(ctx.device, config.precision):
                output = train_model(batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
            # mean over the global batch once DDP averages the ranks' gradients
            loss = batch_loss(output.logits, batch.labels, counted, len(global_indices), ctx.world_size)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tc.grad_clip is not None:
                scaler.unscale_(optimizer)
                clip_grad_norm(model.parameters(), tc.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.item() * len(global_indices) / ctx.world_size
            seen += counted
            elapsed = time.perf_counter() - epoch_start
            progress.advance(len(global_indices), loss=loss_sum / max(seen, 1), docs_per_s=seen / max(elapsed, 1e-9))
        progress.stop()
        loss_sum, seen = all_reduce_sum([loss_sum, seen], ctx)  # [distributed] epoch totals over ranks
        seen = int(seen)
        epoch_seconds = time.perf_counter() - epoch_start
        trained_docs += seen
        validation = evaluate_sharded(  # [distributed] scored across ranks; same metrics on every rank
            model, validation_split, label_names, tc.eval_batch_size, config.precision, ctx
        )
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / max(seen, 1),
            "validation_loss": validation["loss"],
            "validation_accuracy": validation["accuracy"],
            "validation_macro_f1": validation["macro_f1"],
            "lr": scheduler.get_last_lr()[0],
            "seconds": round(epoch_seconds, 3),
            "docs_per_s": round(seen / max(epoch_seconds, 1e-9), 1),
        }
        history.append(record)
        if ctx.is_main:  # [distributed] only rank 0 writes and logs
            write_text_atomic(run.train_log_path, "".join(json.dumps(r) + "\n" for r in history))
            log.info("epoch %d: %s", epoch, {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})
            save_weights(model, run.last_weights_path)
        value = validation[tc.early_stopping_metric]
        if _is_better(value, best, tc.early_stopping_metric):
            best, best_epoch, stale_epochs = value, epoch, 0
            if ctx.is_main:
                save_weights(model, run.best_weights_path)
        else:
            stale_epochs += 1
            if stale_epochs >= tc.early_stopping_patience:
                log.info("early stopping: no %s improvement for %d epochs", tc.early_stopping_metric, stale_epochs)
                break
    seconds = time.perf_counter() - started
    result = TrainResult(
        epochs_run=len(history),
        best_epoch=best_epoch,
        best_metric=float(best if best is not None else float("nan")),
        metric_name=f"validation_{tc.early_stopping_metric}",
        seconds=round(seconds, 3),
        docs_per_second=round(trained_docs / max(seconds, 1e-9), 1),
        history=history,
    )
    if ctx.is_main:
        summary = {k: v for k, v in result.__dict__.items() if k != "history"}
        run.update_manifest(train={**summary, "world_size": ctx.world_size, "device": str(ctx.device)})
    barrier(ctx)  # [distributed] every rank returns once rank 0's files are written
    return result
