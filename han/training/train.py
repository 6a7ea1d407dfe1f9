"""The train stage: fit the network on the encoded training split, early-stopped on validation.

`train` reads as its steps: join the ranks, prepare the run directory and the process, build the session
(fresh or from the newest checkpoint), run epochs until early stopping or `train.max_epochs`, write the
summary. A step and an epoch are methods of `TrainingSession`, each a list of steps too. Everything that
differs under torchrun sits behind `Ranks` (han/training/distributed.py) and every file rank 0 writes
behind `TrainingFiles` (han/training/run_files.py): the loop has no branch for either.

Over 400 lines because the session's steps read best together: its step, epoch, checkpoint and
divergence methods share the loop's state, and splitting them would send a reader across files again.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from han.config import Config
from han.errors import StorageError, TrainingDiverged, TrainingStopped
from han.models.ensemble import members
from han.progress import Progress
from han.store.encoded import EncodedSplit
from han.store.rundir import RunDir
from han.text.batching import Batch, bucketed_batches, collate
from han.training.checkpoint import LoopState, checkpoint_files, load_latest_checkpoint
from han.training.distributed import Ranks
from han.training.fit_linear import compared, fits_without_gradients, linear_kind_record, train_linear
from han.training.initial_model import build_training_start, compared_with_start, starts_as_linear_kind
from han.training.optim import clip_grad_norm, lr_factor, make_optimizer
from han.training.prepare import prepare_process, prepare_run
from han.training.run_files import TrainingFiles, TrainResult, validation_fields
from han.training.weighting import class_weights, named_class_weights
from han.training.wide_entries import training_entries, training_wide_scores
from han.util.cpus import adjust_threads, threads_report
from han.util.device import autocast, check_precision, grad_scaler
from han.util.signals import StopRequest, stop_on_signals

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "TrainingSession", "is_better_epoch", "member_batch_orders", "train"]

# fp16 only: steps in a row whose loss overflowed (and that the loss scaler skipped) before training counts as diverged.
FP16_OVERFLOWS_TOLERATED = 20


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


def replaces_kept_epoch(record: dict[str, Any], kept: dict[str, Any] | None, metric: str) -> bool:
    """Does epoch `record` replace the kept epoch: better by `is_better_epoch`, and, when it was tested against
    epoch 0 (train.beat_linear_start significantly), ahead of it beyond chance?"""
    return is_better_epoch(record, kept, metric) and bool(record.get("beats_start", True))


def best_network_epoch(history: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """The best of the network's own epochs (1 and on; not epoch 0, the starting model) by `is_better_epoch`."""
    best = None
    for record in history:
        if record["epoch"] > 0 and is_better_epoch(record, best, metric):
            best = record
    return best


