"""Data-parallel training (2 gloo processes under torchrun), sharded preprocessing and sharded prediction."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import han.training.train as training
from conftest import ROOT, TINY_CONFIG, invoke, make_corpus, one_line_error, write_csv
from distributed_worker import (
    REORDERING_FACTOR,
    ROUNDING_FLOOR,
    largest_difference,
    rounding_bound,
    save_snapshots,
    train_single,
)
from han.config import load_config
from han.errors import ConfigError
from han.store.encoded import EncodedSplit
from han.text.preprocess import preprocess
from han.training.distributed import DistContext, batch_loss, contiguous_shard, local_batch, parse_shard, split_slice
from han.util.device import check_precision, resolve_device

WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
LAUNCH_TIMEOUT_S = 240  # a hung collective must fail the test, not the suite


def launch(
    arguments: list[str], timeout: float = LAUNCH_TIMEOUT_S, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on timeout kill the whole group (torchrun and its workers)."""
    env = {**os.environ, "HAN_DIST_TIMEOUT_S": "120", "OMP_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    process = subprocess.Popen(
        arguments, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{' '.join(arguments)} did not finish in {timeout} s")
    assert process.returncode == 0, f"exit {process.returncode}\n{stdout[-3000:]}\n{stderr[-5000:]}"
    return subprocess.CompletedProcess(arguments, process.returncode, stdout, stderr)


def torchrun(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *arguments]


# 100 rows: 70 training documents; batches of 3 split 2 + 1 over two ranks, and the one batch of a
# single document leaves rank 1 empty (it then runs a zero-weight document).
# How close DDP must come to one process: REORDERING_FACTOR in tests/distributed_worker.py says why.


@pytest.fixture(scope="module")
def dp_overrides(tmp_path_factory) -> list[str]:
    corpus = write_csv(tmp_path_factory.mktemp("dp") / "corpus.csv", make_corpus(100, seed=3))
    return [
        f"data.source={corpus}",
        "data.split_column=split",
        "train.max_epochs=1",
        "train.batch_size=3",
        "train.lr=0.002",
        "train.threads=1",
        "device=cpu",
    ]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, dp_overrides):
    """A preprocessed run directory and the weights after every step of single-process training."""
    run_dir = tmp_path_factory.mktemp("dp") / "single"
    config = load_config(TINY_CONFIG, dp_overrides)
    preprocess(config, run_dir)
    snapshots = train_single(config, run_dir)
    save_snapshots(snapshots, run_dir / "steps.safetensors")
    return run_dir, snapshots


@pytest.fixture(scope="module")
def reordering_bound(tmp_path_factory, single_process, dp_overrides) -> float:
    """How far DDP's weights may be from the single process's, at any step (see REORDERING_FACTOR)."""
    single_dir, single_steps = single_process
    reordered = copy_preprocessed(single_dir, tmp_path_factory.mktemp("dp") / "reordered")
    steps = train_single(load_config(TINY_CONFIG, dp_overrides), reordered, reversed_batches=True)
    return max(REORDERING_FACTOR * largest_difference(single_steps, steps), ROUNDING_FLOOR)


