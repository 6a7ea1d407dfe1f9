"""One writer per folder: a second han process on a run directory or workspace in use is refused at once
(exit 4, naming the holder), a killed holder leaves no stale lock, and a trainer that `han compare`
spawned does not outlive it.

The fast tests hold the lock from a small helper process (`han.util.lock.folder_lock`, what every
writing command takes); the slow ones run two real `han` processes on one folder, or SIGKILL a comparison.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import ROOT, TINY_CONFIG, invoke, one_line_error
from han.workflows.workspace import claim_workspace

LOCK = ".han.lock"
HOLDER = """
import sys, time
from pathlib import Path
from han.util.lock import folder_lock
with folder_lock(Path(sys.argv[1]), "test holder", shared=sys.argv[2] == "shared"):
    print("held", flush=True)
    time.sleep(300)
"""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def han_process(log: Path, *args: object) -> subprocess.Popen:
    """`python -m pipelines ARGS` in the background, its output to the file `log` (never a pipe that fills up);
    the child runs the han under test (it inherits PYTHONPATH)."""
    with open(log, "w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "pipelines", *map(str, args)], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )


def wait_for(condition: Callable[[], bool], timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"exited {process.returncode} first")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def lock_holder(folder: Path) -> int | None:
    """The process id written in FOLDER's lock file, if any."""
    try:
        return int((folder / LOCK).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop(process: subprocess.Popen, log: Path) -> tuple[int, str]:
    """SIGTERM `process` until it ends (a SIGTERM that lands between two tuning trials goes unheeded); its exit
    code and output."""
    for _ in range(12):
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    process.wait(timeout=10)
    return process.returncode, log.read_text()


@pytest.fixture
def held() -> Iterator[Callable[..., int]]:
    """Hold a folder's lock from another process: `held(folder)` returns that process's id."""
    holders: list[subprocess.Popen] = []

    def hold(folder: Path, shared: bool = False) -> int:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder), "shared" if shared else "exclusive"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        holders.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line == "held\n", process.communicate()[1][-1500:]
        return process.pid

    yield hold
    for process in holders:
        process.kill()
        process.wait()


# --- finding 7: every writing command is refused on a folder in use -----------------------------------
@pytest.mark.parametrize(
    "command",
    [
        ["preprocess", "CONFIG", "--run-dir", "RUN"],
        ["preprocess", "CONFIG", "--run-dir", "RUN", "--overwrite"],
        ["preprocess", "CONFIG", "--run-dir", "RUN", "--shard", "0/2"],
        ["train", "CONFIG", "--run-dir", "RUN", "--resume"],
        ["train", "CONFIG", "--run-dir", "RUN", "--overwrite"],
        ["run", "CONFIG", "--run-dir", "RUN", "--resume"],
        ["evaluate", "RUN"],
    ],
)
def test_a_run_directory_in_use_is_refused(run_copy, tiny_overrides, held, command):
    pid = held(run_copy)
    before = snapshot(run_copy)
    args = [run_copy if a == "RUN" else TINY_CONFIG if a == "CONFIG" else a for a in command]
    if "CONFIG" in command:
        args[2:2] = tiny_overrides
    one_line_error(invoke(*args), 4, str(run_copy), f"in use by process {pid} (test holder)", "wait for it")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize(("command", "kind"), [("compare", "comparison"), ("tune", "tuning")])
def test_a_workspace_in_use_is_refused(tmp_path, tiny_overrides, held, command, kind):
    folder = tmp_path / kind
    claim_workspace(folder, kind, {"config": {}}, resume=False)
    pid = held(folder)
    before = snapshot(folder)
    extra = ["--models", "mean", "--seeds", "1"] if command == "compare" else ["--trials", "1"]
    outcome = invoke(command, TINY_CONFIG, *tiny_overrides, *extra, "--dir", folder, "--resume")
    one_line_error(outcome, 4, f"in use by process {pid}")
    assert snapshot(folder) == before


def test_a_new_run_directory_in_use_is_refused_and_left_as_it_was(tmp_path, tiny_overrides, held):
    run = tmp_path / "fresh"
    held(run)  # the holder made the folder, as `han run` does
    one_line_error(invoke("run", TINY_CONFIG, *tiny_overrides, "--run-dir", run), 4, "in use by process")
    assert [p.name for p in run.iterdir()] == [LOCK]


def test_shards_share_the_lock_and_exclude_a_whole_run_writer(tmp_path, held):
    from han.errors import RunDirError
    from han.util.lock import folder_lock

    folder = tmp_path / "run"
    held(folder, shared=True)
    with folder_lock(folder, "another shard", shared=True):  # shards write side by side
        pass
    with pytest.raises(RunDirError, match="in use by another process"), folder_lock(folder, "han train"):
        pass


