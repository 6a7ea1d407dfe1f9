"""`han tune`: a hyperparameter search with Optuna over one shared preprocessing.

DIR/data is preprocessed once; each trial is the base config plus the sampled settings, trained in
its own run directory DIR/trials/trial-<number> (a hard-linked copy of DIR/data) by the same train
stage as `han train`. After every epoch the trial reports its validation metric (`validation_<train.
early_stopping_metric>`; for task: multilabel micro_f1 by default, at 0.5 per label as training measures
it, before the run's thresholds are chosen) to Optuna, whose median pruner may stop it there (state
PRUNED); a finished trial's value is the best validation metric of its training. The study (TPE sampler seeded from the
config's seed, re-seeded per trial so that a resumed search samples what an uninterrupted one would)
lives in DIR/study.journal. After each trial DIR/tune.json lists every trial and DIR/best.yaml holds
the best trial's whole config, headed by the `han run` command that reproduces it (same seed, same
preprocessing: the same validation metric on the same device).

The search space (`DEFAULT_SPACE`; `--space FILE.yaml` replaces it with one of the same form: a
dotted setting -> a list of choices, or {low, high, log}):
  train.lr               log-uniform 3e-4 .. 1e-2
  train.weight_decay     log-uniform 1e-7 .. 1e-3
  train.batch_size       16, 32 or 64
  model.dropout          uniform 0.0 .. 0.5
  model.word_dropout     uniform 0.0 .. 0.5
  model.word_hidden      25, 50 or 100
  model.sentence_hidden  25, 50 or 100

Resuming: SIGINT/SIGTERM stop the trial in training at a checkpoint (`TrainingStopped`); the same
command with `resume` marks it FAIL, runs its parameters again as a new trial that continues from its
checkpoint (its folder is taken over) and goes on until `trials` trials have finished (COMPLETE,
PRUNED, or FAIL because training diverged). A finished study resumed only rewrites the outputs.
"""

from __future__ import annotations

import logging
import math
import shutil
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from han.config import MAX_CONFIG_BYTES, Config, config_from_dict, config_to_yaml
from han.errors import ConfigError, TrainingDiverged
from han.progress import Progress
from han.store.rundir import RunDir
from han.training.train import train
from han.util.atomic import TEMPORARY_MARK, write_json_atomic, write_text_atomic
from han.util.files import read_user_file
from han.util.lock import folder_lock
from han.util.yaml_strict import DuplicateKey, NestingTooDeep, load_yaml
from han.workflows.workspace import linked_run_copy, open_workspace

log = logging.getLogger(__name__)

STUDY = "han-tune"
# Settings a search space may not vary: the trials share one preprocessing (DIR/data), and training refuses a
# task, data, preprocess or embeddings setting other than the one it was made with.
PREPROCESSING_SECTIONS = ("task", "data", "preprocess", "embeddings")
DEFAULT_SPACE: dict[str, Any] = {
    "train.lr": {"low": 3e-4, "high": 1e-2, "log": True},
    "train.weight_decay": {"low": 1e-7, "high": 1e-3, "log": True},
    "train.batch_size": [16, 32, 64],
    "model.dropout": {"low": 0.0, "high": 0.5, "log": False},
    "model.word_dropout": {"low": 0.0, "high": 0.5, "log": False},
    "model.word_hidden": [25, 50, 100],
    "model.sentence_hidden": [25, 50, 100],
}


@dataclass(frozen=True)
class TunePlan:
    """What to tune: the base config (and the file it came from), how many trials, where, over which space."""

    config: Config
    config_source: str
    trials: int
    directory: Path
    space: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SPACE))


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("han tune needs optuna: pip install 'han[tune]'") from None
    return optuna


def with_params(config: Config, params: dict[str, Any], source: str = "tune") -> Config:
    """The config with each dotted setting of `params` replaced, validated again."""
    data = config.model_dump(mode="json")
    for name, value in params.items():
        *sections, key = name.split(".")
        node = data
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: {name}: {section} is a value, not a section")
        node[key] = value
    return config_from_dict(data, source)


