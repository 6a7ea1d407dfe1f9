"""The Python API (han/api.py): the README's examples run, and give what the CLI gives."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, invoke, write_csv
from han.errors import ConfigError, DataError


def readme_python_blocks() -> list[str]:
    """The ```python blocks of the README's "Python" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_the_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = readme_python_blocks()
    assert blocks, "the README has a Python section with code"
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    predictions, explanation = namespace["predictions"], namespace["explanation"]
    assert len(predictions) == 2 and predictions.probabilities.shape == (2, len(predictions.classes))
    np.testing.assert_allclose(predictions.probabilities.sum(1), 1.0, atol=1e-5)
    assert sum(s.weight for s in explanation.sentences) == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / "runs" / "tiny" / "metrics.json").is_file()


def test_predict_matches_the_cli_and_explain_matches_the_report(trained_run, tmp_path):
    import han

    classifier = han.load(trained_run)
    texts = ["The team won the match.", "A new chip for the computer. The chef baked bread.", "", "<b>goal</b> & co"]
    ours = classifier.predict(texts)
    source = write_csv(tmp_path / "in.csv", [{"text": t} for t in texts])
    out = tmp_path / "out.jsonl"
    invoke("predict", trained_run, source, "-o", out, check=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in rows] == ours.labels
    cli = np.array([[r[f"p_{c}"] for c in classifier.classes] for r in rows])
    np.testing.assert_allclose(ours.probabilities, cli, atol=1e-6)
    assert classifier.predict(texts[1]).labels == [ours.labels[1]]  # one string is one text, not characters

    report = tmp_path / "report.jsonl"
    invoke("report", trained_run, source, "-o", report, check=True)
    record = json.loads(report.read_text().splitlines()[1])
    explanation = classifier.explain(texts[1])
    assert explanation.label == record["predicted"]
    weights = [s.weight for s in explanation.sentences]
    assert weights == pytest.approx([s["weight"] for s in record["sentences"]], abs=1e-6)
    html = classifier.explain(texts[3])._repr_html_()
    assert "<script" not in html and "<b>" not in html and "&lt;" in html


def test_bad_input_and_kinds_without_attention_get_typed_errors(trained_run, tmp_path):
    import han

    classifier = han.load(trained_run)
    with pytest.raises(DataError, match=r"texts\[1\] is None, not str"):
        classifier.predict(["fine", None])  # type: ignore[list-item]
    assert classifier.predict([]).probabilities.shape == (0, len(classifier.classes))
    config = json.loads((Path(trained_run) / "config.json").read_text())
    assert classifier.config.model.kind == config["model"]["kind"] == "han"
    with pytest.raises(ConfigError, match="run_dir"):
        han.run(classifier.config)
    with pytest.raises(AttributeError):
        han.no_such_thing  # noqa: B018
