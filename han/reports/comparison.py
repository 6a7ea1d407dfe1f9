"""Markdown and self-contained HTML renderings of a `han compare` result (compare.json).

Model names, descriptions, the title and the config path come from users: in the HTML every one goes
through `esc`; in the Markdown `|` is escaped so a name cannot break the table, and `<`, `>`, `&` are
escaped so a name cannot inject markup where the Markdown is rendered.

A multi-label comparison (`"task": "multilabel"` in compare.json) shows test micro-F1, macro-F1 and
exact match instead of accuracy and macro-F1, and its "vs best" column is the difference in exact match
(`significance_metric`) to the model with the best micro-F1 (`metric`); `headline_columns` and `headers`
give the table's figures for either kind of result.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

from han.evaluation.significance import SIGNIFICANCE_LEVEL
from han.reports.html import PALETTE, esc, format_number, page, svg_frame

DASH = "—"
MINUS = "\u2212"
CHARTS = (("test_accuracy", "test accuracy"), ("test_macro_f1", "test macro-F1"))
MULTILABEL_CHARTS = (("test_micro_f1", "test micro-F1"), ("test_macro_f1", "test macro-F1"))
MULTILABEL_COLUMNS = (
    ("test_micro_f1", "test micro-F1"),
    ("test_macro_f1", "test macro-F1"),
    ("test_exact_match", "test exact match"),
)
METRIC_NAMES = {"accuracy": "accuracy", "micro_f1": "micro-F1", "macro_f1": "macro-F1", "exact_match": "exact match"}
CSS = """
.best td{font-weight:600}
td,th{white-space:nowrap}
.note{color:#555;font-size:.85em}
.chart{margin:8px 0 14px}
dt{font-weight:600}
dd{margin:0 0 .4em 1.2em}
"""


# --- shared formatting --------------------------------------------------------------------------
def _mean(summary: dict[str, Any] | None, key: str) -> float | None:
    """The mean of `key` in `summary`, or None when the summary or the figure is missing."""
    entry = (summary or {}).get(key)
    return None if entry is None or entry.get("mean") is None else float(entry["mean"])


def _mean_std(summary: dict[str, Any] | None, key: str) -> str:
    """`mean ± std` with 3 decimals, or a dash."""
    entry = (summary or {}).get(key)
    if entry is None or entry.get("mean") is None:
        return DASH
    return f"{format_number(entry['mean'])} ± {format_number(entry.get('std') or 0.0)}"


def _number(value: float | None, digits: int) -> str:
    """`value` with thousands separators and `digits` decimals, or a dash."""
    return DASH if value is None else f"{value:,.{digits}f}"


def _mib(value: float | None) -> str:
    """Bytes as MiB with 1 decimal, or a dash."""
    return DASH if value is None else f"{value / 2**20:,.1f}"


def _model_label(row: dict[str, Any], seeds: int) -> str:
    """The model name, with "(n of k seeds)" when some seeds have not finished (raw text, not escaped)."""
    if row.get("complete", True):
        return str(row["model"])
    return f"{row['model']} ({len(row.get('runs') or [])} of {seeds} seeds)"


def _vs_best(row: dict[str, Any], result: dict[str, Any], tests: dict[str, dict[str, Any]]) -> str:
    """The difference to the best model in points with its p-value ("-1.2 pts, p=0.003 *", with a true minus sign), or "best"."""
    if row["model"] == result.get("best"):
        return "best"
    test = tests.get(row["model"])
    if test is None or test.get("difference") is None:
        return DASH
    points = 100 * float(test["difference"])
    sign = MINUS if points < 0 else "+" if points > 0 else ""
    text = f"{sign}{abs(points):.1f} pts"
    p = test.get("p_value")
    if p is not None:
        text += ", p<0.001" if p < 0.001 else f", p={p:.3f}"
    return text + (" *" if test.get("significant") else "")


def _metric_name(name: object) -> str:
    """A metric key as the page names it (micro_f1 -> micro-F1); an unknown one as it is."""
    return METRIC_NAMES.get(str(name), str(name))


def _multilabel(result: dict[str, Any]) -> bool:
    return result.get("task") == "multilabel"


def headline_columns(result: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The quality figures of the table, as (summary key, header): test accuracy and macro-F1, or for a
    multi-label comparison test micro-F1, macro-F1 and exact match."""
    return MULTILABEL_COLUMNS if _multilabel(result) else CHARTS


def headers(result: dict[str, Any]) -> list[str]:
    """The table's column headers for `result` (`HEADERS` for a single-label comparison)."""
    if not _multilabel(result):
        return HEADERS
    versus = f"vs best ({_metric_name(result.get('significance_metric', 'exact_match'))})"
    return ["model", *(header for _, header in headline_columns(result)), versus, *HEADERS[4:]]


def _cells(row: dict[str, Any], result: dict[str, Any], tests: dict[str, dict[str, Any]]) -> list[str]:
    """The table's cells for one model after the name (raw text): the same in Markdown and HTML."""
    summary = row.get("summary")
    parameters = (summary or {}).get("parameters")
    return [
        *(_mean_std(summary, key) for key, _ in headline_columns(result)),
        _vs_best(row, result, tests),
        _number(_mean(summary, "train_seconds"), 1),
        _number(_mean(summary, "inference_docs_per_s"), 0),
        _number(parameters, 0),
        _mib(_mean(summary, "peak_memory_bytes")),
    ]


HEADERS = [
    "model",
    "test accuracy",
    "test macro-F1",
    "vs best",
    "train s",
    "inference docs/s",
    "parameters",
    "peak memory (MiB)",
]


def _splits(result: dict[str, Any]) -> str:
    """ "train 18,112, validation 2,264, test 2,265" (raw text)."""
    return ", ".join(f"{name} {size:,}" for name, size in (result.get("split_sizes") or {}).items())


def _legend(result: dict[str, Any], quote: Callable[[object], str]) -> str:
    """The line explaining the significance test and the *, with the result's strings passed through `quote`."""
    metric, best = result.get("metric", "accuracy"), result.get("best") or DASH
    if _multilabel(result):
        compared = _metric_name(result.get("significance_metric", "exact_match"))
        return (
            f"vs best: difference in {quote(compared)} to the best model by {quote(_metric_name(metric))} "
            f"({quote(best)}) in percentage points; significance test: "
            f"{quote(result.get('significance_test') or DASH)}; * marks p < {SIGNIFICANCE_LEVEL:g}."
        )
    return (
        f"vs best: difference in {quote(metric)} to the best model ({quote(best)}) in percentage points; "
        f"significance test: {quote(result.get('significance_test') or DASH)}; * marks p < {SIGNIFICANCE_LEVEL:g}."
    )


# --- Markdown ------------------------------------------------------------------------------------
def _md(text: object) -> str:
    """User text safe inside a Markdown table cell: markup and `|` escaped, on one line."""
    escaped = html.escape(str(text), quote=False).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(escaped.split())


def comparison_markdown(result: dict[str, Any]) -> str:
    """The comparison as Markdown: heading, setup line, results table, significance note, descriptions."""
    seeds = list(result.get("seeds") or [])
    tests = {t["model"]: t for t in result.get("significance") or []}
    lines = [
        f"# han compare: {_md(result.get('title', ''))}",
        "",
        f"Config {_md(result.get('config', ''))}; seeds {', '.join(_md(s) for s in seeds)}; "
        f"split sizes: {_md(_splits(result))}",
        "",
        "| " + " | ".join(headers(result)) + " |",
        "|" + "---|" + "---:|" * (len(headers(result)) - 1),
    ]
    for row in result.get("rows") or []:
        cells = [_md(_model_label(row, len(seeds))), *(_md(c) for c in _cells(row, result, tests))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _legend(result, _md), ""]
    lines += [f"- **{_md(row['model'])}**: {_md(row.get('description') or DASH)}" for row in result.get("rows") or []]
    return "\n".join(lines) + "\n"


# --- HTML ----------------------------------------------------------------------------------------
def _axis(bars: list[tuple[float, float]]) -> tuple[float, float]:
    """An axis range (to 1 decimal, within [0, 1]) wide enough for every mean ± 2 std, differences visible."""
    low = min(m - 2 * s for m, s in bars) - 0.02
    high = max(m + s for m, s in bars) + 0.02
    lo = min(max(math.floor(low * 10) / 10, 0.0), 0.9)
    hi = max(min(math.ceil(high * 10) / 10, 1.0), lo + 0.1)
    return lo, min(hi, 1.0)


def _chart(result: dict[str, Any], key: str, label: str) -> str:
    """A horizontal bar chart of `key` per model: mean bar, ± std whisker, value printed, best highlighted."""
    rows = result.get("rows") or []
    entries = [(row["model"], (row.get("summary") or {}).get(key)) for row in rows]
    bars = [(float(e["mean"]), float(e.get("std") or 0.0)) for _, e in entries if e and e.get("mean") is not None]
    lo, hi = _axis(bars) if bars else (0.0, 1.0)
    left, plot_w, top, row_h, bar_h = 170, 380, 26, 24, 14
    width, height = left + plot_w + 140, top + row_h * len(entries) + 24

    def x(value: float) -> float:
        return left + plot_w * (min(max(value, lo), hi) - lo) / (hi - lo)

    title = f"{label}: mean over seeds ± std, axis {lo:.1f} to {hi:.1f}"
    parts = [f'<text x="4" y="14">{esc(title)}</text>']
    ticks = round((hi - lo) * 10)
    axis_y = top + row_h * len(entries)
    for i in range(ticks + 1):
        value = lo + i / 10
        parts.append(f'<line x1="{x(value):.1f}" y1="{top - 4}" x2="{x(value):.1f}" y2="{axis_y}" stroke="#e3e6ea"/>')
        parts.append(f'<text x="{x(value):.1f}" y="{axis_y + 14}" text-anchor="middle">{value:.1f}</text>')
    for i, (model, entry) in enumerate(entries):
        y = top + i * row_h
        best = model == result.get("best")
        name = model if len(model) <= 24 else model[:23] + "…"
        weight = ' font-weight="bold"' if best else ""
        parts.append(f'<text x="{left - 6}" y="{y + bar_h - 3}" text-anchor="end"{weight}>{esc(name)}</text>')
        if not entry or entry.get("mean") is None:
            parts.append(f'<text x="{left + 4}" y="{y + bar_h - 3}">no finished run</text>')
            continue
        mean, std = float(entry["mean"]), float(entry.get("std") or 0.0)
        color = PALETTE[2] if best else PALETTE[0]
        shown = f"{format_number(mean)} ± {format_number(std)}"
        parts.append(
            f'<rect x="{left}" y="{y}" width="{x(mean) - left:.1f}" height="{bar_h}" fill="{color}">'
            f"<title>{esc(model)}: {esc(shown)}</title></rect>"
        )
        mid, x1, x2 = y + bar_h / 2, x(mean - std), x(mean + std)
        parts.append(
            f'<line x1="{x1:.1f}" y1="{mid}" x2="{x2:.1f}" y2="{mid}" stroke="#222"/>'
            f'<line x1="{x1:.1f}" y1="{y + 3}" x2="{x1:.1f}" y2="{y + bar_h - 3}" stroke="#222"/>'
            f'<line x1="{x2:.1f}" y1="{y + 3}" x2="{x2:.1f}" y2="{y + bar_h - 3}" stroke="#222"/>'
        )
        parts.append(f'<text x="{left + plot_w + 8}" y="{y + bar_h - 3}"{weight}>{esc(shown)}</text>')
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#999"/>')
    caption = (
        f"Axis from {lo:.1f} to {hi:.1f} (not from 0, so differences show); whiskers are ± one standard "
        "deviation over seeds; the best model is in green."
    )
    return (
        f'<div class="chart">{svg_frame(width, height, "".join(parts), title)}<p class="note">{esc(caption)}</p></div>'
    )


def _table(head: list[str], rows: list[tuple[list[str], bool]], numeric_from: int) -> str:
    """An HTML table; cells from column `numeric_from` on get class "num"; a flagged row gets class "best"."""
    num = ' class="num"'
    out = ["<table><thead><tr>"]
    out += [f"<th{num if i >= numeric_from else ''}>{esc(h)}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for cells, flagged in rows:
        out.append('<tr class="best">' if flagged else "<tr>")
        out += [f"<td{num if i >= numeric_from else ''}>{esc(c)}</td>" for i, c in enumerate(cells)]
        out.append("</tr>")
    return "".join(out) + "</tbody></table>"


PER_SEED = (
    ("test_accuracy", "test acc"),
    ("test_macro_f1", "test F1"),
    ("validation_accuracy", "val acc"),
    ("validation_macro_f1", "val F1"),
)
MULTILABEL_PER_SEED = tuple(
    (f"{split}_{name}", f"{short} {label}")
    for split, short in (("test", "test"), ("validation", "val"))
    for name, label in (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("exact_match", "exact"))
)


def _per_seed(row: dict[str, Any], multilabel: bool = False) -> str:
    """The per-seed figures of one model."""
    figures = MULTILABEL_PER_SEED if multilabel else PER_SEED
    head = ["seed", *(header for _, header in figures), "epochs", "train s", "docs/s", "peak MiB"]
    rows = []
    for run in row.get("runs") or []:

        def fixed(key: str, run: dict[str, Any] = run) -> str:
            return DASH if run.get(key) is None else format_number(run[key])

        cells = [
            str(run.get("seed", DASH)),
            *(fixed(key) for key, _ in figures),
            str(run.get("epochs", DASH)),
            _number(run.get("train_seconds"), 1),
            _number(run.get("inference_docs_per_s"), 0),
            _mib(run.get("peak_memory_bytes")),
        ]
        rows.append((cells, False))
    body = _table(head, rows, 1) if rows else f'<p class="note">{DASH} no finished run</p>'
    return f"<h3>{esc(row['model'])}</h3>{body}"


def comparison_html(result: dict[str, Any]) -> str:
    """The comparison as one self-contained HTML page: table, bar charts with error bars, per-seed figures."""
    seeds = list(result.get("seeds") or [])
    tests = {t["model"]: t for t in result.get("significance") or []}
    rows = result.get("rows") or []
    heading = f"han compare: {result.get('title', '')}"
    table_rows = [
        ([_model_label(row, len(seeds)), *_cells(row, result, tests)], row["model"] == result.get("best"))
        for row in rows
    ]
    body = [
        f'<header class="page"><h1>{esc(heading)}</h1>',
        f'<p class="meta">config {esc(result.get("config", ""))}</p>',
        f'<p class="meta">seeds {esc(", ".join(str(s) for s in seeds))}; split sizes: {esc(_splits(result))}; '
        f"best by {esc(_metric_name(result.get('metric', 'accuracy')))}: {esc(result.get('best') or DASH)}</p></header><main>",
        f'<section class="card"><h2>Results</h2>{_table(headers(result), table_rows, 1)}',
        f'<p class="note">{_legend(result, esc).replace(" < ", " &lt; ")}</p></section>',
        '<section class="card"><h2>Charts</h2>',
        *(_chart(result, key, label) for key, label in (MULTILABEL_CHARTS if _multilabel(result) else CHARTS)),
        "</section>",
        '<section class="card"><h2>Per seed</h2>',
        *(_per_seed(row, _multilabel(result)) for row in rows),
        '</section><section class="card"><h2>Models</h2><dl>',
        *(f"<dt>{esc(row['model'])}</dt><dd>{esc(row.get('description') or DASH)}</dd>" for row in rows),
        "</dl></section></main>",
    ]
    return page(heading, CSS, "".join(body))
