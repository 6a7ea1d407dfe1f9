"""What training writes into the run directory: the epoch log, last and best weights, checkpoints and the
manifest's summary. Rank 0 writes every file; on the other ranks each method does nothing."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from han.config import Config
from han.store.rundir import RunDir
from han.store.weights import load_weights, save_weights
from han.training.calibrate import choose_run_thresholds
from han.training.checkpoint import LoopState, save_checkpoint
from han.util.atomic import write_text_atomic

log = logging.getLogger("han.training.train")  # the epoch lines belong to the loop's log


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
    # train.linear_baseline: han's linear kind on the same features, its validation metrics (None: not fitted)
    linear_kind: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """Everything but the per-epoch log: the manifest's `train` entry."""
        return {k: v for k, v in self.__dict__.items() if k != "history"}


VALIDATION_FIGURES = ("loss", "accuracy", "macro_f1", "micro_f1")  # what an epoch record keeps of validation


def validation_fields(metrics: dict[str, Any]) -> dict[str, float]:
    """A split's validation metrics as an epoch record of the train log names them (`validation_<figure>`)."""
    return {f"validation_{figure}": metrics[figure] for figure in VALIDATION_FIGURES}


class TrainingFiles:
    """The training's files in `run`; `writes` False (a rank other than 0) makes every method a no-op."""

    def __init__(self, run: RunDir, writes: bool) -> None:
        self.run, self.writes = run, writes

    def record_epoch(self, history: list[dict[str, Any]], model: torch.nn.Module, best: bool) -> None:
        """The epoch log with its newest record, the last weights and, when this epoch is the best, the best."""
        if not self.writes:
            return
        run, record = self.run, history[-1]
        write_text_atomic(run.train_log_path, "".join(json.dumps(r) + "\n" for r in history))
        rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}
        log.info("epoch %d: %s", record["epoch"], rounded)
        save_weights(model, run.last_weights_path)
        written = [run.train_log_path, run.last_weights_path]
        if best:
            save_weights(model, run.best_weights_path)
            written.append(run.best_weights_path)
        run.record_artifacts(*written)

    def record_start(self, model: torch.nn.Module) -> None:
        """The starting model's weights (epoch 0, the fitted channel alone), to test later epochs against."""
        if not self.writes:
            return
        save_weights(model, self.run.start_weights_path)
        self.run.record_artifacts(self.run.start_weights_path)

    def start_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """A copy of `model` holding the starting weights `record_start` saved (every rank reads them)."""
        start = copy.deepcopy(model)
        load_weights(start, self.run.start_weights_path)
        return start

    def checkpoint(
        self,
        loop: LoopState,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        config_json: dict[str, Any],
        keep: int,
        rank_rng_states: list[torch.Tensor],
    ) -> Path | None:
        """Write a checkpoint of the loop; its path (None where this rank writes nothing)."""
        if not self.writes:
            return None
        return save_checkpoint(
            self.run.checkpoints_path,
            loop,
            model,
            {"model": optimizer},
            {"lr": scheduler},
            config_json,
            keep,
            rank_rng_states,
        )

    def finish(
        self, config: Config, result: TrainResult, class_weights: dict[str, float] | None = None, **where: Any
    ) -> None:
        """The manifest's `train` entry (the result, the class weights the loss used, and `where` it ran);
        a multi-label run's thresholds."""
        if not self.writes:
            return
        weights = {"class_weights": class_weights} if class_weights is not None else {}
        self.run.update_manifest(train={**result.summary(), **weights, **where})
        if config.multilabel:
            choose_run_thresholds(config, self.run)
