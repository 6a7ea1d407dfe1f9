"""`tracking: mlflow`: a tiny run logged to a real MLflow file store, read back, and its pyfunc model
loaded in a fresh process predicting what `han predict` predicts."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, TINY_CONFIG, invoke, make_corpus, write_csv
from han.config import load_config
from han.workflows.tracking import flatten_config

PREDICT_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import mlflow.pyfunc, pandas
    model = mlflow.pyfunc.load_model(sys.argv[1])
    texts = json.loads(sys.argv[2])
    frame = model.predict(pandas.DataFrame({"text": texts}))
    print(json.dumps({"columns": list(frame.columns), "dtypes": [str(t) for t in frame.dtypes],
                      "rows": frame.to_dict(orient="records")}))
    """
)


@pytest.mark.slow
def test_a_tracked_run_is_logged_to_mlflow_and_its_model_predicts_like_han_predict(
    tmp_path, tiny_overrides, monkeypatch
):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from han.workflows.run import run_all

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # han allows the file store while it logs
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    config = load_config(TINY_CONFIG, [*tiny_overrides, "tracking=mlflow", "tracking_experiment=han-test"])
    run_dir = tmp_path / "run"
    run_all(config, run_dir)
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ and "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
    assert os.environ["MLFLOW_TRACKING_URI"] == store.as_uri()

    # --- the run, read back through MlflowClient ---
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file store only when allowed
    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("han-test")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.data.params["model.kind"] == "han"
    assert run.data.params["train.lr"] == "0.01"
    assert run.data.params == flatten_config(config)
    assert run.data.tags["han.run_dir"] == str(run_dir.resolve())

    epochs = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    history = sorted(client.get_metric_history(run_id, "validation_accuracy"), key=lambda m: m.step)
    assert [m.step for m in history] == [e["epoch"] for e in epochs] == list(range(1, len(epochs) + 1))
    assert [m.value for m in history] == pytest.approx([e["validation_accuracy"] for e in epochs], abs=1e-12)
    assert len(client.get_metric_history(run_id, "train_loss")) == len(epochs)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-12)
    assert run.data.metrics["test_macro_f1"] == pytest.approx(metrics["test"]["macro_f1"], abs=1e-12)
    assert run.data.metrics["final_validation_loss"] == pytest.approx(metrics["validation"]["loss"], abs=1e-12)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"manifest.json", "config.json", "metrics.json", "train_log.jsonl"} <= artifacts

    # --- the logged model: code and safetensors, no pickle ---
    assert not list(store.rglob("*.pkl"))
    assert [p.name for p in store.rglob("best.safetensors")] == ["best.safetensors"]
    (mlmodel,) = store.rglob("MLmodel")
    assert "mlflow_model.py" in mlmodel.read_text()
    assert "han" in (mlmodel.parent / "requirements.txt").read_text()

    # --- a fresh process loads runs:/<id>/model and predicts what `han predict` writes ---
    texts = [row["text"] for row in make_corpus(5, seed=11)]
    done = subprocess.run(
        [sys.executable, "-c", PREDICT_IN_FRESH_PROCESS, f"runs:/{run_id}/model", json.dumps(texts)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    classes = json.loads((run_dir / "labels.json").read_text())["labels"]
    assert served["columns"] == ["label"] + [f"p_{name}" for name in classes]
    assert served["dtypes"][1:] == ["float64"] * len(classes)

    data_file = write_csv(tmp_path / "texts.csv", [{"text": t} for t in texts])
    result = invoke("predict", run_dir, data_file, check=True)
    predicted = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(predicted) == len(served["rows"]) == 5
    for mine, theirs in zip(served["rows"], predicted, strict=True):
        assert mine["label"] == theirs["label"]
        for name in classes:
            assert mine[f"p_{name}"] == pytest.approx(theirs[f"p_{name}"], abs=1e-6)


def test_tracking_none_never_imports_mlflow(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from han.config import load_config
        from han.workflows.tracking import check_tracking, track_run
        config = load_config({str(TINY_CONFIG)!r}, ["data.source=unused.csv"])
        assert config.tracking == "none"
        check_tracking(config)
        assert track_run(config, {str(tmp_path)!r}, None) is None
        print("mlflow" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert done.stdout.strip() == "False"
    assert not (tmp_path / "mlruns").exists()


def test_tracking_mlflow_is_checked_before_any_work(tiny_config, tmp_path, monkeypatch):
    from han.errors import ConfigError
    from han.workflows.run import run_all

    config = tiny_config.model_copy(update={"tracking": "mlflow"})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    with pytest.raises(ConfigError, match="cannot use the tracking store nosuchscheme://nowhere"):
        run_all(config, tmp_path / "run")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if mlflow were not installed
    with pytest.raises(ConfigError, match=r"needs the mlflow package: pip install 'han\[mlflow\]'"):
        run_all(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_config_params_are_dotted_strings_within_mlflow_limits(tiny_config):
    params = flatten_config(tiny_config.model_copy(update={"tracking": "mlflow"}))
    assert params["model.kind"] == "han"
    assert params["data.splits.train"] == "train"
    assert params["model.cnn_widths"] == "[3, 4, 5]"
    assert params["train.threads"] == "1"
    assert params["data.labels"] == "null"
    assert all(isinstance(v, str) and len(v) <= 6000 for v in params.values())
