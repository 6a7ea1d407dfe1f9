"""Self-contained HTML for attention reports: inline CSS and SVG, no scripts, no external resources.

Document text is untrusted. Every piece of text that reaches the page (tokens, labels, paths, words)
goes through `esc`, which escapes `& < > " '`, so injected markup stays text, in element content and
in attribute values alike. The page also carries a Content-Security-Policy that forbids scripts and
every network request, as a second line of defence; it renders fully with scripts disabled.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

from han.attention import CorpusStatistics, DocumentReport, DocumentView, SentenceView, sqrt_scaled

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

BASE_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
main,header.page{max-width:1100px;margin:0 auto;padding:0 16px}
header.page{padding-top:16px}
h1{font-size:1.4em;margin:.3em 0}
h2{font-size:1.15em;margin:1.2em 0 .4em}
h3{font-size:1em;margin:.8em 0 .3em}
.meta{color:#555;font-size:.9em;margin:.2em 0}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:12px 0;padding:10px 14px}
table{border-collapse:collapse;font-size:.88em}
td,th{padding:2px 8px;text-align:left;vertical-align:middle}
th{color:#444;font-weight:600;border-bottom:1px solid #dde1e6}
.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:10px;background:#4a78c2;vertical-align:middle}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#333}
"""

DOCUMENT_CSS = """
.doc-head{display:flex;flex-wrap:wrap;gap:6px 18px;align-items:baseline;margin-bottom:6px}
.row-id{color:#666;font-variant-numeric:tabular-nums}
.badge{font-size:.8em;padding:1px 7px;border-radius:9px;color:#fff}
.badge.ok{background:#2f8f46}.badge.wrong{background:#c0392b}
.probs{display:flex;flex-wrap:wrap;gap:2px 12px;font-size:.8em;color:#444;font-variant-numeric:tabular-nums;margin-bottom:4px}
.prob{display:inline-flex;align-items:flex-end;gap:3px}
.plabel{font-weight:600}
.pbar{display:inline-block;width:7px;height:14px;background:#e6ebf3;position:relative}
.pbar span{position:absolute;bottom:0;left:0;width:100%;background:#8a96a8}
.prob.pred .pbar span{background:#2b6cb0}
ol.sentences{list-style:none;margin:4px 0 0;padding:0}
li.sent{display:grid;grid-template-columns:110px 1fr;gap:10px;padding:3px 0;border-top:1px solid #f0f1f3}
.sw{font-size:.8em;color:#555;font-variant-numeric:tabular-nums;white-space:nowrap}
.sbar{display:inline-block;width:60px;height:9px;background:#e6ebf3;vertical-align:middle;margin-right:4px}
.sbar span{display:block;height:100%;background:#2b6cb0}
.text{line-height:1.7}
.w{position:relative;border-radius:2px;padding:1px 0}
.w:hover{outline:1px solid #333}
.w[data-weight]:hover::after{content:attr(data-weight);position:absolute;left:0;top:1.6em;background:#222;color:#fff;font-size:11px;padding:1px 4px;border-radius:3px;z-index:2;white-space:nowrap}
.w.unk{text-decoration:underline dotted #555}
.w.cut{color:#98a0aa;text-decoration:line-through;text-decoration-color:#c3c8cf}
li.sent.cut{background:repeating-linear-gradient(135deg,#fafafa,#fafafa 6px,#f1f2f4 6px,#f1f2f4 12px)}
.cutnote{font-size:.75em;color:#8a6d3b;background:#fcf3dc;border-radius:3px;padding:0 4px;margin-left:4px}
.legend span.sample{padding:1px 5px;border-radius:2px}
"""


def esc(text: object) -> str:
    """Escape any value for HTML element content and quoted attribute values."""
    return html.escape(str(text), quote=True)


def _page(title: str, css: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{BASE_CSS}{css}</style></head>\n"
        f"<body>{body}</body></html>\n"
    )