def copy_preprocessed(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(
        source, target, ignore=shutil.ignore_patterns("model", "checkpoints", "train_log.jsonl", "steps.safetensors")
    )
    return target


@pytest.mark.slow
@pytest.mark.parametrize("channel", ["off", "fitted"])
def test_two_processes_stopped_and_resumed_end_like_an_uninterrupted_run(
    tmp_path, single_process, dp_overrides, channel
):
    """A SIGTERM on rank 0 stops both ranks at the same step; resuming under torchrun ends bit-identical,
    dropout included (each rank resumes its own random stream from the checkpoint). With the fitted channel every
    rank tests each epoch against the linear start, scored again from its saved weights after the resume (on the
    loss, which tells the tiny corpus's models apart)."""
    single_dir, _ = single_process
    dropout = ["model.dropout=0.3", "model.word_dropout=0.2"]
    overrides = [*dp_overrides, "train.max_epochs=2", "train.checkpoint_every_steps=5", *dropout]
    if channel == "fitted":
        overrides += ["model.wide=true", "model.wide_weights=fitted", "train.early_stopping_metric=loss"]
    whole = copy_preprocessed(single_dir, tmp_path / "whole")
    launch(torchrun(str(WORKER), str(TINY_CONFIG), str(whole), str(tmp_path), *overrides))
    interrupted = copy_preprocessed(single_dir, tmp_path / "interrupted")
    stopped = launch(
        torchrun(str(WORKER), str(TINY_CONFIG), str(interrupted), str(tmp_path), *overrides),
        env={"HAN_TEST_STOP_AT": "31"},  # in the second epoch, between two periodic checkpoints
    )
    assert "stopped rank 0" in stopped.stdout and "stopped rank 1" in stopped.stdout
    assert (interrupted / "model" / "best.safetensors").read_bytes() != b""  # epoch 1 finished
    assert len(list((interrupted / "checkpoints").glob("step-*.safetensors"))) >= 1
    launch(
        torchrun(str(WORKER), str(TINY_CONFIG), str(interrupted), str(tmp_path), *overrides),
        env={"HAN_TEST_RESUME": "1"},
    )
    for name in ("last.safetensors", "best.safetensors"):
        assert (interrupted / "model" / name).read_bytes() == (whole / "model" / name).read_bytes(), name
    logs = [
        [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "docs_per_s")} for line in lines]
        for lines in ((d / "train_log.jsonl").read_text().splitlines() for d in (whole, interrupted))
    ]
    assert logs[0] == logs[1] and len(logs[0]) == (2 if channel == "off" else 3)  # and epoch 0
    if channel == "fitted":
        assert all(record["gain_over_start"] != 0 for record in logs[1][1:])


