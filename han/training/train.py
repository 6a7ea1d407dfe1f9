"""The train stage: fit the network on the encoded training split, early-stopped on validation."""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy_file

from han.config import OUTPUT_NEUTRAL_SETTINGS, Config
from han.errors import ConfigError, RunDirError, StorageError, TrainingDiverged, TrainingStopped
from han.models.build import build_model, check_model_fits, trains_by_gradient
from han.models.ensemble import members
from han.models.ngrams import WideChannel
from han.progress import Progress
from han.store.encoded import EncodedSplit
from han.store.rundir import RunDir
from han.store.weights import save_weights
from han.text.batching import Batch, bucketed_batches, collate
from han.training.calibrate import choose_run_thresholds
from han.training.checkpoint import LoopState, checkpoint_files, load_latest_checkpoint, save_checkpoint
from han.training.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    batch_loss,
    evaluate_across_ranks,
    gather_rng_states,
    local_batch,
    reseed_per_rank,
    setup,
    wrap_model,
)
from han.training.fit_linear import NgramTable, fit_linear, fit_ngram_classifier, ngram_table
from han.training.optim import clip_grad_norm, lr_factor, make_optimizer
from han.util.allocator import keep_freed_memory
from han.util.atomic import write_text_atomic
from han.util.cpus import adjust_threads, threads_report, use_threads
from han.util.device import autocast, check_precision, grad_scaler
from han.util.signals import StopRequest, stop_on_signals

log = logging.getLogger(__name__)

# fp16 only: steps in a row whose loss overflowed (and that the loss scaler skipped) before training counts as diverged.
FP16_OVERFLOWS_TOLERATED = 20
FITTED_BIAS_LIMIT = 10.0  # model.wide_weights fitted: the class biases start within +/- this


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's random number generators with `seed`."""
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


def build_initial_model(
    config: Config,
    run: RunDir,
    sparse_gradients: bool = True,
    label_rates: np.ndarray | None = None,
    train_split: EncodedSplit | None = None,
) -> torch.nn.Module:
    """The configured network with its embedding initialised from the run's vectors.

    `label_rates` (multi-label: each label's share of training documents) start the classifier's biases
    at the labels' log-odds, so the first steps learn what tells documents apart instead of pushing
    every one of many rare labels' logits down from 0 (a probability of 0.5) first. `train_split`: the
    run's training split when the caller has it loaded (`model.wide` fits its n-gram table on it)."""
    vocab = run.load_vocab()
    labels = run.load_labels()
    vectors = load_numpy_file(str(run.embeddings_path))["embeddings"]
    if vectors.shape[0] != len(vocab):
        raise RunDirError(
            f"{run.embeddings_path}: {vectors.shape[0]} vectors for a vocabulary of {len(vocab)}; rerun `han preprocess`"
        )
    sparse = uses_sparse_embedding(config, sparse_gradients)
    model = build_model(
        config.model, len(vocab), vectors.shape[1], len(labels), sparse, training=True, multilabel=config.multilabel
    )
    model.load_embeddings(vectors)  # type: ignore[operator]
    networks = members(model)  # model.ensemble: each member gets the same table, fitted weights and biases
    wides: list[WideChannel] = []
    for network in networks:
        if isinstance(wide := getattr(network, "wide", None), WideChannel):
            wides.append(wide)
    if wides:  # model.wide: the n-gram table of the training split
        train = train_split if train_split is not None else EncodedSplit.load(run.data_path("train"))
        table = ngram_table(train, vocab, config.model)
        for wide in wides:  # each its own copy: safetensors saves no tensor twice
            wide.set_table(table.keep.clone(), table.keys.clone(), table.idf.clone())
        log.info("wide channel: %d n-gram features", wides[0].num_features)
        if config.model.wide_weights == "fitted":
            hold_fitted_wide_weights(networks, wides, table, train, len(labels), config, run)
            label_rates = None  # the fitted intercepts already hold each label's base rate
    if label_rates is not None:
        rates = np.clip(label_rates, 1e-4, 1 - 1e-4)
        for network in networks:
            start_class_biases(network, torch.from_numpy(np.log(rates / (1 - rates))))
    return model


def start_class_biases(network: torch.nn.Module, bias: torch.Tensor) -> None:
    """Set a network's output layer biases (its `classifier`) to `bias`."""
    classifier = network.get_submodule("classifier")
    assert isinstance(classifier, torch.nn.Linear)
    with torch.no_grad():
        classifier.bias.copy_(bias)


