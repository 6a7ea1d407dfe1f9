"""Checkpoints, resume, graceful stop and full disks: an interrupted training ends exactly like an uninterrupted one."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

import han.util.atomic
from conftest import ROOT, TINY_CONFIG, invoke
from han.config import load_config
from han.errors import RunDirError, StorageError, TrainingStopped
from han.progress import Progress
from han.store.rundir import RunDir
from han.text.preprocess import preprocess
from han.training.checkpoint import checkpoint_files
from han.training.train import train

WORKER = ROOT / "tests" / "resume_worker.py"
# Dropout on, so the torch RNG state matters; a checkpoint every 4 of the 21 steps per epoch.
RESUME_OVERRIDES = ["model.dropout=0.3", "train.checkpoint_every_steps=4", "train.max_epochs=3"]
TIMING_FIELDS = {"seconds", "docs_per_s"}


@pytest.fixture(scope="module")
def overrides(tiny_overrides: list[str]) -> list[str]:
    return [*tiny_overrides, *RESUME_OVERRIDES]


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory: pytest.TempPathFactory, overrides: list[str]) -> Path:
    run_dir = tmp_path_factory.mktemp("resume") / "preprocessed"
    preprocess(load_config(TINY_CONFIG, overrides), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, preprocessed: Path, overrides: list[str]) -> Path:
    """The same training, never interrupted."""
    run_dir = tmp_path_factory.mktemp("resume") / "straight"
    shutil.copytree(preprocessed, run_dir)
    train(load_config(TINY_CONFIG, overrides), run_dir)
    return run_dir


def copy_of(preprocessed: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(preprocessed, target)
    return target


def assert_same_results(run_dir: Path, reference: Path) -> None:
    for name in ("best", "last"):
        ours = load_file(str(run_dir / "model" / f"{name}.safetensors"))
        theirs = load_file(str(reference / "model" / f"{name}.safetensors"))
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert np.array_equal(ours[key], theirs[key]), f"{name}.safetensors: {key} differs"

    def metrics(path: Path) -> list[dict[str, Any]]:
        lines = (path / "train_log.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS} for line in lines]

    assert metrics(run_dir) == metrics(reference)
    assert not list(run_dir.rglob("*.tmp")), "temporary files left behind"


def train_straight_and_resumed(config: Any, preprocessed: Path, tmp_path: Path, stop_after: int) -> tuple[Path, Path]:
    """Train one copy of `preprocessed` straight through and another stopped by a SIGINT after step `stop_after`
    and resumed; check they end alike and return (straight, resumed)."""
    straight_run, resumed = tmp_path / "straight", tmp_path / "stopped"
    shutil.copytree(preprocessed, straight_run)
    shutil.copytree(preprocessed, resumed)
    train(config, straight_run)
    stop_by_sigint_after_step(config, resumed, stop_after)
    train(config, resumed, resume=True)
    assert_same_results(resumed, straight_run)
    return straight_run, resumed


class Hook(Progress):
    """Calls `action(step)` after every training step."""

    def __init__(self, action) -> None:
        self.step, self.action = 0, action

    def advance(self, amount: int = 1, **info: Any) -> None:
        if info:
            self.step += 1
            self.action(self.step)


def stop_by_sigint_after_step(config: Any, run_dir: Path, step: int) -> None:
    """Train in `run_dir` until a SIGINT sent after training step `step` stops it at a checkpoint."""

    def interrupt(seen: int) -> None:
        if seen == step:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingStopped):
        train(config, run_dir, Hook(interrupt))


@pytest.mark.slow
def test_sigkill_at_random_steps_then_resume_gives_identical_weights(preprocessed, straight, overrides, tmp_path):
    run_dir = copy_of(preprocessed, tmp_path)
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), str(TINY_CONFIG), str(run_dir), *overrides],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    rng = random.Random(2024)
    kills: list[int] = []
    try:
        for attempt in range(10):
            target = rng.randint(2, 14) if len(kills) < 4 else None  # four kills, then run to the end
            worker.stdin.write("resume\n" if attempt else "fresh\n")  # type: ignore[union-attr]
            worker.stdin.flush()  # type: ignore[union-attr]
            child, steps = None, 0
            for line in worker.stdout:  # type: ignore[union-attr]
                word, _, value = line.strip().partition(" ")
                if word == "pid":
                    child = int(value)
                elif word == "step":
                    steps += 1
                    if steps == target:
                        time.sleep(rng.uniform(0.0, 0.03))  # land anywhere in the next step or checkpoint write
                        os.kill(child, signal.SIGKILL)  # type: ignore[arg-type]
                elif word == "exit":
                    code = int(value)
                    break
            if target is None or code == 0:  # the end, or finished before the kill landed
                assert code == 0
                break
            assert code == -signal.SIGKILL
            kills.append(steps)
    finally:
        worker.communicate("quit\n", timeout=60)
    assert len(kills) == 4, kills
    assert checkpoint_files(run_dir / "checkpoints"), "checkpoints are kept"
    assert_same_results(run_dir, straight)


def test_sigint_finishes_the_step_writes_a_checkpoint_and_resume_matches(preprocessed, straight, overrides, tmp_path):
    run_dir = copy_of(preprocessed, tmp_path)
    config = load_config(TINY_CONFIG, overrides)

    def interrupt(step: int) -> None:
        if step == 30:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # the default handler, or SIG_IGN under nohup
    with pytest.raises(TrainingStopped) as info:
        train(config, run_dir, Hook(interrupt))
    message = str(info.value)
    assert info.value.exit_code == 130 and "SIGINT" in message and "--resume" in message and "step 30" in message
    assert checkpoint_files(run_dir / "checkpoints")[0].name == "step-00000030.safetensors"
    assert signal.getsignal(signal.SIGINT) is before, "handlers are restored"
    with pytest.raises(RunDirError, match="--resume"):
        train(config, run_dir)  # refuses to start over the interrupted training
    train(config, run_dir, resume=True)
    assert_same_results(run_dir, straight)


@pytest.mark.slow
def test_sigterm_stops_han_run_gracefully_and_run_resume_completes(trained_run, tiny_overrides, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides, "train.checkpoint_every_steps=3"]
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "run", str(TINY_CONFIG), *overrides, "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 120
    while not checkpoint_files(run_dir / "checkpoints") and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped:" in stderr and "SIGTERM" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert not (run_dir / "metrics.json").exists()

    invoke("run", TINY_CONFIG, *overrides, "--run-dir", run_dir, "--resume", check=True)
    for name in ("best", "last"):  # the uninterrupted run of the same config (conftest.trained_run)
        ours = load_file(str(run_dir / "model" / f"{name}.safetensors"))
        theirs = load_file(str(trained_run / "model" / f"{name}.safetensors"))
        assert all(np.array_equal(ours[k], theirs[k]) for k in theirs), name
    ours, theirs = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, trained_run))
    assert ours["test"]["accuracy"] == theirs["test"]["accuracy"]
    assert ours["test"]["loss"] == theirs["test"]["loss"]


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(preprocessed, straight, overrides, tmp_path):
    run_dir = copy_of(preprocessed, tmp_path)
    config = load_config(TINY_CONFIG, overrides)

    def interrupt(step: int) -> None:
        if step == 27:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingStopped):
        train(config, run_dir, Hook(interrupt))
    newest, _previous = checkpoint_files(run_dir / "checkpoints")[:2]
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in the tensor data
    newest.write_bytes(bytes(data))
    train(config, run_dir, resume=True)
    assert_same_results(run_dir, straight)

    (run_dir / "checkpoints" / "step-00009999.safetensors").write_bytes(b"\x00" * 7)  # truncated
    for path in checkpoint_files(run_dir / "checkpoints")[1:]:
        path.unlink()
    with pytest.raises(RunDirError, match="no intact checkpoint"):
        train(config, run_dir, resume=True)


def test_resume_refuses_other_settings(preprocessed, overrides, tmp_path):
    run_dir = copy_of(preprocessed, tmp_path)
    config = load_config(TINY_CONFIG, overrides)

    def interrupt(step: int) -> None:
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingStopped):
        train(config, run_dir, Hook(interrupt))
    saved = (run_dir / "config.json").read_bytes()
    with pytest.raises(RunDirError, match=r"other settings \(train\.lr\)"):
        train(load_config(TINY_CONFIG, [*overrides, "train.lr=0.5"]), run_dir, resume=True)
    assert (run_dir / "config.json").read_bytes() == saved  # the refused settings are not recorded as the run's
    # thread count and checkpoint cadence do not change results and may differ
    train(load_config(TINY_CONFIG, [*overrides, "train.checkpoint_every_steps=7"]), run_dir, resume=True)


def failing_write(after_bytes: int):
    """An os.write that accepts `after_bytes` more bytes, then fails as a full disk does."""
    budget = [after_bytes]

    def write(fd: int, data) -> int:
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = os.write(fd, bytes(data[: budget[0]]))
        budget[0] -= written
        return written

    return write


def test_disk_full_keeps_the_previous_checkpoint_and_outputs(preprocessed, straight, overrides, tmp_path, monkeypatch):
    run_dir = copy_of(preprocessed, tmp_path)
    run = RunDir(run_dir)
    config = load_config(TINY_CONFIG, overrides)
    before: dict[str, bytes] = {}

    def fill_disk(step: int) -> None:
        if step == 30:  # epoch 2: epoch 1's weights, log and checkpoints exist
            for path in (run.last_weights_path, run.best_weights_path, run.train_log_path, run.manifest_path):
                before[path.name] = path.read_bytes()
            before["checkpoint"] = checkpoint_files(run.checkpoints_path)[0].name
            monkeypatch.setattr(han.util.atomic, "_os_write", failing_write(1000))

    with pytest.raises(StorageError) as info:
        train(config, run_dir, Hook(fill_disk))
    message = str(info.value)
    assert "No space left on device" in message and "free some space" in message and "\n" not in message
    assert "step-00000032.safetensors" in message and before["checkpoint"] in message and "--resume" in message
    assert info.value.exit_code == 5
    for path in (run.last_weights_path, run.best_weights_path, run.train_log_path, run.manifest_path):
        assert path.read_bytes() == before[path.name], f"{path.name} changed"
    assert checkpoint_files(run.checkpoints_path)[0].name == before["checkpoint"]
    assert not list(run_dir.rglob("*.tmp")), "the partial write was removed"
    run.verify_artifacts(run.last_weights_path, run.best_weights_path, run.train_log_path)

    monkeypatch.setattr(han.util.atomic, "_os_write", os.write)  # space freed
    train(config, run_dir, resume=True)
    assert_same_results(run_dir, straight)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A 16 MiB tmpfs, where the platform lets us mount one (root in a privileged container)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def fill(directory: Path) -> Path:
    """Write a file that takes every free byte of `directory`'s file system."""
    filler = directory / "filler.bin"
    with open(filler, "wb", buffering=0) as handle:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError as error:
                assert error.errno == errno.ENOSPC
    return filler


