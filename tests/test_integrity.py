"""Run-directory integrity: every artifact has a SHA-256 in the manifest, tampering is refused, pickles never load."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_CONFIG, invoke, one_line_error
from han.errors import RunDirError
from han.store.rundir import RunDir
from han.util.hashing import file_sha256


def test_manifest_lists_every_artifact_with_its_sha256(trained_run):
    run = RunDir(trained_run)
    artifacts = json.loads(run.manifest_path.read_text())["artifacts"]
    on_disk = {
        p.relative_to(trained_run).as_posix()
        for p in trained_run.rglob("*")
        if p.is_file() and p.name != "manifest.json" and p.parent.name != "checkpoints"
    }
    assert set(artifacts) == on_disk
    for rel, entry in artifacts.items():
        assert (
            entry["sha256"] == file_sha256(trained_run / rel) and entry["bytes"] == (trained_run / rel).stat().st_size
        )
    assert {"model/best.safetensors", "vocab.json", "labels.json", "metrics.json", "train_log.jsonl"} <= set(artifacts)
    assert any(k.startswith("data/train/") and k.endswith(".arrow") for k in artifacts)


@pytest.mark.parametrize(
    ("target", "damage", "command", "message"),
    [
        ("model/best.safetensors", "flip", "predict", "best.safetensors: SHA-256 does not match manifest.json"),
        ("model/best.safetensors", "truncate", "predict", "bytes but manifest.json records"),
        ("vocab.json", "truncate", "predict", "vocab.json: "),
        ("labels.json", "relabel", "predict", "labels.json: SHA-256 does not match"),
        ("config.json", "flip", "evaluate", "config.json: "),
        ("data/test", "truncate-arrow", "evaluate", "does not match|bytes but manifest"),
        ("metrics.json", "flip", "evaluate", "metrics.json: "),
        ("model/best.safetensors", "delete", "predict", "best.safetensors: missing"),
        ("manifest.json", "delete", "predict", "manifest.json: missing"),
    ],
)
def test_tampered_files_are_refused_with_one_line(run_copy, target, damage, command, message):
    path = run_copy / target
    if damage == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "relabel":  # still valid JSON: without the checksum this would silently mislabel predictions
        labels = json.loads(path.read_text())
        labels["labels"] = list(reversed(labels["labels"]))
        path.write_text(json.dumps(labels, indent=2) + "\n")  # same size, other order
    elif damage == "truncate-arrow":
        arrow = next(path.glob("*.arrow"))
        arrow.write_bytes(arrow.read_bytes()[:-100])
    else:
        path.unlink()
    args = ["predict", run_copy] if command == "predict" else ["evaluate", run_copy, "--split", "test"]
    line = one_line_error(invoke(*args, input="The team scored a goal.\n"), 4)
    assert re.search(message, line), line


class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def plant(run: RunDir, rel: str, data: bytes) -> None:
    """Write `data` at `rel` and make the manifest vouch for it, so that only the loader stands in the way."""
    path = run.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    run.record_artifacts(path)


def test_a_planted_pickle_is_refused_not_executed(run_copy, tmp_path, tiny_overrides):
    run = RunDir(run_copy)
    marker = tmp_path / "EXECUTED"
    evil = pickle.dumps(Payload(marker))

    # 1. Raw pickle in place of the weights, checksum updated: the safetensors loader refuses it.
    original = (run_copy / "model" / "best.safetensors").read_bytes()
    plant(run, "model/best.safetensors", evil)
    one_line_error(invoke("predict", run_copy, input="a goal.\n"), 4, "not a readable safetensors file")

    # 2. A torch.save file (zip + pickle) in place of the weights: refused the same way.
    torch_file = tmp_path / "weights.pt"
    torch.save({"payload": Payload(marker)}, torch_file)
    plant(run, "model/best.safetensors", torch_file.read_bytes())
    one_line_error(invoke("evaluate", run_copy), 4, "not a readable safetensors file")
    plant(run, "model/best.safetensors", original)

    # 3. Pickle in place of the vocabulary and the labels: JSON only.
    for name in ("vocab.json", "labels.json"):
        saved = (run_copy / name).read_bytes()
        plant(run, name, evil)
        one_line_error(invoke("predict", run_copy, input="a goal.\n"), 4, f"{name}: not valid JSON")
        plant(run, name, saved)

    # 4. A pickle dropped next to the encoded data, not in the manifest: refused before anything is read.
    (run_copy / "data" / "test" / "extra.pkl").write_bytes(evil)
    one_line_error(invoke("evaluate", run_copy, "--split", "test"), 4, "extra.pkl: unexpected file")
    (run_copy / "data" / "test" / "extra.pkl").unlink()

    # 5. A pickle posing as the newest checkpoint: skipped as damaged, training resumes from a real one.
    (run_copy / "checkpoints" / "step-99999999.safetensors").write_bytes(evil)
    result = invoke("train", TINY_CONFIG, *tiny_overrides, "--run-dir", run_copy, "--resume")
    assert result.exit_code == 0, result.output
    assert "damaged checkpoint skipped" in " ".join(result.stderr.split())

    assert not marker.exists(), "a pickle was executed"
    result = invoke("predict", run_copy, input="The team scored a goal in the match.\n")
    assert result.exit_code == 0 and json.loads(result.stdout.splitlines()[0])["label"] == "sport"


def test_no_unsafe_loader_in_the_code():
    forbidden = re.compile(
        r"\bimport pickle\b|\bpickle\.load|torch\.load\(|yaml\.load\(|yaml\.unsafe_load|allow_pickle\s*=\s*True|"
        r"\bjoblib\b|\bdill\b|KeyedVectors\.load\(|Word2Vec\.load\("
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("han", "pipelines")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if forbidden.search(line)
    ]
    assert offenders == []


def test_run_directory_is_never_overwritten_without_overwrite(run_copy, tiny_overrides, tmp_path):
    before = (run_copy / "model" / "best.safetensors").read_bytes()
    for args in (
        ["run", TINY_CONFIG, *tiny_overrides, "--run-dir", run_copy],
        ["train", TINY_CONFIG, *tiny_overrides, "--run-dir", run_copy],
        ["preprocess", TINY_CONFIG, *tiny_overrides, "preprocess.max_words=7", "--run-dir", run_copy],
    ):
        one_line_error(invoke(*args), 4, "--overwrite")
    # the same preprocessing again only reuses what is there: nothing is overwritten
    reused = invoke("preprocess", TINY_CONFIG, *tiny_overrides, "--run-dir", run_copy)
    assert reused.exit_code == 0 and "reused cached preprocessing" in reused.stdout, reused.output
    assert (run_copy / "model" / "best.safetensors").read_bytes() == before

    result = invoke("train", TINY_CONFIG, *tiny_overrides, "train.max_epochs=1", "--run-dir", run_copy, "--overwrite")
    assert result.exit_code == 0, result.output
    assert len((run_copy / "train_log.jsonl").read_text().splitlines()) == 1
    assert not (run_copy / "metrics.json").exists(), "results of the replaced training are gone"
    RunDir(run_copy).verify_artifacts(run_copy / "model" / "best.safetensors", run_copy / "train_log.jsonl")

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    one_line_error(
        invoke("run", TINY_CONFIG, *tiny_overrides, "--run-dir", foreign, "--overwrite"), 4, "not a han run directory"
    )
    assert (foreign / "notes.txt").read_text() == "precious"


def test_verify_refuses_files_the_manifest_does_not_list(run_copy):
    run = RunDir(run_copy)
    stray = run_copy / "model" / "stray.safetensors"
    shutil.copy(run_copy / "model" / "best.safetensors", stray)
    with pytest.raises(RunDirError, match=r"not listed in manifest\.json"):
        run.verify_artifacts(stray)