def hold_fitted_wide_weights(
    networks: list[torch.nn.Module],
    wides: list[WideChannel],
    table: NgramTable,
    train: EncodedSplit,
    num_classes: int,
    config: Config,
    run: RunDir,
) -> None:
    """model.wide_weights fitted: the linear kind's classifier, fitted on the training split, becomes the wide
    channels' fixed weights and its intercepts the networks' starting class biases, so training starts from the
    linear model's scores and the networks learn what they miss."""
    start = time.perf_counter()
    weight, bias = fit_ngram_classifier(wides[0], table, train, num_classes, config, run)
    for network, wide in zip(networks, wides, strict=True):
        wide.hold_weights(weight.float())
        # A class training never saw has a -1e4 intercept; -10 keeps it unpredicted without a huge logit.
        start_class_biases(network, bias.clamp(-FITTED_BIAS_LIMIT, FITTED_BIAS_LIMIT).float())
    log.info(
        "wide channel: %s fitted in %.1f s, held fixed", config.model.linear_classifier, time.perf_counter() - start
    )


def check_same_preprocessing(config: Config, run: RunDir) -> None:
    """Refuse to train with data, preprocess or embedding settings other than those the run was preprocessed with."""
    saved = run.load_config()
    if saved.task != config.task:
        raise RunDirError(
            f"{run.root}: preprocessed for task {saved.task}, but this config's task is {config.task}; "
            "a multi-label run and a single-label run cannot share a run directory: use another --run-dir"
        )
    for section in ("data", "preprocess", "embeddings"):
        ours, theirs = getattr(config, section).model_dump(), getattr(saved, section).model_dump()
        neutral = OUTPUT_NEUTRAL_SETTINGS.get(section, set())
        changed = sorted(key for key in ours if key not in neutral and ours[key] != theirs.get(key))
        if changed:
            raise RunDirError(
                f"{run.root}: preprocessed with different settings ({', '.join(f'{section}.{k}' for k in changed)}); "
                f"rerun `han preprocess` with this config or use another --run-dir"
            )


POSITIVE_WEIGHT_CAP = 100.0  # train.positive_weight balanced: no label's positives weigh more than this


def positive_weights(split: EncodedSplit, mode: str, device: torch.device) -> torch.Tensor | None:
    """Per-label weights of positive documents in the binary cross-entropy (multi-label, `train.positive_weight`)."""
    if not split.multilabel or mode == "none":
        return None
    positives = split.labels.sum(axis=0).astype(np.float64)  # (C,)
    ratio = np.clip((len(split) - positives) / np.maximum(positives, 1.0), 1.0, POSITIVE_WEIGHT_CAP)
    weights = np.sqrt(ratio) if mode == "sqrt" else ratio
    return torch.tensor(weights, dtype=torch.float32, device=device)


def member_batch_orders(num_members: int, num_batches: int, seed: int, epoch: int) -> list[np.ndarray]:
    """model.ensemble: the order each member reads an epoch's batches in; member 0 (a single network) in theirs.

    The other members' orders come from the seed and the epoch alone, not from the batching generator, so
    member 0 trains exactly as the single network of the seed would, and a resumed epoch has the same orders."""
    orders = [np.arange(num_batches)]
    for member in range(1, num_members):
        orders.append(np.random.default_rng([seed, epoch, member]).permutation(num_batches))
    return orders


@dataclass(frozen=True)
class MemberPart:
    """One ensemble member's share of a training batch (a single network is the one member)."""

    documents: int  # this rank's documents of the member's batch, in the collated batch
    counted: int  # how many of them count (0: a rank's placeholder document, han.training.distributed.local_batch)
    global_size: int  # the member's whole batch, over all ranks


@dataclass
class TrainResult:
    """Outcome of training: epochs run, the best epoch and its metric, time, speed and the per-epoch log."""

    epochs_run: int
    best_epoch: int
    best_metric: float
    metric_name: str
    seconds: float
    docs_per_second: float
    history: list[dict[str, Any]]


def is_better_epoch(record: dict[str, Any], best: dict[str, Any] | None, metric: str) -> bool:
    """Early stopping: does epoch `record` beat the best so far (None: there is none yet)?

    Better means a better validation `metric`; for a metric other than the loss, an equal one with a
    lower validation loss is better too. Accuracy and F1 move in steps of one document, so on a small
    validation split (BBC's 178 articles) several epochs tie, and the first of them is rarely the best
    model: the loss still tells them apart."""
    if best is None:
        return True
    value, best_value = record[f"validation_{metric}"], best[f"validation_{metric}"]
    if metric == "loss":
        return bool(value < best_value)
    return bool(value > best_value or (value == best_value and record["validation_loss"] < best["validation_loss"]))