@pytest.mark.slow
def test_two_gloo_processes_train_like_one(tmp_path, single_process, dp_overrides, reordering_bound):
    single_dir, single_steps = single_process
    assert len(single_steps) == 24  # ceil(70 / 3)
    run_dir = copy_preprocessed(single_dir, tmp_path / "ddp")
    launch(torchrun(str(WORKER), str(TINY_CONFIG), str(run_dir), str(tmp_path), *dp_overrides))
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(single_steps)
    worst = 0.0
    for step, expected in enumerate(single_steps):
        on_rank0, on_rank1 = ranks[0][f"step_{step}"], ranks[1][f"step_{step}"]
        # (a) both ranks hold identical weights after every step
        assert np.array_equal(on_rank0, on_rank1), f"ranks differ after step {step}"
        # (b) same global batches and seed: the single-process weights, up to the order of the sums
        worst = max(worst, float(np.abs(on_rank0 - expected).max()))
        assert worst <= reordering_bound, f"step {step}: max |ddp - single| = {worst:.3g} > {reordering_bound:.3g}"
    assert not np.array_equal(single_steps[0], single_steps[-1]), "training moved the weights"
    print(f"max |ddp - single| over {len(single_steps)} steps: {worst:.3g}; bound {reordering_bound:.3g}")  # pytest -s
    # rank 0 wrote the run's files once, with the world size in the manifest
    log = (run_dir / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 1
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["train"]["world_size"] == 2
    single_log = json.loads((single_dir / "train_log.jsonl").read_text().splitlines()[0])
    # the epoch's mean loss: a mean of per-step losses whose inputs differ by rounding only
    assert json.loads(log[0])["train_loss"] == pytest.approx(single_log["train_loss"], rel=1e-4)
    assert json.loads(log[0])["validation_accuracy"] == single_log["validation_accuracy"]
    assert not list(run_dir.rglob("*.tmp"))


@pytest.mark.slow
def test_two_gloo_processes_train_an_ensemble_like_one(tmp_path, single_process, dp_overrides):
    """model.ensemble under DDP: every member's own batch is split over the ranks (a one-document batch leaves a
    rank a placeholder), and the ranks end with the single process's weights."""
    from safetensors.torch import load_file as load_tensors

    overrides = [*dp_overrides, "model.ensemble=2"]
    single_dir = copy_preprocessed(single_process[0], tmp_path / "single")
    training.train(load_config(TINY_CONFIG, overrides), single_dir)
    run_dir = copy_preprocessed(single_process[0], tmp_path / "ddp")
    launch(torchrun(str(WORKER), str(TINY_CONFIG), str(run_dir), str(tmp_path), *overrides))
    ours = load_tensors(str(run_dir / "model" / "last.safetensors"))
    theirs = load_tensors(str(single_dir / "model" / "last.safetensors"))
    assert ours.keys() == theirs.keys() and any(name.startswith("members.1.") for name in ours)
    worst = max(float((ours[name].double() - theirs[name].double()).abs().max()) for name in ours)
    bound = rounding_bound(load_config(TINY_CONFIG, overrides), single_dir, tmp_path)
    assert worst <= bound, f"max |ddp - single| = {worst:.3g} > {bound:.3g} (REORDERING_FACTOR x reordering's)"
    assert not torch.equal(ours["members.0.classifier.weight"], ours["members.1.classifier.weight"])


@pytest.mark.slow
def test_han_train_nproc_shortcut(tmp_path, single_process, dp_overrides, reordering_bound):
    single_dir, _ = single_process
    run_dir = copy_preprocessed(single_dir, tmp_path / "nproc")
    result = launch(
        [
            sys.executable,
            "-m",
            "pipelines",
            "train",
            str(TINY_CONFIG),
            *dp_overrides,
            "--run-dir",
            str(run_dir),
            "--nproc",
            "2",
        ]
    )
    assert result.stdout.count("trained") == 1, result.stdout  # rank 0 reports
    expected = load_file(str(single_dir / "model" / "last.safetensors"))
    got = load_file(str(run_dir / "model" / "last.safetensors"))
    assert expected.keys() == got.keys()
    for key in expected:
        assert np.abs(expected[key] - got[key]).max() <= reordering_bound, key


# --- sharded prediction and preprocessing -----------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_two_prediction_shards_merge_into_the_single_process_output(tmp_path, trained_run, suffix):
    data = write_csv(tmp_path / "input.csv", make_corpus(45, seed=11))
    single, sharded = tmp_path / f"single{suffix}", tmp_path / f"sharded{suffix}"
    invoke("predict", trained_run, data, "--output", single, "--chunk-size", 8, check=True)
    for index in (0, 1):
        invoke(
            "predict", trained_run, data, "--output", sharded, "--chunk-size", 8, "--shard", f"{index}/2", check=True
        )
    parts = [tmp_path / f"sharded.shard-{i}-of-2{suffix}" for i in (0, 1)]
    rows = [set(part_rows(part)) for part in parts]
    assert rows[0] and rows[1] and not rows[0] & rows[1]  # both shards worked, on disjoint rows
    assert rows[0] | rows[1] == set(range(1, 46))
    invoke("merge-predictions", sharded, "--shards", 2, check=True)
    assert sharded.read_bytes() == single.read_bytes()
    assert not any(part.exists() for part in parts)


def part_rows(path: Path) -> list[int]:
    lines = path.read_text().splitlines()
    if path.suffix == ".csv":
        return [int(line.split(",")[0]) for line in lines[1:]]
    return [json.loads(line)["row"] for line in lines]


def test_merge_refuses_missing_or_mismatched_shards(tmp_path, trained_run):
    data = write_csv(tmp_path / "input.csv", make_corpus(20, seed=12))
    out = tmp_path / "out.jsonl"
    invoke("predict", trained_run, data, "--output", out, "--chunk-size", 4, "--shard", "0/2", check=True)
    one_line_error(
        invoke("merge-predictions", out, "--shards", 2), 3, "out.shard-1-of-2.jsonl: prediction shard missing"
    )
    # the other shard, in other chunks
    invoke("predict", trained_run, data, "--output", out, "--chunk-size", 5, "--shard", "1/2", check=True)
    one_line_error(invoke("merge-predictions", out, "--shards", 2), 3, "expected")
    assert not out.exists()
    one_line_error(invoke("predict", trained_run, data, "--shard", "2/2", "-o", out), 2, "0 <= i < n")


def test_preprocess_shards_merge_into_the_single_process_run(tmp_path, tiny_overrides):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    invoke("preprocess", TINY_CONFIG, *tiny_overrides, "--run-dir", single, check=True)
    for index in (0, 1):
        invoke("preprocess", TINY_CONFIG, *tiny_overrides, "--run-dir", sharded, "--shard", f"{index}/2", check=True)
    assert not (sharded / "vocab.json").exists()
    invoke("preprocess", TINY_CONFIG, *tiny_overrides, "--run-dir", sharded, "--merge-shards", 2, check=True)
    for name in ("vocab.json", "labels.json", "config.json", "embeddings.safetensors"):
        assert (sharded / name).read_bytes() == (single / name).read_bytes(), name
    for split in ("train", "validation", "test"):
        a, b = EncodedSplit.load(single / "data" / split), EncodedSplit.load(sharded / "data" / split)
        for field in ("tokens", "sentence_offsets", "document_offsets", "labels"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (split, field)
    assert not (sharded / "shards").exists()


# --- the pieces ---------------------------------------------------------------------------------------


def test_local_batches_are_disjoint_and_cover_the_global_batch():
    batch = np.array([7, 3, 9, 4, 1])
    parts = [local_batch(batch, DistContext(rank=r, world_size=2)) for r in (0, 1)]
    assert [p.tolist() for p, _ in parts] == [[7, 3, 9], [4, 1]] and [c for _, c in parts] == [3, 2]
    assert local_batch(batch, DistContext()) == (batch, 5)
    lone = [local_batch(np.array([5]), DistContext(rank=r, world_size=2)) for r in (0, 1)]
    assert lone[0][0].tolist() == [5] and lone[0][1] == 1
    assert lone[1][0].tolist() == [5] and lone[1][1] == 0  # runs the document, counts nothing


def test_rank_losses_average_to_the_global_mean():
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    ranks = [batch_loss(logits[:3], labels[:3], 3, 5, 2), batch_loss(logits[3:], labels[3:], 2, 5, 2)]
    mean = torch.nn.functional.cross_entropy(logits, labels)
    assert float(sum(ranks) / 2) == pytest.approx(float(mean), rel=1e-6)
    assert float(batch_loss(logits[:1], labels[:1], 0, 1, 2)) == 0.0


def test_slices_of_a_split():
    split = EncodedSplit.from_documents([[[2, 3], [4]], [[5]], [[6, 7, 8], [9], [2]]], [0, 1, 2])
    assert [contiguous_shard(3, i, 2) for i in (0, 1)] == [(0, 2), (2, 3)]
    part = split_slice(split, 1, 3)
    assert part.tokens.tolist() == [5, 6, 7, 8, 9, 2] and part.labels.tolist() == [1, 2]
    assert part.sentence_offsets.tolist() == [0, 1, 4, 5, 6] and part.document_offsets.tolist() == [0, 1, 4]
    assert len(split_slice(split, 3, 3)) == 0


def test_shard_and_device_settings():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x/2", "1", "-1/2"):
        with pytest.raises(ConfigError, match="i/n"):
            parse_shard(bad)
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")
        with pytest.raises(ConfigError, match="fp16"):
            check_precision(torch.device("cpu"), "fp16")
    with pytest.raises(ConfigError, match="device"):
        load_config(TINY_CONFIG, ["device=gpu"])


def test_bf16_autocast_trains_and_predicts_on_cpu(tmp_path, tiny_config):
    config = tiny_config.model_copy(
        update={"precision": "bf16", "train": tiny_config.train.model_copy(update={"max_epochs": 1})}
    )
    preprocess(config, tmp_path)
    result = training.train(config, tmp_path)
    assert np.isfinite(result.history[0]["train_loss"]) and result.history[0]["validation_accuracy"] > 0


@pytest.mark.slow
def test_preprocess_and_predict_under_torchrun_take_their_rank(tmp_path, tiny_overrides, trained_run):
    single, distributed = tmp_path / "single", tmp_path / "torchrun"
    invoke("preprocess", TINY_CONFIG, *tiny_overrides, "--run-dir", single, check=True)
    module = ["-m", "pipelines"]
    launch(torchrun(*module, "preprocess", str(TINY_CONFIG), *tiny_overrides, "--run-dir", str(distributed)))
    for name in ("vocab.json", "embeddings.safetensors"):
        assert (distributed / name).read_bytes() == (single / name).read_bytes(), name
    assert EncodedSplit.load(distributed / "data" / "train").tokens.tolist() == (
        EncodedSplit.load(single / "data" / "train").tokens.tolist()
    )
    assert not (distributed / "shards").exists()

    data = write_csv(tmp_path / "input.csv", make_corpus(40, seed=13))
    expected, merged = tmp_path / "single.jsonl", tmp_path / "merged.jsonl"
    invoke("predict", trained_run, data, "--output", expected, "--chunk-size", 6, check=True)
    result = launch(torchrun(*module, "predict", str(trained_run), str(data), "-o", str(merged), "--chunk-size", "6"))
    assert merged.read_bytes() == expected.read_bytes()
    assert result.stdout.count("predicted 40 documents") == 1  # rank 0 merged and reported
    assert sorted(p.name for p in tmp_path.glob("merged*")) == ["merged.jsonl"]
