"""The paired document bootstrap of `han compare`, and the Markdown and HTML renderings of its result."""

import copy
import re
import time
from typing import Any

import numpy as np
import pytest

from han.evaluation.significance import SIGNIFICANCE_LEVEL, paired_bootstrap
from han.reports.comparison import comparison_html, comparison_markdown

HOSTILE = "<script>alert(1)</script>|x"


# --- paired bootstrap ----------------------------------------------------------------------------
def correct(share: float, seeds: int = 3, documents: int = 2_000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((seeds, documents)) < share


def test_identical_inputs_give_no_difference_and_p_one():
    a = correct(0.7)
    difference, p = paired_bootstrap(a, a.copy())
    assert difference == 0.0
    assert p == 1.0


def test_a_clearly_better_model_is_significant():
    a, b = correct(0.9, seed=1), correct(0.7, seed=2)
    difference, p = paired_bootstrap(a, b)
    assert difference == pytest.approx(0.2, abs=0.02)
    assert difference == pytest.approx(a.mean() - b.mean())
    assert p < 0.001
    reverse, p_reverse = paired_bootstrap(b, a)
    assert reverse == pytest.approx(-difference)
    assert p_reverse < 0.001


def test_one_document_of_two_thousand_is_not_significant():
    a = correct(0.7, seeds=1)
    b = a.copy()
    b[0, np.flatnonzero(a[0])[0]] = False  # B misses one document A gets right
    difference, p = paired_bootstrap(a, b)
    assert difference == pytest.approx(1 / 2_000)
    assert p > SIGNIFICANCE_LEVEL


def test_the_seeds_differences_offset_within_a_document():
    # Seed 0: A right, B wrong; seed 1: the opposite, on every document: no difference at all.
    a = np.array([[1] * 50, [0] * 50])
    assert paired_bootstrap(a, 1 - a) == (0.0, 1.0)


def test_the_result_is_deterministic_for_a_fixed_seed():
    a, b = correct(0.72, seed=3), correct(0.7, seed=4)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)
    assert paired_bootstrap(a.astype(int), b.astype(int), seed=7) == paired_bootstrap(a, b, seed=7)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.ones((3, 10), bool), np.ones((3, 11), bool)),
        (np.ones((3, 10), bool), np.ones((2, 10), bool)),
        (np.ones((0, 10), bool), np.ones((0, 10), bool)),
        (np.ones((3, 0), bool), np.ones((3, 0), bool)),
        (np.ones((2, 3, 4), bool), np.ones((2, 3, 4), bool)),
        (np.full((2, 5), 2), np.ones((2, 5), int)),
    ],
)
def test_bad_inputs_raise_value_error(a, b):
    with pytest.raises(ValueError):
        paired_bootstrap(a, b)


def test_twenty_thousand_documents_take_well_under_a_second():
    a, b = correct(0.68, seeds=3, documents=20_000, seed=5), correct(0.67, seeds=3, documents=20_000, seed=6)
    start = time.perf_counter()
    paired_bootstrap(a, b, resamples=10_000)
    assert time.perf_counter() - start < 0.5


# --- renderers -----------------------------------------------------------------------------------
def run(seed: int, accuracy: float, memory: int | None = 812_345_678) -> dict[str, Any]:
    return {
        "seed": seed,
        "test_accuracy": accuracy,
        "test_macro_f1": accuracy - 0.15,
        "validation_accuracy": accuracy - 0.01,
        "validation_macro_f1": accuracy - 0.16,
        "train_seconds": 150.2,
        "inference_docs_per_s": 2100.0,
        "parameters": 1_234_567,
        "peak_memory_bytes": memory,
        "epochs": 6,
    }


def summary(accuracy: float, std: float, memory: float | None = 812_345_678.0) -> dict[str, Any]:
    return {
        "test_accuracy": {"mean": accuracy, "std": std},
        "test_macro_f1": {"mean": accuracy - 0.15, "std": std},
        "train_seconds": {"mean": 150.2, "std": 3.0},
        "inference_docs_per_s": {"mean": 21000.0, "std": 10.0},
        "peak_memory_bytes": None if memory is None else {"mean": memory, "std": 0.0},
        "parameters": 1_234_567,
    }