def prepare_run(config: Config, run: RunDir, ctx: DistContext, *, resume: bool, overwrite: bool) -> None:
    """Check the run directory's preprocessing and claim it for training (rank 0 writes the config)."""
    inputs = (
        run.config_path,
        run.vocab_path,
        run.labels_path,
        run.embeddings_path,
        run.data_path("train"),
        run.data_path("validation"),
    )
    run.require(*inputs, hint="run `han preprocess CONFIG --run-dir DIR` first")
    # Before anything is removed: a model that cannot fit in memory is refused now, not after --overwrite.
    check_model_fits(config.model, len(run.load_vocab()), config.embeddings.dim, len(run.load_labels()), training=True)
    if ctx.is_main:
        run.claim_for_training(resume=resume, overwrite=overwrite)
    barrier(ctx)
    run.verify_artifacts(*inputs)
    check_same_preprocessing(config, run)
    barrier(ctx)  # [distributed] every rank has verified config.json before rank 0 rewrites it
    if ctx.is_main:  # [distributed] only rank 0 writes
        run.remove_stale_temporaries()
        run.save_config(config)
        run.record_artifacts(run.config_path)


class TrainingSession:
    """One training session: the model, its optimizer state, the data and the loop position.

    `train` builds it (fresh, or restored from the newest checkpoint) and runs `run_epoch` until the
    loop is finished. Under torchrun every rank holds one; rank 0 writes every file.
    """

    def __init__(
        self,
        config: Config,
        run: RunDir,
        ctx: DistContext,
        progress: Progress,
        resume: bool,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config, self.run, self.ctx, self.progress = config, run, ctx, progress
        self.on_epoch = on_epoch  # called with each epoch's record at the end of `finish_epoch`
        tc = config.train
        seed_everything(config.seed)
        use_threads(tc.threads)
        keep_freed_memory()  # each step's large tensors reuse the last step's pages (han/util/allocator.py)
        self.train_split = EncodedSplit.load(run.data_path("train"))
        self.validation_split = EncodedSplit.load(run.data_path("validation"))
        self.label_names = run.load_labels()
        rates = self.train_split.labels.mean(axis=0) if self.train_split.multilabel else None
        self.model = build_initial_model(config, run, ctx.sparse_gradients, rates, self.train_split).to(ctx.device)
        self.train_model = wrap_model(self.model, ctx)  # [distributed] DistributedDataParallel when world > 1
        reseed_per_rank(config.seed, ctx)
        self.optimizer = make_optimizer(self.model, tc, len(self.train_split))
        for group in self.optimizer.param_groups[1:]:  # model.wide's learnt n-gram weights: their own rate
            auto = " (auto: 1 / steps an epoch)" if tc.wide_lr == "auto" else ""
            log.info("wide channel learning rate %.4g%s", group["lr"], auto)
        self.positive_weight = positive_weights(self.train_split, tc.positive_weight, ctx.device)
        self.scaler = grad_scaler(ctx.device, config.precision)
        total_steps = math.ceil(len(self.train_split) / tc.batch_size) * tc.max_epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, total_steps, tc)
        )
        self.rng = np.random.default_rng(config.seed)  # data order, one generator across epochs
        self.config_json = config.model_dump(mode="json")
        self.loop = LoopState(
            epoch=1, batches_done=0, global_step=0, epoch_rng_state=dict(self.rng.bit_generator.state)
        )
        if resume:
            self._restore()
        self.stop_request = StopRequest()
        self.nonfinite_in_a_row = 0  # steps whose loss was NaN or infinite, for `check_divergence`
        self.session_start, self.seconds_before = time.perf_counter(), self.loop.train_seconds

    def _restore(self) -> None:
        restored = load_latest_checkpoint(
            self.run.checkpoints_path,
            self.model,
            {"model": self.optimizer},
            {"lr": self.scheduler},
            self.config_json,
            self.ctx.rank,
        )
        if restored is None:
            log.info("%s: no checkpoint yet; training from the start", self.run.checkpoints_path)
            return
        self.loop, path = restored
        log.info("resuming from %s (epoch %d, step %d)", path, self.loop.epoch, self.loop.global_step)
        if not self.ctx.is_main:  # [distributed] the checkpoint holds the epoch's loss sum over all ranks
            self.loop.loss_sum = 0.0

    # --- one step, one epoch ------------------------------------------------------------------
    def step(self, batch: Batch, parts: list[MemberPart]) -> float:
        """One optimizer step on this rank's part of a global batch; returns the global batch's mean loss share.

        model.ensemble: `batch` is the members' own batches one after another (`parts`, one per member)."""
        config, ctx = self.config, self.ctx
        inputs = (batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
        with autocast(ctx.device, config.precision):
            if len(parts) == 1:
                logits = self.train_model(*inputs).logits  # (B, C)
            else:
                logits = self.train_model(*inputs, [part.documents for part in parts]).logits  # (B, C)
        # [distributed] weighted so that DDP's gradient average is the gradient of the global batch mean;
        # model.ensemble: the sum of the members' own losses, so each member's gradient is the one it gets alone
        loss, first = logits.new_zeros(()), 0
        for part in parts:
            own = slice(first, first + part.documents)
            loss = loss + batch_loss(
                logits[own], batch.labels[own], part.counted, part.global_size, ctx.world_size, self.positive_weight
            )
            first = own.stop
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if config.train.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            for network in members(self.model):  # each member clipped as it would be alone
                clip_grad_norm(network.parameters(), config.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item() / ctx.world_size / len(parts)  # a member's mean loss

    def run_epoch(self) -> None:
        """Train the rest of the current epoch, validate, checkpoint; raise `TrainingStopped` on a stop request."""
        loop, tc, ctx, progress = self.loop, self.config.train, self.ctx, self.progress
        self.rng.bit_generator.state = loop.epoch_rng_state
        batches = list(bucketed_batches(self.train_split, tc.batch_size, self.rng))
        orders = member_batch_orders(len(members(self.model)), len(batches), self.config.seed, loop.epoch)
        self.model.train()
        epoch_start, session_docs = time.perf_counter(), 0
        progress.start(f"epoch {loop.epoch}/{tc.max_epochs}", len(self.train_split))
        if loop.seen:
            progress.advance(loop.seen)
        for position in range(loop.batches_done, len(batches)):
            global_indices = batches[position]  # member 0's (the single network's) batch counts the epoch
            parts, local = [], []
            for member_batch in (batches[order[position]] for order in orders):
                indices, counted = local_batch(member_batch, ctx)  # [distributed] this rank's part
                parts.append(MemberPart(len(indices), counted, len(member_batch)))
                local.append(indices)
            batch = collate(self.train_split, np.concatenate(local)).to(ctx.device)
            adjust_threads()  # follows the cores other processes leave free (unless train.threads is set)
            loss = self.step(batch, parts)
            if not math.isfinite(loss):
                self.check_divergence(loss)  # raises unless fp16's loss scaler skipped the step
                loss = 0.0  # a skipped step adds no loss to the epoch's mean
            else:
                self.nonfinite_in_a_row = 0
            loop.loss_sum += loss * len(global_indices)  # [distributed] summed over ranks at epoch end
            loop.seen += len(global_indices)
            loop.batches_done += 1
            loop.global_step += 1
            session_docs += len(global_indices)
            elapsed = time.perf_counter() - epoch_start
            progress.advance(
                len(global_indices), loss=loop.loss_sum / loop.seen, docs_per_s=session_docs / max(elapsed, 1e-9)
            )
            last_of_epoch = loop.batches_done == len(batches)  # the epoch-end checkpoint follows
            stopping = not last_of_epoch and self.stop_agreed()
            if stopping or (not last_of_epoch and loop.global_step % tc.checkpoint_every_steps == 0):
                path = self.checkpoint()
                if stopping:
                    raise self.stopped(path)
        progress.stop()
        if ctx.world_size > 1:  # [distributed] each rank summed its own share of the losses
            loop.loss_sum = all_reduce_sum([loop.loss_sum], ctx)[0]
        self.finish_epoch(float(self.scheduler.get_last_lr()[0]), time.perf_counter() - epoch_start, session_docs)
        loop.epoch, loop.batches_done, loop.epoch_rng_state = loop.epoch + 1, 0, dict(self.rng.bit_generator.state)
        loop.loss_sum, loop.seen = 0.0, 0
        path = self.checkpoint()
        if self.stop_agreed() and not loop.finished:
            raise self.stopped(path)

    def finish_epoch(self, lr: float, epoch_seconds: float, session_docs: int) -> None:
        """Validate, log the epoch, save last/best weights and update the early-stopping state.

        [distributed] Validation is scored across ranks (the same metrics on every rank, so early
        stopping agrees); only rank 0 writes."""
        loop, tc, ctx, run = self.loop, self.config.train, self.ctx, self.run
        loop.trained_docs += loop.seen
        validation = evaluate_across_ranks(
            self.model, self.validation_split, self.label_names, tc.eval_batch_size, self.config.precision, ctx
        )
        record = {
            "epoch": loop.epoch,
            "train_loss": loop.loss_sum / max(loop.seen, 1),
            "validation_loss": validation["loss"],
            "validation_accuracy": validation["accuracy"],
            "validation_macro_f1": validation["macro_f1"],
            "validation_micro_f1": validation["micro_f1"],
            "lr": lr,
            "seconds": round(epoch_seconds, 3),
            "docs_per_s": round(session_docs / max(epoch_seconds, 1e-9), 1),
        }
        loop.history.append(record)
        written = []
        if ctx.is_main:
            write_text_atomic(run.train_log_path, "".join(json.dumps(r) + "\n" for r in loop.history))
            rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}
            log.info("epoch %d: %s", loop.epoch, rounded)
            save_weights(self.model, run.last_weights_path)
            written += [run.train_log_path, run.last_weights_path]
        best_record = next((r for r in loop.history if r["epoch"] == loop.best_epoch), None)
        if is_better_epoch(record, best_record, tc.early_stopping_metric):
            loop.best, loop.best_epoch, loop.stale_epochs = validation[tc.early_stopping_metric], loop.epoch, 0
            if ctx.is_main:
                save_weights(self.model, run.best_weights_path)
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
        if self.on_epoch is not None:  # e.g. `han tune`'s pruning; what it raises ends the training here
            self.on_epoch(record)

    # --- checkpoints and stopping ---------------------------------------------------------------
    def checkpoint(self) -> Path | None:
        """Write a checkpoint of the loop (rank 0); returns its path (None on other ranks)."""
        loop, ctx = self.loop, self.ctx
        loop.train_seconds = self.seconds_before + time.perf_counter() - self.session_start
        rank_rng_states: list[torch.Tensor] = []
        if ctx.world_size > 1:  # [distributed] keep the epoch's loss sum over all ranks, on rank 0
            total = all_reduce_sum([loop.loss_sum], ctx)[0]
            loop.loss_sum = total if ctx.is_main else 0.0
            rank_rng_states = gather_rng_states(ctx)  # each rank's dropout stream
        if not ctx.is_main:  # [distributed] rank 0 writes the checkpoint of all ranks
            return None
        return save_checkpoint(
            self.run.checkpoints_path,
            loop,
            self.model,
            {"model": self.optimizer},
            {"lr": self.scheduler},
            self.config_json,
            self.config.train.keep_checkpoints,
            rank_rng_states,
        )

    def stop_agreed(self) -> bool:
        """[distributed] every rank stops at the same step if any rank was asked to."""
        if self.ctx.world_size == 1:
            return self.stop_request.requested
        return all_reduce_sum([1.0 if self.stop_request.requested else 0.0], self.ctx)[0] > 0

    def stopped(self, path: Path | None) -> TrainingStopped:
        """The error that ends a stopped session, saying how to resume."""
        number = self.stop_request.signal_number or signal.SIGTERM
        return TrainingStopped(
            f"training stopped by {signal.Signals(number).name} at epoch {self.loop.epoch}, "
            f"step {self.loop.global_step}; checkpoint {path or 'written by rank 0'}; "
            "continue with the same command plus --resume",
            number,
        )

    def check_divergence(self, loss: float) -> None:
        """Raise `TrainingDiverged` for a NaN or infinite loss: its gradients have made the weights NaN too.

        Under fp16 the loss scaler skips a step whose gradients overflowed and leaves the weights intact,
        so there it takes FP16_OVERFLOWS_TOLERATED such steps in a row. The error comes before the step
        is counted or checkpointed: the newest checkpoint holds finite weights.
        """
        self.nonfinite_in_a_row += 1
        if self.config.precision == "fp16" and self.nonfinite_in_a_row < FP16_OVERFLOWS_TOLERATED:
            log.debug("fp16: loss %s at step %d; the loss scaler skips the step", loss, self.loop.global_step + 1)
            return
        tc, loop = self.config.train, self.loop
        clip = f"train.grad_clip (now {tc.grad_clip})" if tc.grad_clip is not None else "set train.grad_clip (e.g. 5)"
        in_a_row = f" for {self.nonfinite_in_a_row} steps in a row" if self.nonfinite_in_a_row > 1 else ""
        raise TrainingDiverged(
            f"training diverged at epoch {loop.epoch} step {loop.global_step + 1}: loss is {loss}{in_a_row}; "
            f"lower train.lr (now {tc.lr:g}) or {clip}, then train again with --overwrite"
        )

    def result(self) -> TrainResult:
        """The summary of the finished training."""
        loop, tc = self.loop, self.config.train
        seconds = loop.train_seconds
        return TrainResult(
            epochs_run=len(loop.history),
            best_epoch=loop.best_epoch,
            best_metric=float(loop.best if loop.best is not None else float("nan")),
            metric_name=f"validation_{tc.early_stopping_metric}",
            seconds=round(seconds, 3),
            docs_per_second=round(loop.trained_docs / max(seconds, 1e-9), 1),
            history=loop.history,
        )


def _fit_without_gradients(config: Config, run: RunDir, progress: Progress) -> TrainResult:
    """Kind linear: one scikit-learn fit (han/training/fit_linear.py) in place of the epochs; the same result and manifest entry."""
    fit = fit_linear(config, run, progress)
    metric = config.train.early_stopping_metric
    result = TrainResult(
        epochs_run=1,
        best_epoch=1,
        best_metric=float(fit.record[f"validation_{metric}"]),
        metric_name=f"validation_{metric}",
        seconds=round(fit.seconds, 3),
        docs_per_second=round(fit.documents / max(fit.seconds, 1e-9), 1),
        history=[fit.record],
    )
    summary = {k: v for k, v in result.__dict__.items() if k != "history"}
    run.update_manifest(train={**summary, "world_size": 1, "device": "cpu"})
    if config.multilabel:
        choose_run_thresholds(config, run)
    return result


def train(
    config: Config,
    run_dir: Path,
    progress: Progress | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train on the run's encoded data; write best/last weights, the epoch log and the manifest entry.

    A checkpoint is written every `train.checkpoint_every_steps` steps and at each epoch end; with
    `resume` training continues from the newest intact one and ends exactly as an uninterrupted run
    would. SIGINT/SIGTERM finish the current step, write a checkpoint and raise `TrainingStopped`.
    Existing training results are only replaced with `overwrite`. Under torchrun the processes train
    one model data-parallel (han/training/distributed.py); rank 0 writes every file.

    `on_epoch`, when given, is called with each epoch's record (its validation metrics) once the
    epoch's weights are saved and before its checkpoint; an exception it raises ends training there
    and propagates (a resumed run calls it only for the epochs it trains). Kind linear has no epochs.
    """
    ctx = setup(config.device)  # [distributed] single process: rank 0 of 1
    check_precision(ctx.device, config.precision)
    progress = progress if progress is not None and ctx.is_main else Progress()
    run = RunDir(Path(run_dir))
    if not trains_by_gradient(config.model) and ctx.world_size > 1:
        raise ConfigError(f"model.kind {config.model.kind} is fitted in one process; run it without torchrun")
    prepare_run(config, run, ctx, resume=resume, overwrite=overwrite)
    if not trains_by_gradient(config.model):
        return _fit_without_gradients(config, run, progress)
    session = TrainingSession(config, run, ctx, progress, resume, on_epoch)
    with stop_on_signals(session.stop_request):
        try:
            while not session.loop.finished:
                session.run_epoch()
        except TrainingStopped:
            barrier(ctx)  # [distributed] every rank leaves once rank 0 has written the checkpoint
            raise
        except StorageError as error:
            newest = checkpoint_files(run.checkpoints_path)
            where = f"the newest intact checkpoint is {newest[0]}" if newest else "no checkpoint was written yet"
            raise StorageError(f"{error}; training stopped: {where}; rerun with --resume once there is space") from None
        finally:
            progress.stop()
    result = session.result()
    if ctx.is_main:
        summary = {k: v for k, v in result.__dict__.items() if k != "history"}
        run.update_manifest(
            train={**summary, "world_size": ctx.world_size, "device": str(ctx.device), "threads": threads_report()}
        )
        if config.multilabel:
            choose_run_thresholds(config, run)
    barrier(ctx)  # [distributed] every rank returns once rank 0's files are written
    return result
