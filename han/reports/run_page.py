"""`han show`: one self-contained HTML page picturing one or several training runs.

Per run: final metrics, per-epoch curves (loss, validation accuracy and macro-F1, learning rate, docs/s),
the test (else validation) confusion matrix as a heat map, per-class precision/recall/F1, documents per
class in each preprocessed split, what preprocessing's max_chars cap cut, and the resolved config; the header
names the run's MODEL_CARD.md (han.store.model_card) when it has one.
Several runs share the curve charts (one colour per run) and the table of final metrics. Every file
read is verified against the run's manifest; every string taken from a file goes through `esc`.

The page stays small whatever the run: the train log and metrics.json are read only up to `MAX_LOG_BYTES` /
`MAX_METRICS_BYTES` (a larger one is a one-line error); curves draw at most `MAX_EPOCHS_DRAWN` epochs of a
run (evenly spaced, the first and the last kept); the confusion matrix, the per-class bars and the table of
documents per class show the `MAX_CLASSES_DRAWN` most frequent classes; the page says what it left out.
(Longer than ~400 lines: the page's charts and sections read best together.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from han.errors import RunDirError
from han.reports.html import PALETTE, esc, format_number, page, svg_frame
from han.store.model_card import written_model_card
from han.store.outputs import write_output_text
from han.store.rundir import RunDir
from han.util.atomic import read_json
from han.util.files import check_user_file

DASH = "—"
CSS = """
.grid{display:flex;flex-wrap:wrap;gap:6px 18px}
.note{color:#555;font-size:.85em}
td,th{white-space:nowrap}
pre.config{max-height:420px;overflow:auto;background:#f6f7f9;border:1px solid #e3e6ea;padding:6px 10px;font-size:.8em}
"""
# (chart title, ((train_log key, legend label, dashed), ...))
CURVES = (
    ("loss", (("train_loss", "train loss", True), ("validation_loss", "validation loss", False))),
    (
        "validation accuracy and macro-F1",
        (("validation_accuracy", "accuracy", False), ("validation_macro_f1", "macro-F1", True)),
    ),
    ("learning rate", (("lr", "learning rate", False),)),
    ("training speed (docs/s)", (("docs_per_s", "docs/s", False),)),
)
SPLIT_ORDER = {"train": 0, "validation": 1, "test": 2}
# Bounds on what the page reads and draws (a run has one log line per epoch, tens of them, and tens of classes):
MAX_LOG_BYTES = 64 << 20  # train_log.jsonl: some 200,000 epochs; a larger log is a one-line error
MAX_METRICS_BYTES = 256 << 20  # metrics.json: a confusion matrix of some 8,000 classes
MAX_EPOCHS_DRAWN = 400  # epochs a run's curves draw, evenly spaced (first and last kept)
MAX_CLASSES_DRAWN = 40  # classes in the confusion matrix, per-class bars and label table: the most frequent
LOG_KEYS = {"epoch", *(key for _, keys in CURVES for key, _, _ in keys)}  # what the page reads of a log line
PER_CLASS = (("precision", PALETTE[0]), ("recall", PALETTE[3]), ("f1", PALETTE[2]))


@dataclass
class RunView:
    """What the page shows of one run, read from its directory and verified against its manifest."""

    name: str
    config: dict[str, Any]
    labels: list[str]
    log: list[dict[str, Any]]
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    split_counts: dict[str, list[int]]  # split -> documents per class id
    model_card: Path | None = None  # RUN_DIR/MODEL_CARD.md, when han wrote one (han.store.model_card)


def _number(value: Any) -> float | None:
    """`value` as a float when it is a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _dict(value: Any) -> dict[str, Any]:
    """`value` when it is a dict, else an empty one (a field of a file may be missing or of another type)."""
    return value if isinstance(value, dict) else {}


def _fixed(value: Any, digits: int = 3) -> str:
    number = _number(value)
    return DASH if number is None else format_number(number, digits)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The train log's records (one per epoch), each cut to the keys the page shows (`LOG_KEYS`)."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise RunDirError(f"{path}: line {number} is not valid JSON ({error}); the file is damaged") from None
            if not isinstance(record, dict):
                raise RunDirError(f"{path}: line {number} is not a JSON object; the file is damaged")
            records.append({key: value for key, value in record.items() if key in LOG_KEYS})
    return records


def _evenly(count: int, limit: int) -> list[int]:
    """At most `limit` indexes of 0..count-1, evenly spaced, the first and the last kept."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def _most_frequent(totals: Sequence[float], limit: int) -> list[int]:
    """The indexes of the `limit` largest `totals` (ties: the lower index), in index order."""
    if len(totals) <= limit:
        return list(range(len(totals)))
    return sorted(sorted(range(len(totals)), key=lambda i: (-totals[i], i))[:limit])


def load_run(path: Path, name: str) -> RunView:
    """Read and verify what the page shows of the run directory `path`; a missing file is a `RunDirError`."""
    run = RunDir(Path(path))
    run.require(hint="")
    if not run.train_log_path.exists():
        raise RunDirError(f"{run.train_log_path}: missing; train the run first (`han train` or `han run`)")
    run.require(run.config_path, run.labels_path, hint="run `han preprocess` (or `han run`) first")
    has_metrics = run.metrics_path.exists()
    reads = [run.config_path, run.labels_path, run.train_log_path] + ([run.metrics_path] if has_metrics else [])
    check_user_file(run.train_log_path, "train log", RunDirError, max_bytes=MAX_LOG_BYTES)  # before it is hashed
    if has_metrics:
        check_user_file(run.metrics_path, "metrics file", RunDirError, max_bytes=MAX_METRICS_BYTES)
    run.verify_artifacts(*reads)
    labels = run.load_labels()
    metrics = read_json(run.metrics_path) if has_metrics else {}
    manifest = run.read_manifest()
    counts = {}
    for split in sorted(run.splits(), key=lambda name: (SPLIT_ORDER.get(name, len(SPLIT_ORDER)), name)):
        ids = run.load_split(split).labels
        if ids.ndim == 2:  # multi-label: documents having each label (a document counts once per label)
            counts[split] = np.clip(ids, 0, 1).sum(axis=0).astype(int).tolist()
        else:
            counts[split] = np.bincount(ids[(ids >= 0) & (ids < len(labels))], minlength=len(labels)).tolist()
    return RunView(
        name=name,
        config=run.load_config().model_dump(mode="json"),
        labels=labels,
        log=_read_log(run.train_log_path),
        metrics=metrics if isinstance(metrics, dict) else {},
        manifest=manifest,
        split_counts=counts,
        model_card=written_model_card(run, manifest),
    )


# --- charts -------------------------------------------------------------------------------------
def _tick(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _value_range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 if hi > lo else (abs(hi) * 0.1 or 1.0)
    top = 1.0 if hi <= 1.0 < hi + pad else hi + pad  # scores in [0, 1] stay under 1
    return (max(lo - pad, 0.0) if lo >= 0 else lo - pad), top


def _epoch(record: dict[str, Any], index: int) -> int:
    """A record's epoch: 0 is the starting model (the fitted n-gram channel alone), scored before training."""
    epoch = record.get("epoch")
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else index + 1


def _line_chart(title: str, keys: Sequence[tuple[str, str, bool]], runs: Sequence[RunView]) -> str:
    """One chart of per-epoch values: a polyline (and dots) per run and key, null values skipped."""
    series: list[tuple[int, str, str, bool, list[tuple[int, float]]]] = []  # run index, key, label, dashed, points
    for r, run in enumerate(runs):
        drawn = _evenly(len(run.log), MAX_EPOCHS_DRAWN)
        for key, label, dashed in keys:
            values = [(_epoch(run.log[i], i), _number(run.log[i].get(key))) for i in drawn]
            points = [(e, v) for e, v in values if v is not None]
            if points:
                series.append((r, key, label, dashed, points))
    if not series:
        return f'<div class="chart"><h3>{esc(title)}</h3><p class="note">no values recorded</p></div>'
    numbers = [e for *_, points in series for e, _ in points]
    first, epochs = min(min(numbers), 1), max(numbers)  # first: 0 when a run scored its starting model
    lo, hi = _value_range([v for *_, points in series for _, v in points])
    legend = [(PALETTE[r % len(PALETTE)], False, runs[r].name) for r in range(len(runs))] if len(runs) > 1 else []
    if len(keys) > 1:
        legend += [("#555", dashed, label) for _, label, dashed in keys]
    left, top, plot_w, plot_h = 58, 10, 440, 150
    width, height = left + plot_w + 16, top + plot_h + 40 + 16 * len(legend)

    def sx(epoch: float) -> float:
        return left + plot_w * ((epoch - first) / (epochs - first) if epochs > first else 0.5)

    def sy(value: float) -> float:
        return top + plot_h * (1 - (value - lo) / (hi - lo))

    parts = [
        f'<line x1="{left}" y1="{sy(v):.1f}" x2="{left + plot_w}" y2="{sy(v):.1f}" stroke="#e3e6ea"/>'
        f'<text x="{left - 5}" y="{sy(v) + 4:.1f}" text-anchor="end">{_tick(v)}</text>'
        for v in (lo + (hi - lo) * i / 4 for i in range(5))
    ]
    parts += [
        f'<text x="{sx(e):.1f}" y="{top + plot_h + 15}" text-anchor="middle">{e}</text>'
        for e in range(first, epochs + 1, max(1, math.ceil((epochs - first + 1) / 12)))
    ]
    parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 30}" text-anchor="middle">epoch</text>')
    for r, key, label, dashed, points in series:
        color, dash = PALETTE[r % len(PALETTE)], ' stroke-dasharray="6 3"' if dashed else ""
        path = " ".join(f"{sx(e):.1f},{sy(v):.1f}" for e, v in points)
        parts.append(
            f'<polyline class="curve" data-run="{esc(runs[r].name)}" data-series="{esc(key)}" points="{path}" '
            f'fill="none" stroke="{color}" stroke-width="2"{dash}><title>{esc(runs[r].name)}: {esc(label)}</title>'
            "</polyline>"
        )
        parts.extend(
            f'<circle cx="{sx(e):.1f}" cy="{sy(v):.1f}" r="2.5" fill="{color}">'
            f"<title>epoch {e}: {v:.6g}</title></circle>"
            for e, v in points
        )
    for k, (color, dashed, label) in enumerate(legend):
        y = top + plot_h + 46 + 16 * k
        dash = ' stroke-dasharray="6 3"' if dashed else ""
        parts.append(
            f'<line x1="{left}" y1="{y - 4}" x2="{left + 24}" y2="{y - 4}" stroke="{color}" stroke-width="3"{dash}/>'
            f'<text class="legend" x="{left + 30}" y="{y}">{esc(_short(label, 70))}</text>'
        )
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    return f'<div class="chart"><h3>{esc(title)}</h3>{svg_frame(width, height, "".join(parts), title)}</div>'


def _confusion_chart(
    matrix: list[list[int]], labels: list[str], split: str, totals: Sequence[int] | None = None
) -> str:
    """A heat map of the confusion matrix (rows: true label, columns: predicted), each cell's count written in it;
    `totals`: each row's whole count, when the matrix shows some of the classes only."""
    n = len(labels)
    cell = max(24, min(56, 560 // max(n, 1)))
    names = [_short(label, 16) for label in labels]
    longest = max((len(name) for name in names), default=1)
    left, top = 30 + 7 * longest, 34 + 5 * longest
    width, height = left + n * cell + 12, top + n * cell + 8
    parts = [
        f'<text x="{left}" y="12">predicted label →</text>',
        f'<text transform="translate(14,{top + n * cell / 2:.0f}) rotate(-90)" text-anchor="middle">'
        "true label →</text>",
    ]
    for j, name in enumerate(names):
        x = left + j * cell + cell / 2
        parts.append(f'<text transform="translate({x:.1f},{top - 6}) rotate(-45)">{esc(name)}</text>')
    for i, row in enumerate(matrix):
        y = top + i * cell
        parts.append(f'<text x="{left - 6}" y="{y + cell / 2 + 4:.1f}" text-anchor="end">{esc(names[i])}</text>')
        total = totals[i] if totals is not None else sum(row)
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            r, g, b = (round(255 - share * (255 - c)) for c in (31, 95, 158))
            ink = "#fff" if share > 0.5 else "#222"
            size = 11 if cell >= 34 else 9
            parts.append(
                f'<rect class="cell" data-row="{i}" data-col="{j}" data-count="{count}" x="{left + j * cell}" y="{y}" '
                f'width="{cell}" height="{cell}" fill="rgb({r},{g},{b})" stroke="#fff">'
                f"<title>true {esc(labels[i])}, predicted {esc(labels[j])}: {count} ({share:.1%} of the row)"
                "</title></rect>"
                f'<text class="count" x="{left + j * cell + cell / 2}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" '
                f'style="fill:{ink};font-size:{size}px">{count}</text>'
            )
    title = f"{split} confusion matrix"
    note = "Rows: true label; columns: predicted label; shade: share of the row (the class's recall on the diagonal)."
    return f'<div class="chart">{svg_frame(width, height, "".join(parts), title)}<p class="note">{note}</p></div>'


def _per_class_chart(per_class: dict[str, Any]) -> str:
    """Grouped horizontal bars of each class's precision, recall and F1 on a 0-1 axis: the `MAX_CLASSES_DRAWN`
    classes of most support, with a note when there are more."""
    supports = [_number(_dict(entry).get("support")) or 0.0 for entry in per_class.values()]
    shown = _most_frequent(supports, MAX_CLASSES_DRAWN)
    if len(shown) < len(per_class):
        items = list(per_class.items())
        chart = _per_class_chart({name: entry for name, entry in (items[i] for i in shown)})
        return chart + _left_out(len(shown), len(per_class), "support")
    names = [f"{_short(name, 24)} ({_dict(entry).get('support', '?')})" for name, entry in per_class.items()]
    left, top, plot_w, bar_h = 14 + 7 * max((len(n) for n in names), default=1), 28, 360, 8
    group = 3 * bar_h + 10
    width, height = left + plot_w + 50, top + group * len(names) + 20
    axis_y = top + group * len(names)
    parts = [
        f'<rect x="{left + 90 * k}" y="4" width="10" height="10" fill="{color}"/>'
        f'<text x="{left + 90 * k + 14}" y="13">{key}</text>'
        for k, (key, color) in enumerate(PER_CLASS)
    ]
    parts += [
        f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_y}" stroke="#e3e6ea"/>'
        f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle">{i / 4:g}</text>'
        for i, x in enumerate(left + plot_w * i / 4 for i in range(5))
    ]
    for i, (name, entry) in enumerate(zip(names, per_class.values(), strict=True)):
        y = top + i * group
        parts.append(f'<text x="{left - 6}" y="{y + 1.5 * bar_h + 4}" text-anchor="end">{esc(name)}</text>')
        for k, (key, color) in enumerate(PER_CLASS):
            value = _number(_dict(entry).get(key)) or 0.0
            w = plot_w * min(max(value, 0.0), 1.0)
            parts.append(
                f'<rect class="score" data-score="{key}" x="{left}" y="{y + k * bar_h}" width="{w:.1f}" '
                f'height="{bar_h - 1}" fill="{color}"><title>{key} {value:.3f}</title></rect>'
                f'<text x="{left + w + 3:.1f}" y="{y + k * bar_h + 7}" style="font-size:8px">{value:.2f}</text>'
            )
    return svg_frame(width, height, "".join(parts), "per-class precision, recall and F1")


# --- sections -----------------------------------------------------------------------------------
def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """A table of already escaped cells; columns from `numeric_from` on are right-aligned."""
    num = ' class="num"'

    def cells(tag: str, row: Sequence[str]) -> str:
        return "".join(f"<{tag}{num if i >= numeric_from else ''}>{c}</{tag}>" for i, c in enumerate(row))

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><tr>{cells('th', head)}</tr>{body}</table>"


def _best_epoch(run: RunView) -> Any:
    best = _dict(run.manifest.get("train")).get("best_epoch")
    if best is None and run.log:
        scores = [_number(rec.get("validation_macro_f1")) for rec in run.log]
        index = int(np.argmax([-1.0 if s is None else s for s in scores]))
        best = _epoch(run.log[index], index)
    return best


def _summary(runs: Sequence[RunView]) -> str:
    # a multi-label run shows micro-F1 where a single-label run shows accuracy
    name = "micro-F1 / accuracy" if any(_is_multilabel(run) for run in runs) else "accuracy"
    head = ["run", "kind", "epochs", "best epoch", f"test {name}", "test macro-F1", f"validation {name}"]
    head += ["validation macro-F1", "train docs/s"]
    rows = []
    for run in runs:
        test, validation = _dict(run.metrics.get("test")), _dict(run.metrics.get("validation"))
        key = "micro_f1" if _is_multilabel(run) else "accuracy"
        speed = _number(_dict(run.manifest.get("train")).get("docs_per_second"))
        speeds = [v for v in (_number(rec.get("docs_per_s")) for rec in run.log) if v is not None]
        speed = speed if speed is not None else (sum(speeds) / len(speeds) if speeds else None)
        kind = _dict(run.config.get("model")).get("kind", "han")
        rows.append(
            [
                *(esc(run.name), esc(kind), str(len(run.log)), esc(_best_epoch(run) or DASH)),
                *(_fixed(test.get(key)), _fixed(test.get("macro_f1"))),
                *(_fixed(validation.get(key)), _fixed(validation.get("macro_f1")), _fixed(speed, 0)),
            ]
        )
    return f'<section class="card" id="summary"><h2>Final metrics</h2>{_table(head, rows, 2)}</section>'


def _is_multilabel(run: RunView) -> bool:
    return run.config.get("task") == "multilabel"


def _count(cell: Any) -> int:
    return int(cell) if _number(cell) is not None else 0


def _row_total(row: list[Any]) -> int:
    """The sum of a confusion matrix row's counts (a cell that is not a finite number counts 0)."""
    try:
        total = sum(row)  # fast: a row of han's metrics.json holds integers only
        if isinstance(total, int) or math.isfinite(total):
            return int(total)
    except TypeError:
        pass
    return sum(map(_count, row))


def _left_out(shown: int, total: int, by: str) -> str:
    return (
        f'<p class="note">The {shown} classes of most {esc(by)}, of {total:,} (the others are left out here; '
        "metrics.json holds every class).</p>"
    )


def _confusion_section(matrix: Any, labels: list[str], split: str) -> str:
    """The confusion matrix chart of the `MAX_CLASSES_DRAWN` classes of most documents, or "" when `matrix` is
    not len(labels) rows of len(labels) counts."""
    n = len(labels)
    if not isinstance(matrix, list) or len(matrix) != n or not all(isinstance(r, list) and len(r) == n for r in matrix):
        return ""
    totals = [_row_total(row) for row in matrix]
    keep = _most_frequent(totals, MAX_CLASSES_DRAWN)
    counts = [[_count(matrix[i][j]) for j in keep] for i in keep]
    chart = _confusion_chart(counts, [labels[i] for i in keep], split, [totals[i] for i in keep])
    note = _left_out(len(keep), n, f"{split} documents") if len(keep) < n else ""
    return f"<h3>Confusion matrix ({esc(split)})</h3>{chart}{note}"


def _evaluation(run: RunView) -> str:
    if not run.metrics:
        return '<p class="note">No metrics.json: run `han evaluate` for the confusion matrix and per-class scores.</p>'
    multilabel = _is_multilabel(run)
    scores = ("micro_f1", "macro_f1", "exact_match", "loss") if multilabel else ("accuracy", "macro_f1", "loss")
    rows = [
        [esc(key), esc(m.get("documents", DASH)), *(_fixed(m.get(s)) for s in scores)]
        for key, m in run.metrics.items()
        if isinstance(m, dict)
    ]
    names = ["micro-F1", "macro-F1", "exact match", "loss"] if multilabel else ["accuracy", "macro-F1", "loss"]
    out = [_table(["evaluated on", "documents", *names], rows)]
    split = "test" if isinstance(run.metrics.get("test"), dict) else "validation"
    chosen = _dict(run.metrics.get(split))
    confusion = _dict(chosen.get("confusion_matrix"))
    matrix, labels = confusion.get("rows_true_columns_predicted"), confusion.get("labels")
    labels = labels if isinstance(labels, list) else run.labels
    out.append(_confusion_section(matrix, [str(x) for x in labels], split))
    if _dict(chosen.get("per_class")):
        out.append(
            f"<h3>Per-class scores ({esc(split)}; support in brackets)</h3>{_per_class_chart(chosen['per_class'])}"
        )
    if _dict(chosen.get("per_label")):  # multi-label: no confusion matrix; per-label scores at the run's thresholds
        out.append(
            f"<h3>Per-label scores ({esc(split)}, at the run's thresholds; support in brackets)</h3>"
            f"{_per_class_chart(chosen['per_label'])}"
        )
    return "".join(out)


def _distribution(run: RunView) -> str:
    if not run.split_counts:
        return ""
    splits = list(run.split_counts)
    multilabel = _is_multilabel(run)
    sizes = _dict(_dict(run.manifest.get("preprocess")).get("documents"))
    head = ["label" if multilabel else "class"]
    head += [f"{esc(s)} ({(sizes.get(s) if multilabel else sum(run.split_counts[s])) or 0:,})" for s in splits]
    rows = []
    documents = [sum(run.split_counts[s][c] for s in splits) for c in range(len(run.labels))]
    shown = _most_frequent(documents, MAX_CLASSES_DRAWN)
    for c in shown:
        row = [esc(run.labels[c])]
        for s in splits:
            total = (sizes.get(s) if multilabel else sum(run.split_counts[s])) or 1
            count = run.split_counts[s][c]
            row.append(
                f'{count:,} <span class="bar" style="width:{60 * count / total:.1f}px"></span> {count / total:6.1%}'
            )
        rows.append(row)
    title = "Documents per label and split (a document counts for each of its labels)" if multilabel else ""
    note = _left_out(len(shown), len(run.labels), "documents") if len(shown) < len(run.labels) else ""
    return f"<h3>{title or 'Documents per class and split'}</h3>{_table(head, rows)}{note}"


def _preprocessing(run: RunView) -> str:
    pre = run.manifest.get("preprocess")
    if not isinstance(pre, dict):
        return ""
    facts = [
        ("documents kept", f"{pre.get('rows_kept', DASH)} of {pre.get('rows_in', DASH)} rows"),
        ("rows dropped", ", ".join(f"{k} {v}" for k, v in _dict(pre.get("rows_dropped")).items() if v) or "none"),
        ("vocabulary", f"{pre.get('vocab_size', DASH)} words, {pre.get('vectors_found', DASH)} with a vector"),
        ("out-of-vocabulary rate", ", ".join(f"{k} {_fixed(v, 4)}" for k, v in _dict(pre.get("oov_rate")).items())),
    ]
    out = [f"<h3>Preprocessing</h3>{_table(['', ''], [[esc(k), esc(v)] for k, v in facts], 2)}"]
    handling = pre.get("text_handling")
    if isinstance(handling, dict) and handling:
        caps = _dict(run.config.get("preprocess"))
        rows = []
        for split, h in handling.items():
            if not isinstance(h, dict):
                continue
            cut_share = f"{h['tokens_cut'] / h['tokens']:.1%}" if h.get("tokens") else DASH
            rows.append(
                [esc(split), esc(h.get("documents", DASH)), esc(h.get("truncated", DASH)), esc(h.get("cleaned", DASH))]
                + [esc(h.get(key, DASH)) for key in ("capped_documents", "sentences_cut", "tokens_cut")]
                + [esc(cut_share)]
            )
        head = ["split", "documents", "truncated", "cleaned", "capped", "sentences cut", "tokens cut", "share"]
        limits = ", ".join(f"{key} {esc(caps.get(key, DASH))}" for key in ("max_chars", "max_sentences", "max_words"))
        out.append(
            f"<h3>What the caps cut</h3>{_table(head, rows)}"
            f'<p class="note">Caps: {limits}. Truncated: documents cut at max_chars; cleaned: documents with '
            "invisible or control characters removed; capped: documents that lost tokens to max_sentences or "
            "max_words; share: of all tokens. Counted while preprocessing (a dash: a run preprocessed before "
            "han counted it).</p>"
        )
    return "".join(out)


class _ConfigDumper(yaml.SafeDumper):
    """Block-style YAML whose strings with line breaks stay on one line, double-quoted with escapes."""


_ConfigDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style='"' if any(c in text for c in "\n\r\t") else None
    ),
)


