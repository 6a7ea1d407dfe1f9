"""The train stage: fit the network on the encoded training split, early-stopped on validation."""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy_file

from han.atomic import write_text_atomic
from han.batching import Batch, bucketed_batches, collate
from han.checkpoint import LoopState, checkpoint_files, load_latest_checkpoint, save_checkpoint
from han.config import OUTPUT_NEUTRAL_SETTINGS, Config, TrainConfig
from han.device import autocast, check_precision, grad_scaler, set_threads, threads_per_process
from han.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    batch_loss,
    evaluate_across_ranks,
    local_batch,
    reseed_per_rank,
    setup,
    wrap_model,
)
from han.encoded import EncodedSplit
from han.errors import RunDirError, StorageError, TrainingStopped
from han.model import HierarchicalAttentionNetwork, build_model
from han.optim import LazyAdam, clip_grad_norm
from han.progress import Progress
from han.rundir import RunDir
from han.weights import save_weights

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    vocab = run.load_vocab()
    labels = run.load_labels()
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
        neutral = OUTPUT_NEUTRAL_SETTINGS.get(section, set())
        changed = sorted(key for key in ours if key not in neutral and ours[key] != theirs.get(key))
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


class StopRequest:
    """Set by SIGINT/SIGTERM while training: the loop finishes its step, checkpoints and stops."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn the first SIGINT/SIGTERM into a stop request; a second one interrupts at once."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield request
        return

    def handler(signal_number: int, frame: Any) -> None:
        if request.requested:
            raise KeyboardInterrupt
        request.signal_number = signal_number

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _train_step(
    train_model: torch.nn.Module,
    model: HierarchicalAttentionNetwork,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: Any,
    batch: Batch,
    counted: int,
    global_size: int,
    ctx: DistContext,
    config: Config,
) -> float:
    """One optimizer step on this rank's part of a global batch; returns the global batch's mean loss share."""
    with autocast(ctx.device, config.precision):
        output = train_model(batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
    # [distributed] weighted so that DDP's gradient average is the gradient of the global batch mean
    loss = batch_loss(output.logits, batch.labels, counted, global_size, ctx.world_size)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if config.train.grad_clip is not None:
        scaler.unscale_(optimizer)
        clip_grad_norm(model.parameters(), config.train.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss.item() / ctx.world_size


def train(
    config: Config,
    run_dir: Path,
    progress: Progress | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train on the run's encoded data; write best/last weights, the epoch log and the manifest entry.

    A checkpoint is written every `train.checkpoint_every_steps` steps and at each epoch end; with
    `resume` training continues from the newest intact one and ends exactly as an uninterrupted run
    would. SIGINT/SIGTERM finish the current step, write a checkpoint and raise `TrainingStopped`.
    Existing training results are only replaced with `overwrite`. Under torchrun the processes train
    one model data-parallel (han/distributed.py); rank 0 writes every file.
    """
    ctx = setup(config.device)  # [distributed] single process: rank 0 of 1
    check_precision(ctx.device, config.precision)
    progress = progress if progress is not None and ctx.is_main else Progress()
    run = RunDir(Path(run_dir))
    inputs = (
        run.config_path,
        run.vocab_path,
        run.labels_path,
        run.embeddings_path,
        run.data_path("train"),
        run.data_path("validation"),
    )
    run.require(*inputs, hint="run `han preprocess CONFIG --run-dir DIR` first")
    if ctx.is_main:
        run.claim_for_training(resume=resume, overwrite=overwrite)
    barrier(ctx)
    run.verify_artifacts(*inputs)
    if ctx.is_main:
        run.remove_stale_temporaries()
    check_same_preprocessing(config, run)
    if ctx.is_main:  # [distributed] only rank 0 writes
        run.save_config(config)
        run.record_artifacts(run.config_path)
    seed_everything(config.seed)
    set_threads(threads_per_process(config.train.threads))
    tc = config.train
    train_split = EncodedSplit.load(run.data_path("train"))
    validation_split = EncodedSplit.load(run.data_path("validation"))
    label_names = run.load_labels()
    model = build_initial_model(config, run, ctx.sparse_gradients).to(ctx.device)
    train_model = wrap_model(model, ctx)  # [distributed] DistributedDataParallel when world > 1
    reseed_per_rank(config.seed, ctx)
    optimizer = make_optimizer(model, tc)
    scaler = grad_scaler(ctx.device, config.precision)
    steps_per_epoch = math.ceil(len(train_split) / tc.batch_size)
    total_steps = steps_per_epoch * tc.max_epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, tc))
    rng = np.random.default_rng(config.seed)  # data order, one generator across epochs

    optimizers, schedulers = {"model": optimizer}, {"lr": scheduler}
    config_json = config.model_dump(mode="json")
    loop = LoopState(epoch=1, batches_done=0, global_step=0, epoch_rng_state=rng.bit_generator.state)
    if resume:
        restored = load_latest_checkpoint(run.checkpoints_path, model, optimizers, schedulers, config_json)
        if restored is None:
            log.info("%s: no checkpoint yet; training from the start", run.checkpoints_path)
        else:
            loop, path = restored
            log.info("resuming from %s (epoch %d, step %d)", path, loop.epoch, loop.global_step)
            if not ctx.is_main:  # [distributed] the checkpoint holds the epoch's loss sum over all ranks
                loop.loss_sum = 0.0

    def checkpoint() -> Path | None:
        loop.train_seconds = seconds_before + time.perf_counter() - session_start
        if ctx.world_size > 1:  # [distributed] keep the epoch's loss sum over all ranks, on rank 0
            total = all_reduce_sum([loop.loss_sum], ctx)[0]
            loop.loss_sum = total if ctx.is_main else 0.0
        if not ctx.is_main:  # [distributed] rank 0 writes the checkpoint of all ranks
            return None
        return save_checkpoint(
            run.checkpoints_path, loop, model, optimizers, schedulers, config_json, tc.keep_checkpoints
        )

    def stop_agreed() -> bool:
        """[distributed] every rank stops at the same step if any rank was asked to."""
        if ctx.world_size == 1:
            return stop_request.requested
        return all_reduce_sum([1.0 if stop_request.requested else 0.0], ctx)[0] > 0

    def stop(path: Path | None) -> TrainingStopped:
        number = stop_request.signal_number or signal.SIGTERM
        return TrainingStopped(
            f"training stopped by {signal.Signals(number).name} at epoch {loop.epoch}, step {loop.global_step}; "
            f"checkpoint {path or 'written by rank 0'}; continue with the same command plus --resume",
            number,
        )

    session_start, seconds_before = time.perf_counter(), loop.train_seconds
    with stop_on_signals() as stop_request:
        try:
            while not loop.finished:
                rng.bit_generator.state = loop.epoch_rng_state
                batches = list(bucketed_batches(train_split, tc.batch_size, rng))
                model.train()
                epoch_start, session_docs = time.perf_counter(), 0
                progress.start(f"epoch {loop.epoch}/{tc.max_epochs}", len(train_split))
                if loop.seen:
                    progress.advance(loop.seen)
                for global_indices in batches[loop.batches_done :]:
                    indices, counted = local_batch(global_indices, ctx)  # [distributed] this rank's part
                    batch = collate(train_split, indices).to(ctx.device)
                    loss = _train_step(
                        train_model,
                        model,
                        optimizer,
                        scheduler,
                        scaler,
                        batch,
                        counted,
                        len(global_indices),
                        ctx,
                        config,
                    )
                    loop.loss_sum += loss * len(global_indices)  # [distributed] summed over ranks at epoch end
                    loop.seen += len(global_indices)
                    loop.batches_done += 1
                    loop.global_step += 1
                    session_docs += len(global_indices)
                    elapsed = time.perf_counter() - epoch_start
                    progress.advance(
                        len(global_indices),
                        loss=loop.loss_sum / loop.seen,
                        docs_per_s=session_docs / max(elapsed, 1e-9),
                    )
                    last_of_epoch = loop.batches_done == len(batches)  # the epoch-end checkpoint follows
                    stopping = not last_of_epoch and stop_agreed()
                    if stopping or (not last_of_epoch and loop.global_step % tc.checkpoint_every_steps == 0):
                        path = checkpoint()
                        if stopping:
                            raise stop(path)
                progress.stop()
                if ctx.world_size > 1:  # [distributed] each rank summed its own share of the losses
                    loop.loss_sum = all_reduce_sum([loop.loss_sum], ctx)[0]
                lr = scheduler.get_last_lr()[0]
                _finish_epoch(
                    loop,
                    model,
                    validation_split,
                    label_names,
                    run,
                    config,
                    lr,
                    time.perf_counter() - epoch_start,
                    session_docs,
                    ctx,
                )
                loop.epoch, loop.batches_done, loop.epoch_rng_state = loop.epoch + 1, 0, rng.bit_generator.state
                loop.loss_sum, loop.seen = 0.0, 0
                path = checkpoint()
                if stop_agreed() and not loop.finished:
                    raise stop(path)
        except StorageError as error:
            newest = checkpoint_files(run.checkpoints_path)
            where = f"the newest intact checkpoint is {newest[0]}" if newest else "no checkpoint was written yet"
            raise StorageError(f"{error}; training stopped: {where}; rerun with --resume once there is space") from None
        finally:
            progress.stop()
    seconds = loop.train_seconds
    result = TrainResult(
        epochs_run=len(loop.history),
        best_epoch=loop.best_epoch,
        best_metric=float(loop.best if loop.best is not None else float("nan")),
        metric_name=f"validation_{tc.early_stopping_metric}",
        seconds=round(seconds, 3),
        docs_per_second=round(loop.trained_docs / max(seconds, 1e-9), 1),
        history=loop.history,
    )
    if ctx.is_main:
        summary = {k: v for k, v in result.__dict__.items() if k != "history"}
        run.update_manifest(train={**summary, "world_size": ctx.world_size, "device": str(ctx.device)})
    barrier(ctx)  # [distributed] every rank returns once rank 0's files are written
    return result


