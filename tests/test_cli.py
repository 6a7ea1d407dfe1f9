import csv
import json

import pytest

from conftest import TINY_CONFIG, invoke, make_corpus, one_line_error, write_csv


@pytest.mark.slow
def test_run_then_evaluate_and_predict(tmp_path, tiny_overrides):
    run_dir = tmp_path / "run"
    result = invoke("run", TINY_CONFIG, *tiny_overrides, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"validation", "test"}
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix"} <= set(metrics["test"])
    assert "accuracy" in result.stdout and "confusion matrix" in result.stdout

    # evaluate needs nothing but the run directory
    result = invoke("evaluate", run_dir, "--split", "validation")
    assert result.exit_code == 0, result.output
    assert "validation: accuracy" in result.stdout

    rows = make_corpus(30, seed=9)
    data_file = write_csv(tmp_path / "extra.csv", rows)
    result = invoke("evaluate", run_dir, "--data", data_file)
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "metrics.json").read_text())[str(data_file)]["documents"] == 30

    output = tmp_path / "pred.csv"
    result = invoke("predict", run_dir, data_file, "--output", output)
    assert result.exit_code == 0, result.output
    with open(output, newline="") as handle:
        predictions = list(csv.DictReader(handle))
    assert len(predictions) == 30
    labels = ["food", "sport", "tech"]
    for row in predictions:
        assert row["label"] in labels
        assert abs(sum(float(row[f"p_{name}"]) for name in labels) - 1) < 1e-4
    accuracy = sum(p["label"] == r["label"] for p, r in zip(predictions, rows, strict=True)) / len(rows)
    assert accuracy >= 0.8

    result = invoke("predict", run_dir, input="The team scored a goal in the match.\nA new chip for the server.\n")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [line["row"] for line in lines] == [1, 2]
    assert lines[0]["label"] == "sport" and lines[1]["label"] == "tech"


def test_stages_one_by_one(tmp_path, tiny_overrides):
    run_dir = tmp_path / "staged"
    result = invoke("preprocess", TINY_CONFIG, *tiny_overrides, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    assert (run_dir / "data" / "train").is_dir() and not (run_dir / "model").exists()
    peaks = json.loads((run_dir / "manifest.json").read_text())["stage_peak_memory"]
    assert set(peaks) == {"preprocess"} and peaks["preprocess"]["peak_rss_bytes"] > 0
    result = invoke("train", TINY_CONFIG, *tiny_overrides, "train.max_epochs=1", "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    assert (run_dir / "model" / "best.safetensors").is_file()
    assert "1 epochs" in result.stdout
    invoke("evaluate", run_dir, "--split", "validation", check=True)
    # each stage's own process (here the test's) merges its peak memory, keeping the other stages'
    after = json.loads((run_dir / "manifest.json").read_text())["stage_peak_memory"]
    assert set(after) == {"preprocess", "train", "evaluate"} and after["preprocess"] == peaks["preprocess"]
    assert all(isinstance(figures["peak_rss_bytes"], int) for figures in after.values())
    assert all(figures["peak_rss_bytes"] > 0 for figures in after.values())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "missing.yaml"], 2, "config file not found"),
        (["run", TINY_CONFIG, "train.lrate=1"], 2, "train.lrate: unknown key"),
        (["run", TINY_CONFIG, "train.batch_size=big"], 2, "train.batch_size"),
        (["run", TINY_CONFIG, "data.source=/nowhere/data.csv"], 3, "no such file"),
        (["evaluate", "/nowhere/run"], 4, "run directory not found"),
        (["predict", "/nowhere/run"], 4, "run directory not found"),
    ],
)
def test_errors_are_one_line_with_exit_code(tmp_path, args, code, message):
    result = invoke(*args, "--run-dir", tmp_path / "r") if args[0] == "run" else invoke(*args)
    one_line_error(result, code, message)


def test_predict_input_errors(trained_run, tmp_path):
    wrong = write_csv(tmp_path / "wrong.csv", [{"body": "x", "label": "a"}])
    result = invoke("predict", trained_run, wrong)
    assert result.exit_code == 3 and "column(s) text not found" in result.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    out = tmp_path / "out.jsonl"
    result = invoke("predict", trained_run, empty, "--output", out)
    assert result.exit_code == 3 and "no documents" in result.stderr
    assert not out.exists(), "no partial output"


LEAVING = """
import atexit, pathlib, sys
import torch  # loaded: `han` ends the process without the interpreter's teardown
marker = pathlib.Path(sys.argv[1])
atexit.register(lambda: marker.write_text("exit handlers ran"))
from pipelines.cli import main
sys.argv = ["han", "evaluate", sys.argv[2]]
main()
"""


@pytest.mark.parametrize("torch_loaded", [True, False])
def test_the_console_script_keeps_the_exit_code_and_runs_the_exit_handlers(tmp_path, torch_loaded):
    import subprocess
    import sys

    marker = tmp_path / "marker.txt"
    script = LEAVING if torch_loaded else LEAVING.replace("import torch ", "pass ")
    done = subprocess.run(
        [sys.executable, "-c", script, str(marker), str(tmp_path / "no-such-run")], capture_output=True, text=True
    )
    assert done.returncode == 4, done.stderr  # a missing run directory
    assert "no-such-run" in done.stderr and "Traceback" not in done.stderr
    assert marker.read_text() == "exit handlers ran"