def _admitted_types(annotation: Any) -> set[Any]:
    """The types a schema annotation admits, unions flattened and Annotated unwrapped."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set().union(*(_admitted_types(arg) for arg in typing.get_args(annotation)))
    if typing.get_origin(annotation) is typing.Annotated:
        return _admitted_types(typing.get_args(annotation)[0])
    return {annotation}


def _setting_types(name: str) -> set[Any]:
    """The types the dotted setting `name` admits in the config schema (empty for a name it lacks)."""
    schema: type[BaseModel] = Config
    *sections, key = name.split(".")
    for section in sections:
        field_info = schema.model_fields.get(section)
        annotation = field_info.annotation if field_info is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return set()
        schema = annotation
    field_info = schema.model_fields.get(key)
    return set() if field_info is None else _admitted_types(field_info.annotation)


def check_space(space: Any, config: Config, source: str) -> dict[str, Any]:
    """A search space (dotted setting -> list of choices or {low, high, log}) checked against `config` and the
    schema: every choice and both bounds are valid values of the setting, an integer setting has integer
    bounds, and no setting the trials' shared preprocessing fixes (task, data.*, preprocess.*, embeddings.*)."""
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{source}: expected a mapping of dotted settings (e.g. train.lr) to their ranges")
    for name, spec in space.items():
        where = f"{source}: {name}"
        if not isinstance(name, str) or name.split(".")[0] in PREPROCESSING_SECTIONS:
            raise ConfigError(
                f"{where}: cannot vary between trials: they share one preprocessing, made for one task and one set of "
                "data, preprocess and embeddings settings; tune training and model settings, or run `han tune` "
                "once per value"
            )
        plain = isinstance(spec, list) and all(isinstance(v, (bool, int, float, str)) for v in spec)
        if isinstance(spec, list):
            if not plain or not spec or len(set(map(repr, spec))) != len(spec):
                raise ConfigError(f"{where}: the choices must be distinct plain values, at least one")
            samples = spec
        elif isinstance(spec, dict) and set(spec) <= {"low", "high", "log"} and {"low", "high"} <= set(spec):
            low, high, use_log = spec["low"], spec["high"], spec.get("log", False)
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
            if not numbers or not low < high or not isinstance(use_log, bool) or (use_log and low <= 0):
                raise ConfigError(f"{where}: needs numbers low < high (low > 0 with log: true)")
            samples = [low, high]
            admitted = _setting_types(name)
            if int in admitted and float not in admitted and not all(isinstance(v, int) for v in (low, high)):
                raise ConfigError(
                    f"{where}: an integer setting: give whole-number low and high (got low {low!r}, high {high!r})"
                )
        else:
            raise ConfigError(f"{where}: give a list of choices or a mapping with low, high and optionally log")
        for value in samples:
            with_params(config, {name: value}, where)
    return space


def load_space(path: Path, config: Config, option: str | None = None) -> dict[str, Any]:
    """A search space read from a YAML file (see `check_space`); `option` (e.g. "--space") names it in errors.

    The file must be a regular file of at most `MAX_CONFIG_BYTES`: a pipe, a device or a folder is refused
    before it is opened."""
    text = read_user_file(Path(path), "search space file", ConfigError, option=option, max_bytes=MAX_CONFIG_BYTES)
    shown = f"{option} {path}" if option else str(path)
    try:
        data = load_yaml(text.decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, DuplicateKey, NestingTooDeep, RecursionError) as error:
        raise ConfigError(f"{shown}: not a readable YAML search space ({type(error).__name__})") from None
    return check_space(data, config, shown)


def _suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in sorted(space):  # the same draws whatever order a space file lists the settings in
        spec = space[name]
        if isinstance(spec, list):
            params[name] = trial.suggest_categorical(name, spec)
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    return params


def make_pruner() -> Any:
    """Stop a trial whose validation metric is worse than the median of finished trials at that epoch."""
    return _optuna().pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


# --- the search ----------------------------------------------------------------------------------
def _counts(trial: Any) -> bool:
    """Whether a trial counts toward the requested number: finished, and not cut off by a stop or a kill."""
    state = trial.state.name
    return state in ("COMPLETE", "PRUNED") or (state == "FAIL" and "error" in trial.user_attrs)


def _requeue_interrupted(study: Any) -> None:
    """Trials a stopped or killed process left RUNNING: FAIL, and their parameters queued to run again."""
    taken = {t.user_attrs.get("resumes") for t in study.get_trials(deepcopy=False)}
    for trial in study.get_trials(deepcopy=False, states=(_optuna().trial.TrialState.RUNNING,)):
        if trial.number not in taken:
            study.enqueue_trial(trial.params, user_attrs={"resumes": trial.number})
        study.tell(trial.number, state=_optuna().trial.TrialState.FAIL)
        log.info("tune: trial %d was interrupted; its parameters run again", trial.number)


