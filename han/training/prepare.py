"""Before the first step: the run directory checked and claimed for training, and this process set up."""

from __future__ import annotations

from han.config import OUTPUT_NEUTRAL_SETTINGS, Config
from han.errors import ConfigError, RunDirError
from han.models.build import check_model_fits, trains_by_gradient
from han.store.rundir import RunDir
from han.training.checkpoint import check_resumable
from han.training.distributed import Ranks
from han.training.initial_model import seed_everything
from han.util.allocator import keep_freed_memory
from han.util.cpus import use_threads
from han.util.signals import signals_deferred


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


def prepare_run(config: Config, run: RunDir, ranks: Ranks, *, resume: bool, overwrite: bool) -> None:
    """Check the run directory's preprocessing and claim it for training (rank 0 writes the config)."""
    if not trains_by_gradient(config.model) and ranks.world_size > 1:
        raise ConfigError(f"model.kind {config.model.kind} is fitted in one process; run it without torchrun")
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
    if ranks.is_main:
        run.claim_for_training(resume=resume, overwrite=overwrite)
    ranks.barrier()
    run.verify_artifacts(*inputs)
    check_same_preprocessing(config, run)
    if resume:  # before config.json is rewritten: a refused resume leaves the run as it was
        check_resumable(run.checkpoints_path, config.model_dump(mode="json"))
    ranks.barrier()  # every rank has verified config.json before rank 0 rewrites it
    if ranks.is_main:
        run.remove_stale_temporaries()
        with signals_deferred():  # never config.json without its manifest entry: a resume would refuse the pair
            run.save_config(config)
            run.record_artifacts(run.config_path)


def prepare_process(config: Config) -> None:
    """Seeds, torch threads and the allocator, before the model is built (the same start on every run of a seed)."""
    seed_everything(config.seed)
    use_threads(config.train.threads)
    keep_freed_memory()  # each step's large tensors reuse the last step's pages (han/util/allocator.py)