@pytest.fixture
def result() -> dict[str, Any]:
    return {
        "title": "clothing",
        "config": "configs/clothing.yaml",
        "seeds": [0, 1, 2],
        "split_sizes": {"train": 18112, "validation": 2264, "test": 2265},
        "metric": "accuracy",
        "best": "han",
        "rows": [
            {
                "model": "han",
                "description": "HN-ATT: word and sentence BiGRU with attention (Yang et al. 2016)",
                "complete": True,
                "runs": [run(s, 0.67 + s / 1000) for s in range(3)],
                "summary": summary(0.671, 0.001),
            },
            {
                "model": "cnn",
                "description": "a convolutional baseline",
                "complete": False,
                "runs": [run(0, 0.655, memory=None)],
                "summary": summary(0.655, 0.0, memory=None),
            },
            {"model": "linear", "description": "bag of words", "complete": False, "runs": [], "summary": None},
        ],
        "significance": [
            {"model": "cnn", "against": "han", "difference": -0.012, "p_value": 0.003, "significant": True},
            {"model": "linear", "against": "han", "difference": None, "p_value": None, "significant": False},
        ],
        "significance_test": "paired bootstrap over test documents (10,000 resamples), seeds paired",
    }


def hostile(result: dict[str, Any]) -> dict[str, Any]:
    """`result` with the second model, its description, the title and the config path hostile."""
    bad = copy.deepcopy(result)
    bad["title"] = bad["config"] = HOSTILE
    bad["rows"][1]["model"] = bad["rows"][1]["description"] = HOSTILE
    bad["significance"][0]["model"] = HOSTILE
    return bad


def table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def test_markdown_shows_the_table(result):
    markdown = comparison_markdown(result)
    assert markdown.startswith("# han compare: clothing\n")
    assert "configs/clothing.yaml" in markdown and "18,112" in markdown and "0, 1, 2" in markdown
    rows = table_rows(markdown)
    assert len(rows) == 2 + 3  # header, separator, one per model
    han, cnn, linear = rows[2:]
    assert "0.671 ± 0.001" in han and "best" in han and "1,234,567" in han and "21,000" in han
    assert "774.7" in han  # 812,345,678 bytes in MiB
    assert "\u22121.2 pts, p=0.003 *" in cnn and "cnn (1 of 3 seeds)" in cnn
    assert "linear (0 of 3 seeds)" in linear
    assert linear.count("—") == 7  # every figure of a model with no finished run
    assert "* marks p < 0.05" in markdown
    assert "- **han**: HN-ATT" in markdown


def test_a_hostile_name_cannot_break_the_markdown_table(result):
    markdown = comparison_markdown(hostile(result))
    rows = table_rows(markdown)
    separators = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
    assert separators == {9}  # 8 columns
    assert "<script" not in markdown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\|x" in markdown


def test_html_escapes_every_user_string(result):
    page = comparison_html(hostile(result))
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;|x" in page
    assert page.count("&lt;script&gt;") >= 5  # title, heading, config, table, charts, per-seed, description


def test_html_is_self_contained(result):
    page = comparison_html(result)
    assert '<meta http-equiv="Content-Security-Policy"' in page
    assert "default-src 'none'" in page
    assert set(re.findall(r"https?://[^\"'\s>]*", page)) <= {"http://www.w3.org/2000/svg"}  # the SVG namespace
    assert not re.search(r"\b(src|href)=", page)
    assert "<link" not in page and "@import" not in page


def test_html_draws_one_chart_per_metric_with_a_bar_per_finished_model(result):
    page = comparison_html(result)
    charts = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(charts) == 2
    for chart in charts:
        assert 'role="img"' in chart and "aria-label=" in chart
        assert chart.count("<rect") == 2  # han and cnn; linear has no finished run
        assert "no finished run" in chart
    accuracy = charts[0]
    assert "axis 0.6 to 0.7" in accuracy  # min 0.655 - 0.02 floors to 0.6; max 0.672 + 0.02 ceils to 0.7
    assert f'fill="{"#2ca02c"}"' in accuracy  # the best model highlighted


def test_html_shows_incomplete_rows_missing_summaries_and_per_seed_figures(result):
    page = comparison_html(result)
    assert "cnn (1 of 3 seeds)" in page
    assert "linear (0 of 3 seeds)" in page
    assert '<td class="num">—</td>' in page
    assert page.count("<h3>") == 3  # per-seed tables, one per model
    assert '<td class="num">0.672</td>' in page  # han's seed 2 test accuracy
    assert "\u22121.2 pts, p=0.003 *" in page
