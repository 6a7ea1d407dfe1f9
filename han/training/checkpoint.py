"""Training checkpoints: everything needed to continue a run exactly where it stopped, without pickle.

A checkpoint is one safetensors file, `checkpoints/step-<global step>.safetensors`:
    tensors    model.<name>, optimizer.<name>.<param id>.<key> (tensor state), rng.torch
    metadata   "han_checkpoint": JSON with the loop position, early-stopping state and history, each
               optimizer's scalar state and param groups, scheduler state, Python and NumPy RNG
               states and the config; "sha256": a digest of that JSON and of every tensor's bytes,
               checked on load, so a damaged file is noticed rather than half-used.
It is written atomically (temp file, fsync, rename) and only the newest `keep` are kept. Resuming
loads the newest intact one; older ones are the fallback when the newest is damaged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from han.errors import RunDirError
from han.util.atomic import write_bytes_atomic

log = logging.getLogger(__name__)

FORMAT = "han-checkpoint/1"
NAME = re.compile(r"^step-(\d{8,})\.safetensors$")
# Settings that may change between a run and its resumption: they do not change the results.
RESUMABLE_CHANGES = {"train.threads", "train.checkpoint_every_steps", "train.keep_checkpoints"}


@dataclass
class LoopState:
    """Where training is and what it has seen: the JSON half of a checkpoint."""

    epoch: int  # the epoch in progress, 1-based
    batches_done: int  # batches of that epoch already trained
    global_step: int
    epoch_rng_state: dict[str, Any]  # the data-order generator's state at the start of `epoch`
    finished: bool = False
    best: float | None = None  # early stopping: best validation metric so far
    best_epoch: int = 0
    stale_epochs: int = 0
    loss_sum: float = 0.0  # this epoch's summed training loss and documents, so far
    seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    trained_docs: int = 0
    train_seconds: float = 0.0


class DamagedCheckpoint(Exception):
    """A checkpoint file that cannot be trusted (truncated, altered, not a han checkpoint)."""


# --- JSON without loss: tuples survive, anything else unexpected is refused ----------------------
def _to_json(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v) for v in value]}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _to_json(v) for k, v in value.items()}
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint's JSON")


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_from_json(v) for v in value["__tuple__"])
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _tensor_digest(state_json: bytes, tensors: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256(state_json)
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# --- optimizer and scheduler state, split into tensors and JSON ----------------------------------
def _split_optimizer(name: str, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{name}.{param_id}.{key}"] = value.detach().clone()
            else:
                scalars.setdefault(str(param_id), {})[key] = _to_json(value)
    return {"scalars": scalars, "param_groups": _to_json(state["param_groups"])}


def _join_optimizer(name: str, saved: dict[str, Any], tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optimizer.{name}."
    for key, tensor in tensors.items():
        if key.startswith(prefix):
            param_id, _, entry = key[len(prefix) :].partition(".")
            state.setdefault(int(param_id), {})[entry] = tensor
    for param_id, entries in saved["scalars"].items():
        state.setdefault(int(param_id), {}).update(_from_json(entries))
    return {"state": state, "param_groups": _from_json(saved["param_groups"])}


def _scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    state = dict(scheduler.state_dict())
    lambdas = state.pop("lr_lambdas", None)
    if lambdas is not None and any(item is not None for item in lambdas):
        raise TypeError("a scheduler whose lr_lambdas carry state cannot be stored as JSON")
    return {"state": _to_json(state), "lambdas": None if lambdas is None else len(lambdas)}


def _load_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler, saved: dict[str, Any]) -> None:
    state = _from_json(saved["state"])
    if saved["lambdas"] is not None:
        state["lr_lambdas"] = [None] * saved["lambdas"]
    scheduler.load_state_dict(state)


# --- random number generators ------------------------------------------------------------------
def _rng_states(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    tensors["rng.torch"] = torch.get_rng_state()
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    assert not isinstance(keys, str)  # the legacy form is a tuple whose second item is the key array
    return {
        "python": _to_json(random.getstate()),
        "numpy_global": {
            "kind": kind,
            "keys": keys.tolist(),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
    }


def _restore_rng(saved: dict[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    random.setstate(_from_json(saved["python"]))
    legacy = saved["numpy_global"]
    np.random.set_state(
        (
            legacy["kind"],
            np.asarray(legacy["keys"], dtype=np.uint32),
            legacy["position"],
            legacy["has_gauss"],
            legacy["cached_gaussian"],
        )
    )


# --- files -------------------------------------------------------------------------------------
def checkpoint_files(directory: Path) -> list[Path]:
    """Checkpoint files in `directory`, newest (highest step) first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def save_checkpoint(
    directory: Path,
    loop: LoopState,
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    schedulers: Mapping[str, torch.optim.lr_scheduler.LRScheduler],
    config: dict[str, Any],
    keep: int,
    rank_rng_states: Sequence[torch.Tensor] = (),
) -> Path:
    """Write a checkpoint of the current training state atomically; keep the newest `keep`.

    `rank_rng_states` [distributed]: every rank's torch generator state (rank 0's is the process's own)."""
    tensors: dict[str, torch.Tensor] = {
        f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()
    }
    for rank, state in enumerate(rank_rng_states):
        if rank:
            tensors[f"rng.torch.rank{rank}"] = state.contiguous()
    payload = {
        "format": FORMAT,
        "loop": asdict(loop),
        "optimizers": {name: _split_optimizer(name, opt, tensors) for name, opt in optimizers.items()},
        "schedulers": {name: _scheduler_state(s) for name, s in schedulers.items()},
        "rng": _rng_states(tensors),
        "config": config,
    }
    state_json = json.dumps(payload, sort_keys=True)
    metadata = {"han_checkpoint": state_json, "sha256": _tensor_digest(state_json.encode(), tensors)}
    path = directory / f"step-{loop.global_step:08d}.safetensors"
    write_bytes_atomic(path, save_tensors(tensors, metadata=metadata))  # StorageError leaves older ones intact
    for old in checkpoint_files(directory)[keep:]:
        old.unlink(missing_ok=True)
    return path


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Parse and verify a checkpoint file without touching any model; DamagedCheckpoint if it is not intact."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DamagedCheckpoint(f"unreadable ({error.strerror or error})") from None
    if len(data) < 8 or int.from_bytes(data[:8], "little") > len(data) - 8:
        raise DamagedCheckpoint("truncated or not a safetensors file")
    try:
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        metadata = header["__metadata__"]
        state_json = metadata["han_checkpoint"]
        payload = json.loads(state_json)
        tensors = load_tensors(data)
    except Exception as error:  # json, KeyError, TypeError or safetensors' own error type
        raise DamagedCheckpoint(f"not a han checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DamagedCheckpoint(f"unknown format {payload.get('format') if isinstance(payload, dict) else None!r}")
    if _tensor_digest(state_json.encode(), tensors) != metadata.get("sha256"):
        raise DamagedCheckpoint("SHA-256 does not match (altered or partly written)")
    return payload, tensors


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
    return flat


def _changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    ours, theirs = _flatten(current), _flatten(saved)
    return sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k) and k not in RESUMABLE_CHANGES)