def _format(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


# --- per-document report -----------------------------------------------------------------------
def _word_spans(sentence: SentenceView, scale: float, max_words: int, sentence_cut: bool) -> str:
    parts = []
    read = len(sentence.word_weights)
    for i, token in enumerate(sentence.tokens):
        space = " " if sentence.spaces[i] else ""
        if i < read and not sentence_cut:
            weight = sentence.word_weights[i]
            alpha = sqrt_scaled(weight, sentence.weight or 0.0) / scale if scale > 0 else 0.0
            classes = "w unk" if sentence.unknown[i] else "w"
            parts.append(
                f'<span class="{classes}" data-weight="{weight:.6f}" '
                f'style="background:rgba(214,39,40,{min(alpha, 1.0):.3f})">{esc(token)}</span>{space}'
            )
        else:
            reason = "max_sentences" if sentence_cut else "max_words"
            parts.append(f'<span class="w cut" data-cut="{reason}">{esc(token)}</span>{space}')
    if read < len(sentence.tokens) and not sentence_cut:
        parts.append(f'<span class="cutnote">{len(sentence.tokens) - read} words cut (max_words {max_words})</span>')
    return "".join(parts)


def _document_card(view: DocumentView, report: DocumentReport) -> str:
    names = report.label_names
    predicted = view.predicted
    head = [f'<span class="row-id">#{view.row}</span>']
    head.append(
        f'<span>predicted <b class="pred-label">{esc(names[predicted])}</b> ({_format(view.confidence)})</span>'
    )
    if view.true_label is not None:
        head.append(f'<span>true <b class="true-label">{esc(names[view.true_label])}</b></span>')
        head.append(
            '<span class="badge ok">correct</span>'
            if view.correct
            else '<span class="badge wrong">misclassified</span>'
        )
    if view.sentences_cut:
        head.append(
            f'<span class="cutnote">{view.sentences_cut} sentences cut (max_sentences {report.max_sentences})</span>'
        )
    probabilities = "".join(
        f'<span class="prob{" pred" if c == predicted else ""}" data-label="{esc(name)}" data-p="{p:.6f}">'
        f'<span class="plabel">{esc(name)}</span><span class="pbar"><span style="height:{100 * p:.1f}%"></span></span>'
        f"{_format(p, 2)}</span>"
        for c, (name, p) in enumerate(zip(names, view.probabilities))
    )
    scale = max(
        (sqrt_scaled(w, s.weight) for s in view.sentences if s.weight is not None for w in s.word_weights),
        default=0.0,
    )
    items = []
    for sentence in view.sentences:
        if sentence.weight is None:
            items.append(
                '<li class="sent cut" data-cut="max_sentences"><span class="sw">cut</span>'
                f'<span class="text">{_word_spans(sentence, scale, report.max_words, True)}</span></li>'
            )
        else:
            items.append(
                f'<li class="sent" data-weight="{sentence.weight:.6f}"><span class="sw">'
                f'<span class="sbar"><span style="width:{100 * sentence.weight:.1f}%"></span></span>'
                f"{_format(sentence.weight)}</span>"
                f'<span class="text">{_word_spans(sentence, scale, report.max_words, False)}</span></li>'
            )
    if not view.sentences:
        items.append('<li class="sent empty"><span class="sw"></span><span class="text">(no tokens)</span></li>')
    correct = "" if view.correct is None else f' data-correct="{str(view.correct).lower()}"'
    true = "" if view.true_label is None else f' data-true="{esc(names[view.true_label])}"'
    return (
        f'<article class="card doc" id="doc-{view.row}" data-row="{view.row}" '
        f'data-predicted="{esc(names[predicted])}"{true}{correct}>'
        f'<div class="doc-head">{"".join(head)}</div>'
        f'<div class="probs">{probabilities}</div>'
        f'<ol class="sentences">{"".join(items)}</ol></article>'
    )


def render_document_report(report: DocumentReport) -> str:
    """The per-document attention report as one self-contained HTML page."""
    options = report.options
    shown = report.documents
    labelled = [v for v in shown if v.correct is not None]
    accuracy = (
        f"; accuracy of those shown {sum(bool(v.correct) for v in labelled) / len(labelled):.3f}" if labelled else ""
    )
    filters = [f"sort: {options.sort}", f"only: {options.only}"]
    if options.true_label is not None:
        filters.append(f"true label: {options.true_label}")
    if options.predicted_label is not None:
        filters.append(f"predicted label: {options.predicted_label}")
    if options.limit is not None:
        filters.append(f"limit: {options.limit}")
    header = (
        '<header class="page"><h1>Attention report</h1>'
        f'<p class="meta">run <code>{esc(report.run)}</code>; input <code>{esc(report.source)}</code></p>'
        f'<p class="meta" id="summary" data-shown="{len(shown)}" data-read="{report.documents_read}">'
        f"{len(shown)} of {report.documents_read} documents shown ({esc(', '.join(filters))}){accuracy}</p>"
        '<p class="meta legend">Sentence weight: blue bar and number (a document\'s weights sum to 1). '
        'Word shading: <span class="sample" style="background:rgba(214,39,40,.9)">word</span> '
        "word weight &times; &radic;(sentence weight), relative to the document's strongest word; "
        "hover a word for its weight. "
        f'<span class="w unk">dotted</span>: unknown to the vocabulary. <span class="w cut">struck-out grey</span>: '
        f"cut by the caps (max_sentences {report.max_sentences}, max_words {report.max_words}); the model did not read it.</p>"
        "</header>"
    )
    cards = "\n".join(_document_card(view, report) for view in shown)
    return _page("Attention report", DOCUMENT_CSS, f"{header}<main>\n{cards}\n</main>")


# --- SVG plots -----------------------------------------------------------------------------------
def _svg(width: int, height: int, content: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)}">{content}</svg>'
    )