def _run_section(run: RunView, several: bool) -> str:
    config = yaml.dump(run.config, Dumper=_ConfigDumper, sort_keys=False, allow_unicode=True, width=100)
    heading = f"<h2>{esc(run.name)}</h2>" if several else "<h2>Evaluation</h2>"
    return (
        f'<section class="card run" data-run="{esc(run.name)}">{heading}{_evaluation(run)}'
        f'<div class="grid"><div>{_distribution(run)}</div><div>{_preprocessing(run)}</div></div>'
        f'<h3>Resolved config</h3><pre class="config">{esc(config)}</pre></section>'
    )


def _names(run_dirs: Sequence[Path]) -> list[str]:
    names = [Path(p).resolve().name or str(p) for p in run_dirs]
    return [str(p) if names.count(n) > 1 else n for n, p in zip(names, run_dirs, strict=True)]


def render_run_page(run_dirs: list[Path]) -> str:
    """The page picturing the runs in `run_dirs` (one or several) as one self-contained HTML document."""
    runs = [load_run(Path(path), name) for path, name in zip(run_dirs, _names(run_dirs), strict=True)]
    several = len(runs) > 1
    title = runs[0].name if not several else "han show: " + ", ".join(run.name for run in runs)
    header = (
        f'<header class="page"><h1>{esc(title)}</h1>'
        + "".join(
            f'<p class="meta">run <code>{esc(path)}</code>{_card_note(run)}</p>'
            for path, run in zip(run_dirs, runs, strict=True)
        )
        + "</header>"
    )
    charts = "".join(_line_chart(name, keys, runs) for name, keys in CURVES)
    thinned = "".join(
        f'<p class="note">{esc(run.name)}: the curves draw {MAX_EPOCHS_DRAWN} of its {len(run.log):,} epochs, '
        "evenly spaced (the first and the last kept); train_log.jsonl holds every epoch.</p>"
        for run in runs
        if len(run.log) > MAX_EPOCHS_DRAWN
    )
    body = [
        _summary(runs),
        f'<section class="card" id="curves"><h2>Training curves</h2><div class="grid">{charts}</div>{thinned}</section>',
        *(_run_section(run, several) for run in runs),
    ]
    return page(title, CSS, f"{header}<main>{''.join(body)}</main>")


def _card_note(run: RunView) -> str:
    """The path of the run's MODEL_CARD.md, or "" (named, not linked: the page holds no link, src or href)."""
    return "" if run.model_card is None else f" · model card <code>{esc(run.model_card)}</code>"


def write_run_page(run_dirs: list[Path], output: Path) -> list[Path]:
    """Render the page of `run_dirs` and write it to `output` (complete or absent); return the MODEL_CARD.md
    of each run that has one han wrote (the page names them)."""
    write_output_text(output, render_run_page(run_dirs))
    return [card for path in run_dirs if (card := written_model_card(RunDir(Path(path)))) is not None]