def _refuse_other_settings(path: Path, payload: dict[str, Any], config: dict[str, Any]) -> None:
    changed = _changed_settings(payload["config"], config)
    if changed:
        raise RunDirError(
            f"{path}: written with other settings ({', '.join(changed[:6])}); resume with the same config "
            f"or start again with --overwrite"
        )


def check_resumable(directory: Path, config: dict[str, Any]) -> None:
    """Refuse, before anything is written, a resume whose newest intact checkpoint has other settings
    (the check `load_latest_checkpoint` makes, without touching a model); damaged ones are skipped as there."""
    for path in checkpoint_files(directory):
        try:
            payload, _ = _read(path)
        except DamagedCheckpoint:
            continue
        _refuse_other_settings(path, payload, config)
        return


def load_latest_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    schedulers: Mapping[str, torch.optim.lr_scheduler.LRScheduler],
    config: dict[str, Any],
    rank: int = 0,
) -> tuple[LoopState, Path] | None:
    """Restore model, optimizers, schedulers and RNGs from the newest intact checkpoint.

    [distributed] `rank` > 0 takes its own torch generator state when the checkpoint holds one.

    Damaged checkpoints are skipped with a warning; None when there is none at all. A checkpoint
    written with other settings (beyond thread count and checkpoint cadence) is an error.
    """
    files = checkpoint_files(directory)
    problems = []
    for path in files:
        try:
            payload, tensors = _read(path)
        except DamagedCheckpoint as damage:
            log.warning("%s: damaged checkpoint skipped (%s)", path, damage)
            problems.append(f"{path.name}: {damage}")
            continue
        _refuse_other_settings(path, payload, config)
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            model.load_state_dict(model_state, strict=True)
            for name, optimizer in optimizers.items():
                optimizer.load_state_dict(_join_optimizer(name, payload["optimizers"][name], tensors))
            for name, scheduler in schedulers.items():
                _load_scheduler(scheduler, payload["schedulers"][name])
        except (RuntimeError, KeyError, ValueError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise RunDirError(f"{path}: does not fit the configured model and optimizer ({first})") from None
        _restore_rng(payload["rng"], tensors)
        if rank and f"rng.torch.rank{rank}" in tensors:
            torch.set_rng_state(tensors[f"rng.torch.rank{rank}"])
        return LoopState(**payload["loop"]), path
    if problems:
        raise RunDirError(
            f"{directory}: no intact checkpoint to resume from ({'; '.join(problems[:3])}); "
            f"start again with --overwrite"
        )
    return None
