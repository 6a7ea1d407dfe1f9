"""`han show`: the self-contained HTML page of one or several training runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import invoke, one_line_error
from han.reports.html import CSP
from han.reports.run_page import CURVES, RunView, _line_chart

CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
)
CURVE_KEYS = [key for _, keys in CURVES for key, _, _ in keys]


def train_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines() if line.strip()]


def curves(html: str) -> list[tuple[str, str]]:
    """(run, series) of every curve's polyline, attributes unescaped."""
    found = re.findall(r'<polyline class="curve" data-run="([^"]*)" data-series="([^"]*)"', html)
    return [(run.replace("&amp;", "&"), series) for run, series in found]


@pytest.fixture(scope="module")
def single_page(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    output = tmp_path_factory.mktemp("show") / "run.html"
    result = invoke("show", trained_run, "-o", output, check=True)
    assert "run page" in result.stdout and str(output.name) in result.stdout
    return output.read_text(encoding="utf-8")


def test_page_is_self_contained_under_the_csp(single_page, trained_run):
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in single_page
    assert "<script" not in single_page.lower()
    assert not re.search(r"\s(src|href)=", single_page)
    assert set(re.findall(r"https?://[^\s\"'<>]+", single_page)) == {"http://www.w3.org/2000/svg"}
    assert f"<title>{trained_run.name}</title>" in single_page


def test_one_curve_per_series_of_the_run(single_page, trained_run):
    log = train_log(trained_run)
    expected = sorted((trained_run.name, key) for key in CURVE_KEYS if any(r.get(key) is not None for r in log))
    assert sorted(curves(single_page)) == expected
    assert len(re.findall(r"<svg ", single_page)) == len(CURVES) + 2  # curves, confusion matrix, per-class bars


def test_confusion_matrix_cells_hold_the_metrics_counts(single_page, trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())["test"]
    matrix = metrics["confusion_matrix"]["rows_true_columns_predicted"]
    cells = re.findall(r'<rect class="cell" data-row="(\d+)" data-col="(\d+)" data-count="(\d+)"', single_page)
    assert [[int(c) for r, _, c in cells if int(r) == i] for i in range(len(matrix))] == matrix
    assert [int(n) for n in re.findall(r'<text class="count"[^>]*>(\d+)</text>', single_page)] == [
        n for row in matrix for n in row
    ]
    assert len(re.findall(r'<rect class="score"', single_page)) == 3 * len(metrics["per_class"])


def test_label_counts_per_split_match_the_manifest(single_page, trained_run):
    documents = json.loads((trained_run / "manifest.json").read_text())["preprocess"]["documents"]
    for split, count in documents.items():
        assert f'<th class="num">{split} ({count:,})</th>' in single_page


def test_two_runs_overlay_with_escaped_names(trained_run, tmp_path):
    other = tmp_path / "a&b"
    shutil.copytree(trained_run, other, ignore=shutil.ignore_patterns("checkpoints"))
    output = tmp_path / "both.html"
    invoke("show", trained_run, other, "--output", output, check=True)
    html = output.read_text(encoding="utf-8")
    legend = re.findall(r'<text class="legend"[^>]*>([^<]*)</text>', html)
    assert "a&b" not in html and legend.count("a&amp;b") == legend.count(trained_run.name) == len(CURVES)
    log = train_log(trained_run)
    one = [key for key in CURVE_KEYS if any(r.get(key) is not None for r in log)]
    assert sorted(curves(html)) == sorted((run, key) for run in (trained_run.name, "a&b") for key in one)
    assert html.count('<section class="card run"') == 2


def test_single_epoch_shows_points_and_null_values_are_skipped():
    run = RunView("linear", {}, ["x", "y"], [{"epoch": 1, "train_loss": None, "validation_loss": 0.5}], {}, {}, {})
    loss = _line_chart("loss", CURVES[0][1], [run])
    assert curves(loss) == [("linear", "validation_loss")] and loss.count("<circle") == 1
    assert "no values recorded" in _line_chart("learning rate", CURVES[2][1], [run])


def test_run_without_train_log_is_a_one_line_error(trained_run, tmp_path):
    untrained = tmp_path / "untrained"
    shutil.copytree(trained_run, untrained, ignore=shutil.ignore_patterns("train_log.jsonl", "checkpoints"))
    output = tmp_path / "run.html"
    one_line_error(invoke("show", untrained, "-o", output), 4, "train_log.jsonl", "train the run first")
    assert not output.exists()


def test_output_that_is_an_input_or_a_run_file_is_refused(trained_run):
    metrics = trained_run / "metrics.json"
    before = metrics.read_bytes()
    one_line_error(invoke("show", trained_run, "-o", metrics), 4, "run directory")
    assert metrics.read_bytes() == before
    one_line_error(invoke("show", trained_run, "-o", trained_run), 2, "is a folder")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found (Debian: apt-get install chromium)")
def test_browser_renders_the_charts(single_page, tmp_path):
    page = tmp_path / "run.html"
    page.write_text(single_page, encoding="utf-8")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    command += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    command += [f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and "<html" in result.stdout, result.stderr[-3000:]
    dom = result.stdout
    assert len(re.findall(r"<svg\b", dom)) == len(re.findall(r"<svg\b", single_page)) == len(CURVES) + 2
    assert len(re.findall(r'<polyline class="curve"', dom)) == len(curves(single_page))
    assert len(re.findall(r'<rect class="cell"', dom)) == len(re.findall(r'<rect class="cell"', single_page)) > 0