def _run_trial(plan: TunePlan, study: Any, data: RunDir, progress: Progress, done: int) -> None:
    optuna = _optuna()
    trial = study.ask()
    params = _suggest(trial, plan.space)
    config = with_params(plan.config, params, f"trial {trial.number}")
    metric = f"validation_{plan.config.train.early_stopping_metric}"
    folder = plan.directory / "trials"
    run_dir = folder / f"trial-{trial.number}"
    reported: set[int] = set()
    source = trial.user_attrs.get("resumes")  # an interrupted trial: take over its folder and checkpoint
    trials = study.get_trials(deepcopy=False)
    while source is not None and not (folder / f"trial-{source}").is_dir():
        source = trials[source].user_attrs.get("resumes")
    if source is not None and not run_dir.exists():
        (folder / f"trial-{source}").rename(run_dir)
        for step, value in sorted(trials[source].intermediate_values.items()):
            trial.report(value, step)
            reported.add(step)
    if not run_dir.exists():
        linked_run_copy(data, run_dir)
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    log.info("tune: trial %d (%d finished of %d): %s", trial.number, done, plan.trials, shown)

    def on_epoch(record: dict[str, Any]) -> None:
        if record["epoch"] in reported:
            return
        trial.report(float(record[metric]), record["epoch"])
        reported.add(record["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {record['epoch']}")

    try:
        result = train(config, run_dir, progress, resume=True, on_epoch=on_epoch)
    except optuna.TrialPruned:
        log.info("tune: trial %d pruned after epoch %d", trial.number, max(reported))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    except TrainingDiverged as error:
        trial.set_user_attr("error", str(error))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        trial.set_user_attr("epochs", result.epochs_run)
        if not math.isfinite(result.best_metric):  # counted as tried (an error), never sampled again in a loop
            trial.set_user_attr("error", f"{metric} is {result.best_metric}")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        study.tell(trial, result.best_metric)
        log.info("tune: trial %d: %s %.4f", trial.number, metric, result.best_metric)


def tune(plan: TunePlan, progress: Progress | None = None, *, resume: bool = False) -> dict[str, Any]:
    """Preprocess once, run trials until `plan.trials` have finished, and write DIR/tune.json and DIR/best.yaml.

    Returns the data of tune.json. SIGINT/SIGTERM stop the trial in training at a checkpoint
    (`TrainingStopped`); the same call with `resume` continues the search. DIR's lock is held throughout:
    a second process on DIR is refused (two writers would corrupt each other's trials).
    """
    with folder_lock(plan.directory, "han tune"):
        return _tune(plan, progress, resume)


def _tune(plan: TunePlan, progress: Progress | None, resume: bool) -> dict[str, Any]:
    optuna = _optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    progress = progress or Progress()
    check_space(plan.space, plan.config, "the search space")
    request = {"config": plan.config.model_dump(mode="json"), "space": plan.space}
    data = open_workspace(plan.directory, "tuning", request, resume, plan.config, progress)
    (plan.directory / "trials").mkdir(exist_ok=True)
    for leftover in (plan.directory / "trials").glob(f"{TEMPORARY_MARK}*"):
        shutil.rmtree(leftover)  # han's own half-made trial copy from a killed run
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = JournalStorage(JournalFileBackend(str(plan.directory / "study.journal")))
        direction = "minimize" if plan.config.train.early_stopping_metric == "loss" else "maximize"
        study = optuna.create_study(
            study_name=STUDY, storage=storage, direction=direction, pruner=make_pruner(), load_if_exists=True
        )
        _requeue_interrupted(study)
        summary = summarise(plan, study)
        while (done := sum(map(_counts, study.get_trials(deepcopy=False)))) < plan.trials:
            # Seeded by the number of trials finished: a resumed search samples what an uninterrupted one would.
            study.sampler = optuna.samplers.TPESampler(seed=(plan.config.seed + done) % 2**32)
            _run_trial(plan, study, data, progress, done)
            summary = summarise(plan, study)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return summary


def summarise(plan: TunePlan, study: Any) -> dict[str, Any]:
    """Write DIR/tune.json (every trial) and DIR/best.yaml (the best finished trial's config); return tune.json's data."""
    metric = f"validation_{plan.config.train.early_stopping_metric}"
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "params": t.params,
            "value": t.value,
            "epochs": len(t.intermediate_values) or t.user_attrs.get("epochs"),
            **{k: v for k, v in t.user_attrs.items() if k in ("resumes", "error")},
        }
        for t in study.get_trials(deepcopy=False)
        if t.state.name != "WAITING"
    ]
    complete = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    pick = min if study.direction.name == "MINIMIZE" else max
    best = pick(complete, key=lambda t: t["value"]) if complete else None
    best_path = plan.directory / "best.yaml"
    if best is not None:
        name = f"{plan.directory.name}-best"
        header = (
            f"# The best trial of `han tune {plan.config_source} --dir {plan.directory}` (overrides resolved):\n"
            f"# trial {best['number']} of {len(trials)}, {metric} {best['value']:.6g}. Reproduce it (same seed):\n"
            f"#   han run {best_path} --run-dir runs/{name}\n"
        )
        best_config = with_params(plan.config, best["params"], f"trial {best['number']}")
        write_text_atomic(best_path, header + config_to_yaml(best_config))
    summary = {
        "config": plan.config_source,
        "metric": metric,
        "direction": study.direction.name.lower(),
        "trials_requested": plan.trials,
        "finished": sum(map(_counts, study.get_trials(deepcopy=False))),
        "space": plan.space,
        "best": None if best is None else {**best, "config": str(best_path)},
        "trials": trials,
    }
    write_json_atomic(plan.directory / "tune.json", summary)
    return summary