def svg_bars(
    values: Sequence[float],
    labels: Sequence[str],
    title: str,
    color: str = "#4a78c2",
    width: int = 320,
    height: int = 150,
    max_value: float | None = None,
    value_format: str = "{:.2f}",
) -> str:
    """A vertical bar chart with a label under each bar (every other label when crowded)."""
    left, bottom, top = 34, 20, 16
    plot_w, plot_h = width - left - 6, height - bottom - top
    peak = max_value if max_value is not None else max([*values, 1e-12])
    step = plot_w / max(len(values), 1)
    every = max(1, math.ceil(len(values) * 36 / plot_w))  # about 36 px per shown label
    parts = [f'<text x="{left}" y="11">{esc(title)}</text>']
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>')
    parts.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{esc(value_format.format(peak))}</text>')
    parts.append(f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>')
    for i, (value, label) in enumerate(zip(values, labels)):
        h = 0.0 if peak <= 0 else plot_h * min(max(value, 0.0) / peak, 1.0)
        x = left + i * step
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="{color}"><title>{esc(label)}: {esc(value_format.format(value))}</title></rect>'
        )
        if i % every == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{height - 6}" text-anchor="middle">{esc(label)}</text>')
    return _svg(width, height, "".join(parts), title)


def svg_lines(
    series: Sequence[tuple[str, Sequence[float | None]]],
    x_labels: Sequence[str],
    title: str,
    width: int = 520,
    height: int = 220,
) -> str:
    """Lines over the same x positions, one per named series (gaps where a value is None), with a legend."""
    left, bottom, top, right = 40, 22, 18, 110
    plot_w, plot_h = width - left - right, height - bottom - top
    values = [v for _, ys in series for v in ys if v is not None]
    peak = max(values, default=1.0) or 1.0
    n = len(x_labels)
    step = plot_w / max(n - 1, 1)
    parts = [f'<text x="{left}" y="12">{esc(title)}</text>']
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>')
    parts.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{peak:.2f}</text>')
    parts.append(f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>')
    for i, label in enumerate(x_labels):
        parts.append(f'<text x="{left + i * step:.1f}" y="{height - 6}" text-anchor="middle">{esc(label)}</text>')
    for k, (name, ys) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        points = [(left + i * step, top + plot_h * (1 - y / peak)) for i, y in enumerate(ys) if y is not None]
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
            parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>' for x, y in points)
        legend_y = top + 12 + 15 * k
        parts.append(
            f'<rect x="{left + plot_w + 12}" y="{legend_y - 8}" width="10" height="10" fill="{color}"/>'
            f'<text x="{left + plot_w + 26}" y="{legend_y + 1}">{esc(name)}</text>'
        )
    return _svg(width, height, "".join(parts), title)


# --- corpus report -------------------------------------------------------------------------------
CORPUS_CSS = """
.grid{display:flex;flex-wrap:wrap;gap:10px 18px}
.grid>div{min-width:200px}
table.words td.word{font-family:ui-monospace,Menlo,Consolas,monospace}
"""


def _top_words_section(stats: CorpusStatistics) -> str:
    blocks = []
    peak = max((w.mean for words in stats.top_words for w in words), default=1.0) or 1.0
    for c, name in enumerate(stats.label_names):
        rows = "".join(
            f'<tr><td class="word">{esc(w.word)}</td><td><span class="bar" style="width:{80 * w.mean / peak:.1f}px"></span></td>'
            f'<td class="num">{w.mean:.3f}</td><td class="num">{w.count}</td></tr>'
            for w in stats.top_words[c]
        )
        blocks.append(
            f'<div class="class-words" data-label="{esc(name)}"><h3>{esc(name)} '
            f'<span class="meta">({stats.class_documents[c]} documents)</span></h3>'
            f'<table class="words"><tr><th>word</th><th></th><th class="num">mean</th><th class="num">count</th></tr>'
            f"{rows or '<tr><td colspan=4>(no word occurs often enough)</td></tr>'}</table></div>"
        )
    return (
        '<section class="card" id="top-words"><h2>Most attended words per class</h2>'
        f"<p class=\"meta\">Mean word attention weight (within its sentence) over the word's occurrences in the class's "
        f"documents; words seen at least {stats.options.min_word_count} times; punctuation and unknown words left out.</p>"
        f'<div class="grid">{"".join(blocks)}</div></section>'
    )


def _positions_section(stats: CorpusStatistics) -> str:
    labels = [str(i + 1) for i in range(stats.positions)]
    labels[-1] += "+"
    mean_labels = [str(i + 1) for i in range(stats.positions)]
    lines = svg_lines(
        [(name, stats.position_mean[c]) for c, name in enumerate(stats.label_names)],
        mean_labels,
        "mean sentence weight by position",
    )
    share_lines = svg_lines(
        [(name, stats.top_position_share[c]) for c, name in enumerate(stats.label_names)],
        labels,
        "share of documents whose most attended sentence is at this position",
    )
    header = "".join(f'<th class="num">{esc(label)}</th>' for label in mean_labels)
    rows = "".join(
        f"<tr><td>{esc(name)}</td>"
        + "".join(
            f'<td class="num" title="{n} documents">{"" if m is None else f"{m:.3f}"}</td>'
            for m, n in zip(stats.position_mean[c], stats.position_documents[c])
        )
        + "</tr>"
        for c, name in enumerate(stats.label_names)
    )
    return (
        '<section class="card" id="positions"><h2>Attention over sentence positions</h2>'
        '<p class="meta">Mean sentence weight at each position, over documents that have a sentence there '
        "(short documents give each sentence more weight, so the first positions lead), and where the most "
        "attended sentence sits.</p>"
        f'<div class="grid"><div>{lines}</div><div>{share_lines}</div></div>'
        f"<table><tr><th>class</th>{header}</tr>{rows}</table></section>"
    )


def _chosen_words_section(stats: CorpusStatistics) -> str:
    if not stats.chosen_words:
        return ""
    edges = np.linspace(0.0, 1.0, stats.bins + 1)
    labels = [f"{edges[i]:.2f}" for i in range(stats.bins)]
    blocks = []
    for word, distributions in stats.chosen_words.items():
        if distributions is None:
            blocks.append(
                f'<div class="chosen" data-word="{esc(word)}"><h3>{esc(word)}</h3><p>not in the vocabulary</p></div>'
            )
            continue
        panels = []
        for c, (name, dist) in enumerate(zip(stats.label_names, distributions)):
            shares = [k / dist.count for k in dist.histogram] if dist.count else [0.0] * stats.bins
            summary = f"n={dist.count}" + (f", mean {dist.mean:.3f}, median {dist.median:.3f}" if dist.count else "")
            panels.append(
                f"<div>{svg_bars(shares, labels, f'{name}: {summary}', PALETTE[c % len(PALETTE)], 300, 130, value_format='{:.2f}')}</div>"
            )
        blocks.append(
            f'<div class="chosen" data-word="{esc(word)}"><h3>&ldquo;{esc(word)}&rdquo;</h3><div class="grid">{"".join(panels)}</div></div>'
        )
    return (
        '<section class="card" id="chosen-words"><h2>Attention weight distribution of chosen words</h2>'
        '<p class="meta">Share of the word\'s occurrences per weight bin (0 to 1), per class, as in Yang et al. (2016), '
        "Figures 3 and 4.</p>" + "".join(blocks) + "</section>"
    )


def _faithfulness_section(stats: CorpusStatistics) -> str:
    check = stats.faithfulness
    if check is None:
        return (
            '<section class="card" id="faithfulness"><h2>Faithfulness check</h2>'
            "<p>Not run (no document with two or more sentences, or 0 documents requested).</p></section>"
        )
    summary = check.summary()
    reach = float(max(np.abs(check.top_drop).max(), np.abs(check.random_drop).max(), 0.05))
    bins = 2 * stats.bins
    edges = np.linspace(-reach, reach, bins + 1)
    labels = [f"{(edges[i] + edges[i + 1]) / 2:+.2f}" for i in range(bins)]
    top_hist = np.histogram(check.top_drop, bins=edges)[0] / check.documents
    random_hist = np.histogram(check.random_drop, bins=edges)[0] / check.documents
    peak = float(max(top_hist.max(), random_hist.max()))
    rows = "".join(
        f'<tr data-removed="{key}"><td>{label}</td>'
        + "".join(f'<td class="num">{summary[key][m]:+.3f}</td>' for m in ("mean", "median", "p10", "p90"))
        + f'<td class="num">{summary[key]["flip_share"]:.1%} ({summary[key]["flips"]})</td></tr>'
        for key, label in (
            ("top_sentence_removed", "most attended sentence"),
            ("random_sentence_removed", "random other sentence"),
        )
    )
    return (
        '<section class="card" id="faithfulness"><h2>Faithfulness check</h2>'
        f'<p class="meta">{check.documents} documents sampled (seed {stats.options.seed}) from the {check.eligible} with at '
        "least two sentences. From each, the most attended sentence is removed, or a random other sentence, and the "
        "model is run again. Drop = probability of the originally predicted class before minus after "
        "(positive: the model became less sure). If attention points at what the model uses, removing the top sentence "
        "should hurt more than removing a random one.</p>"
        '<table><tr><th>removed</th><th class="num">mean drop</th><th class="num">median</th><th class="num">10th pct</th>'
        f'<th class="num">90th pct</th><th class="num">prediction flips</th></tr>{rows}</table>'
        f"<p>Removing the top sentence lowered the probability more than removing a random one in "
        f'<b id="top-larger">{summary["top_drop_larger_share"]:.1%}</b> of the documents.</p>'
        f'<div class="grid"><div>{svg_bars(top_hist.tolist(), labels, "drop when removing the most attended sentence (share of documents)", PALETTE[1], 520, 170, peak)}</div>'
        f"<div>{svg_bars(random_hist.tolist(), labels, 'drop when removing a random other sentence (share of documents)', PALETTE[0], 520, 170, peak)}</div></div>"
        "</section>"
    )


def render_corpus_report(stats: CorpusStatistics) -> str:
    """The corpus attention report (per-class words, positions, chosen words, faithfulness) as one HTML page."""
    accuracy = "" if stats.accuracy is None else f"; accuracy {stats.accuracy:.3f}"
    grouping = "true label" if stats.group_by == "true" else "predicted label"
    header = (
        '<header class="page"><h1>Attention over a corpus</h1>'
        f'<p class="meta">run <code>{esc(stats.run)}</code>; documents <code>{esc(stats.source)}</code></p>'
        f'<p class="meta">{stats.documents} documents, grouped by {grouping}{accuracy}</p></header>'
    )
    body = (
        _top_words_section(stats)
        + _positions_section(stats)
        + _chosen_words_section(stats)
        + _faithfulness_section(stats)
    )
    return _page("Attention over a corpus", CORPUS_CSS, f"{header}<main>{body}</main>")
