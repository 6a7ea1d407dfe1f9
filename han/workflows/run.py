"""All stages in one call: preprocess, train, then evaluate on validation and test."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from han.config import Config
from han.models.build import check_model_fits
from han.progress import Progress
from han.serving.inference import evaluate_split
from han.serving.trained import load_trained_run
from han.store.rundir import RunDir
from han.text.preprocess import PreprocessSummary, preprocess, preprocessing_complete
from han.training.train import TrainResult, train
from han.util.lock import folder_lock
from han.util.memory import PeakMemory
from han.workflows.tracking import check_tracking, track_run

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What `run_all` produced: preprocess summary, training result, metrics per split and seconds per stage."""

    preprocess: PreprocessSummary | None  # None when a resumed run kept its earlier preprocessing
    train: TrainResult
    metrics: dict[str, dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)


def run_all(
    config: Config,
    run_dir: Path,
    progress: Progress | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> RunResult:
    """Preprocess, train and evaluate (validation and test) into `run_dir`; each stage's wall time and peak
    memory in the manifest ("stage_seconds", "stage_peak_memory": han.util.memory).

    `run_dir` must be new or empty unless `overwrite` (start again) or `resume` (keep a finished
    preprocess, continue training from the newest checkpoint, then evaluate). The run directory's lock
    is held throughout (han.util.lock): a second `han run` on it is refused.
    """
    with folder_lock(Path(run_dir), "han run"):
        return _run_all(config, Path(run_dir), progress, resume, overwrite)


@contextmanager
def _stage(name: str, seconds: dict[str, float], peaks: dict[str, dict[str, Any]]) -> Iterator[None]:
    """The block's wall time into `seconds[name]` and its peak memory into `peaks[name]`."""
    start = time.perf_counter()
    with PeakMemory() as peak:
        yield
    seconds[name] = round(time.perf_counter() - start, 2)
    peaks[name] = peak.as_dict()


def _run_all(config: Config, run_dir: Path, progress: Progress | None, resume: bool, overwrite: bool) -> RunResult:
    run = RunDir(Path(run_dir))
    check_tracking(config)  # tracking: mlflow needs the package and a reachable store, before any work
    # Before --overwrite removes anything: the largest model this config could build must fit in memory.
    classes = len(config.data.labels) if config.data.labels else 2
    check_model_fits(config.model, config.preprocess.max_vocab, config.embeddings.dim, classes, training=True)
    if not (resume or overwrite):
        run.claim_for_training(resume=False, overwrite=False)  # existing results: refuse before any work
    seconds: dict[str, float] = {}
    peaks: dict[str, dict[str, Any]] = {}  # whole stages: replace what preprocess, train, evaluate_split recorded
    with _stage("preprocess", seconds, peaks):
        if resume and preprocessing_complete(run):
            log.info("resuming %s: preprocessing is complete, continuing with training", run.root)
            summary = None
        else:
            # A resumed run whose preprocessing never finished has nothing worth keeping yet.
            summary = preprocess(config, run_dir, progress, overwrite=overwrite or resume)
    with _stage("train", seconds, peaks):
        result = train(config, run_dir, progress, resume=resume, overwrite=overwrite)
    with _stage("evaluate", seconds, peaks):
        trained = load_trained_run(run_dir)
        metrics = {split: evaluate_split(trained, split) for split in ("validation", "test")}
    run.update_manifest(stage_seconds=seconds, stage_peak_memory=peaks)
    outcome = RunResult(summary, result, metrics, seconds)
    track_run(config, run_dir, outcome)  # tracking: mlflow logs the finished run; a no-op otherwise
    return outcome
