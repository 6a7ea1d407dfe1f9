"""`tracking: mlflow`: a tiny run logged to a real MLflow file store, read back, and its pyfunc model
loaded in a fresh process predicting what `han predict` predicts, from the run's own text column."""

import html
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import han
from conftest import ROOT, TINY_CONFIG, invoke, make_corpus, write_csv
from han.config import load_config
from han.workflows.tracking import flatten_config

PREDICT_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import mlflow.pyfunc, pandas
    model = mlflow.pyfunc.load_model(sys.argv[1])
    column, texts = sys.argv[2], json.loads(sys.argv[3])
    frame = model.predict(pandas.DataFrame({column: texts}))
    print(json.dumps({"inputs": model.metadata.get_input_schema().input_names(), "columns": list(frame.columns),
                      "dtypes": [str(t) for t in frame.dtypes], "rows": frame.to_dict(orient="records")}))
    """
)


@pytest.mark.slow
def test_a_tracked_run_is_logged_to_mlflow_and_its_model_predicts_like_han_predict(
    tmp_path, tiny_overrides, corpus_rows, monkeypatch
):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from han.workflows.run import run_all

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # han allows the file store while it logs
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    # The run reads its documents from a column named review_body, not text: so must its MLflow model.
    rows = [{"review_body" if key == "text" else key: value for key, value in row.items()} for row in corpus_rows]
    source = write_csv(tmp_path / "reviews.csv", rows)
    overrides = [*tiny_overrides, f"data.source={source}", "data.text_column=review_body"]
    config = load_config(TINY_CONFIG, [*overrides, "tracking=mlflow", "tracking_experiment=han-test"])
    run_dir = tmp_path / "run"
    run_all(config, run_dir)
    assert not list(run_dir.rglob("*.html"))  # the reports are made elsewhere: the run directory is han's own
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
    assert {"manifest.json", "config.json", "metrics.json", "train_log.jsonl", "reports"} <= artifacts
    assert {a.path for a in client.list_artifacts(run_id, "reports")} == {"reports/run.html", "reports/report.html"}
    reports = Path(client.download_artifacts(run_id, "reports", str(tmp_path / "downloaded")))
    report = (reports / "report.html").read_text()  # han report on the first validation documents
    assert f"<code>{html.escape(str(source))} [validation]</code>" in report
    assert 'data-shown="20" data-read="20"' in report  # tracking.REPORT_DOCUMENTS of the 36 validation documents
    assert "Training curves" in (reports / "run.html").read_text()  # the han show page

    # --- the logged model: code and safetensors, no pickle ---
    assert not list(store.rglob("*.pkl"))
    assert [p.name for p in store.rglob("best.safetensors")] == ["best.safetensors"]
    (mlmodel,) = store.rglob("MLmodel")
    assert "mlflow_model.py" in mlmodel.read_text()
    requirements = (mlmodel.parent / "requirements.txt").read_text().splitlines()
    assert f"han-classifier=={han.__version__}" in requirements  # the PyPI name; `han` there is another project

    # --- a fresh process loads runs:/<id>/model and predicts what `han predict` writes ---
    texts = [row["text"] for row in make_corpus(5, seed=11)]
    done = subprocess.run(
        [sys.executable, "-c", PREDICT_IN_FRESH_PROCESS, f"runs:/{run_id}/model", "review_body", json.dumps(texts)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served["inputs"] == ["review_body"]
    classes = json.loads((run_dir / "labels.json").read_text())["labels"]
    assert served["columns"] == ["label"] + [f"p_{name}" for name in classes]
    assert served["dtypes"][1:] == ["float64"] * len(classes)

    data_file = write_csv(tmp_path / "texts.csv", [{"review_body": t} for t in texts])
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


def test_the_model_reads_the_runs_text_columns_as_han_predict_reads_them(tmp_path):
    pytest.importorskip("mlflow")
    import pandas

    from han.data.records import iter_input_texts
    from han.errors import DataError
    from han.serving.mlflow_model import input_example, input_texts, model_signature

    config = load_config(TINY_CONFIG, ["data.source=unused.csv", "data.text_column=[title, body]"])
    rows = [{"title": "Shares rose.", "body": "Markets  cheered. "}, {"title": "", "body": "Only a body."}]
    frame = pandas.DataFrame(rows)
    expected = list(iter_input_texts(write_csv(tmp_path / "in.csv", rows), config.data))
    assert input_texts(frame, config.data) == expected == ["Shares rose.\n\nMarkets  cheered.", "Only a body."]
    assert input_texts(frame.assign(title=[None, float("nan")]), config.data)[1] == "Only a body."
    assert model_signature(["a", "b"], config.data.text_columns).inputs.input_names() == ["title", "body"]
    assert list(input_example(config.data).columns) == ["title", "body"]
    with pytest.raises(DataError, match=r"column\(s\) body not found \(columns: title, text\)"):
        input_texts(pandas.DataFrame({"title": ["x"], "text": ["y"]}), config.data)
    with pytest.raises(DataError, match="row 1: column 'body' is a number"):
        input_texts(frame.assign(body=["fine", 3]), config.data)


def test_the_reports_are_written_outside_the_run_directory_in_a_bounded_time(trained_run, tmp_path):
    import time

    from han.store.rundir import RunDir
    from han.workflows.tracking import REPORT_DOCUMENTS, write_reports

    config = RunDir(trained_run).load_config()
    start = time.perf_counter()
    written = write_reports(config, RunDir(trained_run), tmp_path)
    assert time.perf_counter() - start < 30  # about a second on the tiny corpus; the data source is read again
    assert sorted(p.name for p in written) == ["report.html", "run.html"]
    assert all(p.parent == tmp_path for p in written)
    assert f'data-shown="{REPORT_DOCUMENTS}"' in (tmp_path / "report.html").read_text()
    assert not list(trained_run.rglob("*.html"))


@pytest.mark.slow
def test_a_model_without_attention_logs_its_run_page_only(tmp_path, tiny_overrides):
    from han.store.rundir import RunDir
    from han.workflows.run import run_all
    from han.workflows.tracking import write_reports

    config = load_config(TINY_CONFIG, [*tiny_overrides, "model.kind=linear"])
    run_all(config, tmp_path / "run")
    (tmp_path / "out").mkdir()
    assert [p.name for p in write_reports(config, RunDir(tmp_path / "run"), tmp_path / "out")] == ["run.html"]