# --- the lock leaves nothing behind, and a killed holder leaves no stale lock --------------------------
def test_a_command_leaves_no_lock_file_behind(run_copy, tmp_path, tiny_overrides):
    invoke("evaluate", run_copy, check=True)
    assert not (run_copy / LOCK).exists()
    refused = tmp_path / "nowhere" / "run"
    bad = [*tiny_overrides, "data.source=/nowhere/corpus.csv"]
    assert invoke("preprocess", TINY_CONFIG, *bad, "--run-dir", refused).exit_code == 3
    assert not (tmp_path / "nowhere").exists()  # the folders made for the lock are gone again


def test_a_holder_killed_by_sigkill_leaves_no_stale_lock(run_copy, held):
    pid = held(run_copy)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not running(pid), 10)
    invoke("evaluate", run_copy, check=True)
    assert not (run_copy / LOCK).exists()


# --- finding 7 with two real processes --------------------------------------------------------------
@pytest.mark.slow
def test_a_second_han_run_on_a_run_directory_in_use_is_refused(tmp_path, tiny_overrides):
    run = tmp_path / "run"
    long = ["train.max_epochs=1000", "train.early_stopping_patience=1000"]
    log = tmp_path / "first.log"
    first = han_process(log, "run", TINY_CONFIG, *tiny_overrides, *long, "--run-dir", run)
    try:
        wait_for(lambda: lock_holder(run) == first.pid and (run / "train_log.jsonl").exists(), 120, first)
        second = invoke("run", TINY_CONFIG, *tiny_overrides, "train.max_epochs=1", "--run-dir", run, "--resume")
        one_line_error(second, 4, f"in use by process {first.pid} (han run)")
        assert first.poll() is None  # the first goes on, undisturbed
    finally:
        code, output = stop(first, log)
    assert code == 128 + signal.SIGTERM and "--resume" in output and "Traceback" not in output


# --- finding 8: a comparison's trainer dies with it; a --resume then finishes ------------------------------
def _spawned_children(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            children.append(int(stat.parent.name))
    return children


@pytest.mark.slow
def test_sigkill_of_a_comparison_stops_its_trainer_and_resume_finishes(tmp_path, tiny_overrides):
    folder = tmp_path / "cmp"
    settings = ["train.max_epochs=40", "train.early_stopping_patience=40", "train.checkpoint_every_steps=5"]
    command = ["compare", TINY_CONFIG, *tiny_overrides, *settings, "--models", "han", "--seeds", "1", "--dir", folder]
    parent = han_process(tmp_path / "compare.log", *command)
    run = folder / "runs" / "han-seed0"

    def epochs() -> int:
        return len((run / "train_log.jsonl").read_text().splitlines()) if (run / "train_log.jsonl").exists() else 0

    trainer = None
    try:
        wait_for(lambda: any(run.glob("checkpoints/*.safetensors")) and _spawned_children(parent.pid), 180, parent)
        (trainer,) = _spawned_children(parent.pid)
        os.kill(parent.pid, signal.SIGKILL)
        killed, at_kill = time.monotonic(), epochs()
        parent.wait()
        wait_for(lambda: not running(trainer), 180)
        # It stopped at its next step, with a checkpoint, within seconds: not after its 40 epochs.
        assert epochs() <= at_kill + 1 and time.monotonic() - killed < 20
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if trainer is not None and running(trainer):
            os.kill(trainer, signal.SIGKILL)
    assert not (folder / "results" / "han-seed0.json").exists()  # it stopped, unfinished
    invoke(*command, "--resume", check=True)
    result = json.loads((folder / "results" / "han-seed0.json").read_text())
    assert result["epochs"] == 40


# --- finding 9: two tunings on one folder ------------------------------------------------------------
@pytest.mark.slow
def test_a_second_tuning_on_a_folder_in_use_is_refused(tmp_path, tiny_overrides):
    pytest.importorskip("optuna")
    folder = tmp_path / "tune"
    base = ["tune", TINY_CONFIG, *tiny_overrides, "train.max_epochs=3", "train.checkpoint_every_steps=2"]
    log = tmp_path / "first.log"
    first = han_process(log, *base, "--trials", "50", "--dir", folder)
    try:
        wait_for(lambda: lock_holder(folder) == first.pid and (folder / "trials" / "trial-0").is_dir(), 180, first)
        second = invoke(*base, "--trials", "1", "--dir", folder, "--resume")
        one_line_error(second, 4, f"in use by process {first.pid} (han tune)")
        assert first.poll() is None
    finally:
        code, output = stop(first, log)
    assert code in (128 + signal.SIGTERM, 128 + signal.SIGINT) and "Traceback" not in output  # a second: at once
    invoke(*base, "--trials", "1", "--dir", folder, "--resume", check=True)
    states = [t["state"] for t in json.loads((folder / "tune.json").read_text())["trials"]]
    assert "COMPLETE" in states and states.count("FAIL") <= 1  # only the trial the SIGTERM cut off