def test_a_real_full_disk_keeps_the_previous_checkpoint(preprocessed, straight, overrides, tiny_tmpfs):
    run_dir = tiny_tmpfs / "run"
    shutil.copytree(preprocessed, run_dir)
    config = load_config(TINY_CONFIG, overrides)
    filler: list[Path] = []

    def fill_disk(step: int) -> None:
        if step == 30:
            filler.append(fill(tiny_tmpfs))

    with pytest.raises(StorageError, match="No space left on device") as info:
        train(config, run_dir, Hook(fill_disk))
    assert "\n" not in str(info.value)
    previous = checkpoint_files(run_dir / "checkpoints")[0]
    assert previous.name == "step-00000028.safetensors"
    filler[0].unlink()
    train(config, run_dir, resume=True)
    assert_same_results(run_dir, straight)


def test_run_overwrite_of_a_finished_run_trains_again(trained_run, tiny_config, tmp_path):
    import shutil

    from han.workflows.run import run_all

    run_dir = tmp_path / "finished"
    shutil.copytree(trained_run, run_dir)
    before = (run_dir / "model" / "best.safetensors").stat().st_mtime_ns
    result = run_all(tiny_config, run_dir, overwrite=True)  # the cached preprocessing is kept, training redone
    assert result.preprocess is not None and (run_dir / "model" / "best.safetensors").stat().st_mtime_ns != before
    theirs = json.loads((trained_run / "metrics.json").read_text())
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"] == theirs["test"]["accuracy"]


