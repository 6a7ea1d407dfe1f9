"""All stages in one call: preprocess, train, then evaluate on validation and test."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from han.artifacts import RunDir
from han.config import Config
from han.inference import evaluate_split, load_trained_run
from han.preprocessing import PreprocessSummary, preprocess
from han.progress import Progress
from han.training import TrainResult, train


@dataclass
class RunResult:
    preprocess: PreprocessSummary
    train: TrainResult
    metrics: dict[str, dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)


def run_all(config: Config, run_dir: Path, progress: Progress | None = None) -> RunResult:
    """Preprocess, train and evaluate (validation and test) into `run_dir`; stage wall times in the manifest."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    summary = preprocess(config, run_dir, progress)
    seconds["preprocess"] = time.perf_counter() - start
    start = time.perf_counter()
    result = train(config, run_dir, progress)
    seconds["train"] = time.perf_counter() - start
    start = time.perf_counter()
    trained = load_trained_run(run_dir)
    metrics = {split: evaluate_split(trained, split) for split in ("validation", "test")}
    seconds["evaluate"] = time.perf_counter() - start
    seconds = {k: round(v, 2) for k, v in seconds.items()}
    RunDir(Path(run_dir)).update_manifest(stage_seconds=seconds)
    return RunResult(summary, result, metrics, seconds)