class TrainingSession:
    """One training session: the model, its optimizer state, the data and the loop position.

    `train` builds it (fresh, or restored from the newest checkpoint) and runs `run_epoch` until the
    loop is finished. Under torchrun every rank holds one; `self.ranks` does what differs between ranks.
    """

    def __init__(
        self,
        config: Config,
        run: RunDir,
        ranks: Ranks,
        progress: Progress,
        resume: bool,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config, self.run, self.ranks, self.progress = config, run, ranks, progress
        self.on_epoch = on_epoch  # called with each epoch's record at the end of `finish_epoch`
        self.files = TrainingFiles(run, writes=ranks.is_main)
        tc = config.train
        prepare_process(config)
        self.train_split = EncodedSplit.load(run.data_path("train"))
        self.validation_split = EncodedSplit.load(run.data_path("validation"))
        self.label_names = run.load_labels()
        rates = self.train_split.labels.mean(axis=0) if self.train_split.multilabel else None
        start = build_training_start(
            config, run, ranks.sparse_gradients, rates, self.train_split, self.validation_split
        )
        model = start.model
        # model.wide: the training split's entries, read once, not every epoch
        self.wide_entries = training_entries(model, self.train_split, start.training_rows)
        # model.wide_weights fitted: the training documents' channel scores, computed once (in sample, or out of fold
        # by model.wide_training_scores); None: the channel scores each batch from its entries
        self.wide_scores = training_wide_scores(config, run, model, self.train_split, self.wide_entries, start.fitted_c)
        if self.wide_scores is not None:
            self.wide_entries = None  # never read again: the linear kind's figures are epoch 0's
        self.model = model.to(ranks.device)
        self.train_model = ranks.wrap(self.model)
        ranks.reseed(config.seed)
        self.optimizer = make_optimizer(self.model, tc, len(self.train_split))
        for group in self.optimizer.param_groups[1:]:  # model.wide's learnt n-gram weights: their own rate
            auto = " (auto: 1 / steps an epoch)" if tc.wide_lr == "auto" else ""
            log.info("wide channel learning rate %.4g%s", group["lr"], auto)
        # The loss's per-class weights: each label's positives' (multi-label) or each class's (train.class_weight).
        self.loss_weight = positive_weights(self.train_split, tc.positive_weight, ranks.device)
        # (task multilabel: always none, the config refuses another)
        self.class_weight = class_weights(self.train_split.labels, len(self.label_names), tc.class_weight)
        if self.class_weight is not None:
            log.info(
                "class weights (%s): %s", tc.class_weight, named_class_weights(self.class_weight, self.label_names)
            )
            self.loss_weight = torch.tensor(self.class_weight, dtype=torch.float32, device=ranks.device)
        self.scaler = grad_scaler(ranks.device, config.precision)
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
        self.start_probabilities: np.ndarray | None = None  # epoch 0's validation probabilities, once scored
        self.session_start, self.seconds_before = time.perf_counter(), self.loop.train_seconds

    def _restore(self) -> None:
        restored = load_latest_checkpoint(
            self.run.checkpoints_path,
            self.model,
            {"model": self.optimizer},
            {"lr": self.scheduler},
            self.config_json,
            self.ranks.ctx.rank,
        )
        if restored is None:
            log.info("%s: no checkpoint yet; training from the start", self.run.checkpoints_path)
            return
        self.loop, path = restored
        log.info("resuming from %s (epoch %d, step %d)", path, self.loop.epoch, self.loop.global_step)
        self.loop.loss_sum = self.ranks.kept_once(self.loop.loss_sum)  # saved over all ranks, restored once

    # --- one step, one epoch ------------------------------------------------------------------
    def step(self, batch: Batch, parts: list[MemberPart]) -> float:
        """One optimizer step on this rank's part of a global batch; returns the global batch's mean loss share.

        model.ensemble: `batch` is the members' own batches one after another (`parts`, one per member)."""
        config, ranks = self.config, self.ranks
        inputs = (batch.word_ids, batch.sentence_lengths, batch.sentence_counts)
        with autocast(ranks.device, config.precision):
            if len(parts) == 1:
                extra: dict[str, Any] = {}  # model.wide: the batch's TF-IDF entries, read once for the whole split
                if self.wide_scores is not None:
                    extra["wide_scores"] = torch.from_numpy(self.wide_scores[batch.indices]).to(ranks.device)
                elif self.wide_entries is not None:
                    extra["wide_entries"] = self.wide_entries.batch(batch.indices, ranks.device)
                logits = self.train_model(*inputs, **extra).logits  # (B, C)
            else:
                logits = self.train_model(*inputs, [part.documents for part in parts]).logits  # (B, C)
        # Each member's loss weighted so that the gradient averaged over ranks is the one of its global batch's
        # mean; model.ensemble: the sum of the members' own losses, so each gets the gradient it gets alone.
        loss, first = logits.new_zeros(()), 0
        for part in parts:
            own = slice(first, first + part.documents)
            counted, size, smoothing = part.counted, part.global_size, config.train.label_smoothing
            loss = loss + ranks.loss(logits[own], batch.labels[own], counted, size, self.loss_weight, smoothing)
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
        return loss.item() / ranks.world_size / len(parts)  # a member's mean loss

    def next_batch(
        self, batches: list[np.ndarray], orders: list[np.ndarray], position: int
    ) -> tuple[Batch, list[MemberPart]]:
        """This rank's part of every member's batch at `position`, collated into one batch."""
        parts, local = [], []
        for member_batch in (batches[order[position]] for order in orders):
            indices, counted = self.ranks.share_of(member_batch)
            parts.append(MemberPart(len(indices), counted, len(member_batch)))
            local.append(indices)
        return collate(self.train_split, np.concatenate(local)).to(self.ranks.device), parts

    def run_epoch(self) -> None:
        """Train the rest of the current epoch, validate, checkpoint; raise `TrainingStopped` on a stop request."""
        loop, tc, progress = self.loop, self.config.train, self.progress
        self.rng.bit_generator.state = loop.epoch_rng_state
        batches = list(bucketed_batches(self.train_split, tc.batch_size, self.rng))
        orders = member_batch_orders(len(members(self.model)), len(batches), self.config.seed, loop.epoch)
        self.model.train()
        epoch_start, session_docs = time.perf_counter(), 0
        progress.start(f"epoch {loop.epoch}/{tc.max_epochs}", len(self.train_split))
        if loop.seen:
            progress.advance(loop.seen)
        for position in range(loop.batches_done, len(batches)):
            documents = len(batches[position])  # member 0's (the single network's) batch counts the epoch
            batch, parts = self.next_batch(batches, orders, position)
            adjust_threads()  # follows the cores other processes leave free (unless train.threads is set)
            loss = self.step(batch, parts)
            if not math.isfinite(loss):
                self.check_divergence(loss)  # raises unless fp16's loss scaler skipped the step
                loss = 0.0  # a skipped step adds no loss to the epoch's mean
            else:
                self.nonfinite_in_a_row = 0
            loop.loss_sum += loss * documents  # this rank's share; summed over ranks at epoch end
            loop.seen += documents
            loop.batches_done += 1
            loop.global_step += 1
            session_docs += documents
            elapsed = time.perf_counter() - epoch_start
            progress.advance(documents, loss=loop.loss_sum / loop.seen, docs_per_s=session_docs / max(elapsed, 1e-9))
            last_of_epoch = loop.batches_done == len(batches)  # the epoch-end checkpoint follows
            stopping = not last_of_epoch and self.stop_agreed()
            if stopping or (not last_of_epoch and loop.global_step % tc.checkpoint_every_steps == 0):
                path = self.checkpoint()
                if stopping:
                    raise self.stopped(path)
        progress.stop()
        loop.loss_sum = self.ranks.sum(loop.loss_sum)
        self.finish_epoch(float(self.scheduler.get_last_lr()[0]), time.perf_counter() - epoch_start, session_docs)
        loop.epoch, loop.batches_done, loop.epoch_rng_state = loop.epoch + 1, 0, dict(self.rng.bit_generator.state)
        loop.loss_sum, loop.seen = 0.0, 0
        path = self.checkpoint()
        if self.stop_agreed() and not loop.finished:
            raise self.stopped(path)

    def score_start(self) -> None:
        """Score the starting model on validation as epoch 0, a candidate like any epoch: with the fitted channel it
        is the linear model alone, so the run never ends behind it on validation."""
        loop, tc = self.loop, self.config.train
        start = time.perf_counter()
        validation, self.start_probabilities = self.ranks.evaluate(
            self.model, self.validation_split, self.label_names, tc.eval_batch_size, self.config.precision
        )
        if tc.beat_linear_start == "significantly":
            self.files.record_start(self.model)  # a resumed run scores it again to test later epochs against it
        record = {
            "epoch": 0,
            "train_loss": None,
            **validation_fields(validation),
            "lr": None,
            "seconds": round(time.perf_counter() - start, 3),
            "docs_per_s": None,
        }
        loop.history.append(record)
        self.files.record_epoch(loop.history, self.model, best=True)
        loop.best, loop.best_epoch = validation[tc.early_stopping_metric], 0

    def test_against_start(self, probabilities: np.ndarray) -> dict[str, Any]:
        """train.beat_linear_start significantly, after an epoch 0: how far this epoch is ahead of the start on
        validation, the paired bootstrap's p-value and whether it `beats_start` (only then can it be kept).
        Empty otherwise."""
        tc = self.config.train
        if tc.beat_linear_start != "significantly" or not any(r["epoch"] == 0 for r in self.loop.history):
            return {}
        if self.start_probabilities is None:  # resumed: score the start again from its saved weights
            _, self.start_probabilities = self.ranks.evaluate(
                self.files.start_model(self.model),
                self.validation_split,
                self.label_names,
                tc.eval_batch_size,
                self.config.precision,
            )
        return compared_with_start(
            self.validation_split.labels, probabilities, self.start_probabilities, tc.early_stopping_metric
        )

    def finish_epoch(self, lr: float, epoch_seconds: float, session_docs: int) -> None:
        """Validate, log the epoch, save last/best weights and update the early-stopping state.

        Validation is scored across the ranks: the same metrics on every rank, so early stopping agrees."""
        loop, tc = self.loop, self.config.train
        loop.trained_docs += loop.seen
        validation, probabilities = self.ranks.evaluate(
            self.model, self.validation_split, self.label_names, tc.eval_batch_size, self.config.precision
        )
        record = {
            "epoch": loop.epoch,
            "train_loss": loop.loss_sum / max(loop.seen, 1),
            **validation_fields(validation),
            "lr": lr,
            "seconds": round(epoch_seconds, 3),
            "docs_per_s": round(session_docs / max(epoch_seconds, 1e-9), 1),
            **self.test_against_start(probabilities),
        }
        loop.history.append(record)
        metric = tc.early_stopping_metric
        best_record = next((r for r in loop.history if r["epoch"] == loop.best_epoch), None)
        better = replaces_kept_epoch(record, best_record, metric)
        self.files.record_epoch(loop.history, self.model, best=better)
        if better:
            loop.best, loop.best_epoch = validation[metric], loop.epoch
        # Patience follows the network's own epochs: epoch 0 (the linear kind) is a candidate for the best, but a
        # network still climbing towards it is not stale.
        if is_better_epoch(record, best_network_epoch(loop.history[:-1], metric), metric):
            loop.stale_epochs = 0
        else:
            loop.stale_epochs += 1
            if loop.stale_epochs >= tc.early_stopping_patience:
                log.info("early stopping: no %s improvement for %d epochs", tc.early_stopping_metric, loop.stale_epochs)
                loop.finished = True
        if loop.epoch >= tc.max_epochs:
            loop.finished = True
        if self.on_epoch is not None:  # e.g. `han tune`'s pruning; what it raises ends the training here
            self.on_epoch(record)

    # --- checkpoints and stopping ---------------------------------------------------------------
    def checkpoint(self) -> Path | None:
        """Write a checkpoint of the loop (rank 0); returns its path (None on other ranks)."""
        loop, ranks = self.loop, self.ranks
        loop.train_seconds = self.seconds_before + time.perf_counter() - self.session_start
        loop.loss_sum = ranks.kept_once(ranks.sum(loop.loss_sum))  # the epoch's loss sum over all ranks
        return self.files.checkpoint(
            loop,
            self.model,
            self.optimizer,
            self.scheduler,
            self.config_json,
            self.config.train.keep_checkpoints,
            ranks.rng_states(),
        )

    def stop_agreed(self) -> bool:
        """Every rank stops at the same step if any rank was asked to."""
        return self.ranks.any(self.stop_request.requested)

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
        tc, loop, model = self.config.train, self.loop, self.config.model
        rates = [f"train.lr (now {tc.lr:g})"]
        if model.wide and model.wide_weights == "learnt":  # the wide channel's n-gram weights (a group of their own)
            auto = ", auto: 1 / steps an epoch" if tc.wide_lr == "auto" else ""
            for group in self.optimizer.param_groups[1:]:  # none for a kind without the wide channel
                rates.append(f"train.wide_lr (now {group.get('initial_lr', group['lr']):g}{auto})")
        clip = f"train.grad_clip (now {tc.grad_clip})" if tc.grad_clip is not None else "set train.grad_clip (e.g. 5)"
        in_a_row = f" for {self.nonfinite_in_a_row} steps in a row" if self.nonfinite_in_a_row > 1 else ""
        raise TrainingDiverged(
            f"training diverged at epoch {loop.epoch} step {loop.global_step + 1}: loss is {loss}{in_a_row}; "
            f"lower {', '.join(rates)} or {clip}, then train again with --overwrite"
        )

    def linear_kind(self) -> dict[str, Any]:
        """train.linear_baseline: han's linear kind on this run's features, its validation metrics."""
        rows = self.wide_entries.rows if self.wide_entries is not None else None
        history = self.loop.history
        linear = linear_kind_record(
            self.config, self.run, self.train_split, self.validation_split, self.label_names, self.model, history, rows
        )
        return compared(self.config, linear, next(r for r in history if r["epoch"] == self.loop.best_epoch))

    def result(self) -> TrainResult:
        """The summary of the finished training."""
        loop, tc = self.loop, self.config.train
        seconds = loop.train_seconds
        return TrainResult(
            epochs_run=sum(1 for record in loop.history if record["epoch"] > 0),
            best_epoch=loop.best_epoch,
            best_metric=float(loop.best if loop.best is not None else float("nan")),
            metric_name=f"validation_{tc.early_stopping_metric}",
            seconds=round(seconds, 3),
            docs_per_second=round(loop.trained_docs / max(seconds, 1e-9), 1),
            history=loop.history,
        )


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
    Rank 0 holds the run directory's lock throughout (han.util.lock): a second writer is refused. Rank 0
    records its peak memory in the manifest's "stage_peak_memory" (han.util.memory).
    """
    ranks = Ranks.join(config.device)  # a single process is rank 0 of 1
    run = RunDir(Path(run_dir))
    with ranks.writer_lock(run.root, "han train"), run.measuring_stage("train", record=ranks.is_main):
        return _train(config, Path(run_dir), ranks, progress, resume, overwrite, on_epoch)


def _train(
    config: Config,
    run_dir: Path,
    ranks: Ranks,
    progress: Progress | None,
    resume: bool,
    overwrite: bool,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> TrainResult:
    check_precision(ranks.device, config.precision)
    progress = ranks.progress(progress)  # one bar per job
    run = RunDir(Path(run_dir))
    prepare_run(config, run, ranks, resume=resume, overwrite=overwrite)
    if fits_without_gradients(config):
        return train_linear(config, run, progress)
    session = TrainingSession(config, run, ranks, progress, resume, on_epoch)
    with stop_on_signals(session.stop_request):
        try:
            if starts_as_linear_kind(config, session.model) and not session.loop.history:
                session.score_start()
            while not session.loop.finished:
                session.run_epoch()
        except TrainingStopped:
            ranks.barrier()  # every rank leaves once rank 0 has written the checkpoint
            raise
        except StorageError as error:
            raise storage_stopped(error, run) from None
        finally:
            progress.stop()
    result = session.result()
    if config.train.linear_baseline:  # every rank fits the same (seconds); rank 0 writes it
        result.linear_kind = session.linear_kind()
    session.files.finish(
        config,
        result,
        class_weights=named_class_weights(session.class_weight, session.label_names),
        world_size=ranks.world_size,
        device=str(ranks.device),
        threads=threads_report(),
    )
    ranks.barrier()  # every rank returns once rank 0's files are written
    return result


def storage_stopped(error: StorageError, run: RunDir) -> StorageError:
    """A failed write during training, with where it can resume from."""
    newest = checkpoint_files(run.checkpoints_path)
    where = f"the newest intact checkpoint is {newest[0]}" if newest else "no checkpoint was written yet"
    return StorageError(f"{error}; training stopped: {where}; rerun with --resume once there is space")