def test_a_signal_between_config_json_and_its_manifest_entry_waits_for_both(run_copy, tiny_config, monkeypatch):
    from han.store.rundir import RunDir
    from han.training.train import train

    record = RunDir.record_artifacts
    signalled = []

    def signal_first(self, *paths):
        if self.config_path in paths and not signalled:  # Ctrl-C right after config.json is written
            signalled.append(True)
            signal.raise_signal(signal.SIGINT)  # to this thread, at once
        return record(self, *paths)

    monkeypatch.setattr(RunDir, "record_artifacts", signal_first)
    changed = tiny_config.model_copy(update={"train": tiny_config.train.model_copy(update={"max_epochs": 2})})
    # Python's own Ctrl-C handler: a suite started in the background (`make test &`) inherits SIGINT ignored, and
    # a held signal is then delivered, rightly, to that disposition.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):  # delivered once both writes are done
            train(changed, run_copy, Progress(), overwrite=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert signalled
    RunDir(run_copy).verify_artifacts(RunDir(run_copy).config_path)  # the file and its entry agree
    assert json.loads((run_copy / "config.json").read_text())["train"]["max_epochs"] == 2


def test_a_resumed_run_tests_its_epochs_against_the_start_it_saved(preprocessed, tiny_overrides, tmp_path):
    """The start's validation predictions are not in the checkpoint: a resumed run scores the start again from
    model/start.safetensors, and its epochs' tests read as the uninterrupted run's (on the loss, which tells the
    tiny corpus's models apart where its perfect accuracy does not)."""
    fitted = ["model.wide=true", "model.wide_weights=fitted", "train.early_stopping_metric=loss"]
    config = load_config(TINY_CONFIG, [*tiny_overrides, *RESUME_OVERRIDES, *fitted])
    _, stopped = train_straight_and_resumed(config, preprocessed, tmp_path, 6)
    log = [json.loads(line) for line in (stopped / "train_log.jsonl").read_text().splitlines()]
    tested = [record for record in log if record["epoch"] > 0]
    assert all(record["gain_over_start"] != 0 for record in tested) and len(tested) == 3