def _finish_epoch(
    loop: LoopState,
    model: HierarchicalAttentionNetwork,
    validation_split: EncodedSplit,
    label_names: list[str],
    run: RunDir,
    config: Config,
    lr: float,
    epoch_seconds: float,
    session_docs: int,
    ctx: DistContext,
) -> None:
    """Validate, log the epoch, save last/best weights and update the early-stopping state in `loop`.

    [distributed] Validation is scored across ranks (the same metrics on every rank, so early stopping
    agrees); only rank 0 writes."""
    tc = config.train
    loop.trained_docs += loop.seen
    validation = evaluate_across_ranks(model, validation_split, label_names, tc.eval_batch_size, config.precision, ctx)
    record = {
        "epoch": loop.epoch,
        "train_loss": loop.loss_sum / max(loop.seen, 1),
        "validation_loss": validation["loss"],
        "validation_accuracy": validation["accuracy"],
        "validation_macro_f1": validation["macro_f1"],
        "lr": lr,
        "seconds": round(epoch_seconds, 3),
        "docs_per_s": round(session_docs / max(epoch_seconds, 1e-9), 1),
    }
    loop.history.append(record)
    written = []
    if ctx.is_main:
        write_text_atomic(run.train_log_path, "".join(json.dumps(r) + "\n" for r in loop.history))
        log.info("epoch %d: %s", loop.epoch, {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})
        save_weights(model, run.last_weights_path)
        written += [run.train_log_path, run.last_weights_path]
    value = validation[tc.early_stopping_metric]
    if _is_better(value, loop.best, tc.early_stopping_metric):
        loop.best, loop.best_epoch, loop.stale_epochs = value, loop.epoch, 0
        if ctx.is_main:
            save_weights(model, run.best_weights_path)
            written.append(run.best_weights_path)
    else:
        loop.stale_epochs += 1
        if loop.stale_epochs >= tc.early_stopping_patience:
            log.info("early stopping: no %s improvement for %d epochs", tc.early_stopping_metric, loop.stale_epochs)
            loop.finished = True
    if written:
        run.record_artifacts(*written)
    if loop.epoch >= tc.max_epochs:
        loop.finished = True
