"""The two report pages: per-document attention (shaded sentences and words) and corpus statistics (charts).

Built from `han.reports.html`'s escaping and chart helpers; see there for the security rules.
"""

from __future__ import annotations

import json

import numpy as np

from han.reports.documents import DocumentReport, DocumentView, SentenceView
from han.reports.html import PALETTE, esc, format_number, page, sqrt_scaled, svg_bars, svg_lines
from han.reports.statistics import CorpusStatistics

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

MULTILABEL_CSS = """
.prob .pbar span.thr{height:2px;left:-2px;width:11px;background:#c0392b}
.prob.true .plabel{text-decoration:underline}
.labelset .none,.diff{color:#666;font-size:.9em}
.note{background:#eef3fb;border-left:3px solid #2b6cb0;padding:3px 8px}
"""
"""Styles of multi-label cards (threshold ticks, true labels), added to DOCUMENT_CSS on multi-label pages."""


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


def _label_list(ids: list[int], names: list[str], cls: str, probabilities: list[float] | None = None) -> str:
    """Labels as <b class="cls"> elements (with their probability when given), or "no label"."""
    if not ids:
        return '<span class="none">no label</span>'
    return ", ".join(
        f'<b class="{cls}">{esc(names[c])}</b>'
        + ("" if probabilities is None else f" ({format_number(probabilities[c])})")
        for c in ids
    )


def _names_attribute(ids: list[int], names: list[str]) -> str:
    """A label set for a data- attribute: a JSON list of names, escaped."""
    return esc(json.dumps([names[c] for c in ids], ensure_ascii=False))


def _multilabel_card(view: DocumentView, report: DocumentReport, sentences: str) -> str:
    """A multi-label document's card: the predicted and true label sets, every label's bar and threshold."""
    names = report.label_names
    thresholds = view.thresholds or [0.5] * len(names)
    predicted = view.predicted_labels
    true = view.true_labels
    head = [f'<span class="row-id">#{view.row}</span>']
    head.append(
        f'<span class="labelset predicted">predicted {_label_list(predicted, names, "pred-label", view.probabilities)}</span>'
    )
    if true is not None:
        head.append(f'<span class="labelset true">true {_label_list(true, names, "true-label")}</span>')
        if view.correct:
            head.append('<span class="badge ok">correct</span>')
        else:
            head.append('<span class="badge wrong">misclassified</span>')
            differences = []
            if view.missed:
                differences.append(
                    "missed " + ", ".join(f'<b class="missed-label">{esc(names[c])}</b>' for c in view.missed)
                )
            if view.extra:
                differences.append(
                    "extra " + ", ".join(f'<b class="extra-label">{esc(names[c])}</b>' for c in view.extra)
                )
            head.append(f'<span class="diff">{"; ".join(differences)}</span>')
    head.append(f'<span class="meta">margin {format_number(view.margin)}</span>')
    head += _share_note(view)
    if view.sentences_cut:
        head.append(
            f'<span class="cutnote">{view.sentences_cut} sentences cut (max_sentences {report.max_sentences})</span>'
        )
    chosen, known = set(predicted), set(true or [])
    probabilities = "".join(
        f'<span class="prob{" pred" if c in chosen else ""}{" true" if c in known else ""}" data-label="{esc(name)}" '
        f'data-p="{p:.6f}" data-threshold="{t:.6f}" title="threshold {t:.2f}">'
        f'<span class="plabel">{esc(name)}</span><span class="pbar"><span style="height:{100 * p:.1f}%"></span>'
        f'<span class="thr" style="bottom:{100 * t:.1f}%"></span></span>'
        f"{format_number(p, 2)}</span>"
        for c, (name, p, t) in enumerate(zip(names, view.probabilities, thresholds, strict=True))
    )
    correct = "" if view.correct is None else f' data-correct="{str(view.correct).lower()}"'
    true_attribute = "" if true is None else f' data-true="{_names_attribute(true, names)}"'
    return (
        f'<article class="card doc" id="doc-{view.row}" data-row="{view.row}" '
        f'data-predicted="{_names_attribute(predicted, names)}"{true_attribute}{correct}>'
        f'<div class="doc-head">{"".join(head)}</div>'
        f'<div class="probs">{probabilities}</div>'
        f'<ol class="sentences">{sentences}</ol></article>'
    )


def _sentence_items(view: DocumentView, report: DocumentReport) -> str:
    """A document's sentences as <li> items: weight bar and number, words shaded by their weights (all escaped)."""
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
                f"{format_number(sentence.weight)}</span>"
                f'<span class="text">{_word_spans(sentence, scale, report.max_words, False)}</span></li>'
            )
    if not view.sentences:
        items.append('<li class="sent empty"><span class="sw"></span><span class="text">(no tokens)</span></li>')
    return "".join(items)


def _share_note(view: DocumentView) -> list[str]:
    """model.wide: the attention path's share of the decision (the rest came from the n-gram channel)."""
    if view.attention_share is None:
        return []
    share = round(100 * view.attention_share)
    return [f'<span class="share">attention path {share}% of the decision, n-grams {100 - share}%</span>']


def document_card(view: DocumentView, report: DocumentReport) -> str:
    """One document's card: prediction, probabilities, sentences and words shaded by their weights (all escaped).

    Multi-label: the predicted label set (and the true one when known), every predicted label's bar marked,
    each label's threshold drawn as a tick on its bar; data-predicted / data-true hold JSON lists of names.
    """
    if view.multilabel:
        return _multilabel_card(view, report, _sentence_items(view, report))
    names = report.label_names
    predicted = view.predicted
    head = [f'<span class="row-id">#{view.row}</span>']
    head.append(
        f'<span>predicted <b class="pred-label">{esc(names[predicted])}</b> ({format_number(view.confidence)})</span>'
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
    head += _share_note(view)
    probabilities = "".join(
        f'<span class="prob{" pred" if c == predicted else ""}" data-label="{esc(name)}" data-p="{p:.6f}">'
        f'<span class="plabel">{esc(name)}</span><span class="pbar"><span style="height:{100 * p:.1f}%"></span></span>'
        f"{format_number(p, 2)}</span>"
        for c, (name, p) in enumerate(zip(names, view.probabilities, strict=True))
    )
    correct = "" if view.correct is None else f' data-correct="{str(view.correct).lower()}"'
    true = "" if view.true_label is None else f' data-true="{esc(names[view.true_label])}"'
    return (
        f'<article class="card doc" id="doc-{view.row}" data-row="{view.row}" '
        f'data-predicted="{esc(names[predicted])}"{true}{correct}>'
        f'<div class="doc-head">{"".join(head)}</div>'
        f'<div class="probs">{probabilities}</div>'
        f'<ol class="sentences">{_sentence_items(view, report)}</ol></article>'
    )


MULTILABEL_NOTE = (
    '<p class="meta note" id="shared-attention">Multi-label run: HAN\'s word and sentence weights are shared '
    "across labels: the model computes one attention per document (not one per label), then scores each label "
    "with its own sigmoid. The same highlighting therefore explains every predicted label; it does not show which "
    "words support which label. A label is predicted when its probability is at or above its threshold (the "
    "red tick on its bar, chosen on the validation split); predicted labels have a blue bar, true labels are "
    "underlined. Misclassified: the predicted set differs from the true set. Margin: the smallest "
    "|probability &minus; threshold| over the labels (sort by confidence shows the smallest first).</p>"
)


def render_document_report(report: DocumentReport) -> str:
    """The per-document attention report as one self-contained HTML page."""
    options = report.options
    shown = report.documents
    labelled = [v for v in shown if v.correct is not None]
    measure = "exact match (predicted set = true set)" if report.multilabel else "accuracy"
    accuracy = (
        f"; {measure} of those shown {sum(bool(v.correct) for v in labelled) / len(labelled):.3f}" if labelled else ""
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
        + (MULTILABEL_NOTE if report.multilabel else "")
        + "</header>"
    )
    cards = "\n".join(document_card(view, report) for view in shown)
    css = DOCUMENT_CSS + MULTILABEL_CSS if report.multilabel else DOCUMENT_CSS
    return page("Attention report", css, f"{header}<main>\n{cards}\n</main>")


# --- SVG plots -----------------------------------------------------------------------------------
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
    if stats.multilabel:
        return (
            '<section class="card" id="top-words"><h2>Most attended words per label</h2>'
            '<p class="meta">Mean word attention weight (within its sentence) over the word\'s occurrences in the '
            "documents that have the label; a document with several labels counts in each of their groups (the "
            "attention is one per document, shared by its labels), a document with none in no group; words seen at "
            f"least {stats.options.min_word_count} times; punctuation and unknown words left out.</p>"
            f'<div class="grid">{"".join(blocks)}</div></section>'
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
            for m, n in zip(stats.position_mean[c], stats.position_documents[c], strict=True)
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
        f"<table><tr><th>{'label' if stats.multilabel else 'class'}</th>{header}</tr>{rows}</table></section>"
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
        for c, (name, dist) in enumerate(zip(stats.label_names, distributions, strict=True)):
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
    if check.multilabel:
        explanation = (
            f'<p class="meta">{check.documents} documents sampled (seed {stats.options.seed}) from the {check.eligible} '
            "with at least two sentences and at least one predicted label. From each, the most attended sentence is "
            "removed, or a random other sentence, and the model is run again. Drop = the mean, over the labels "
            "predicted on the full document, of each label's probability before minus after (positive: the model "
            "became less sure of its labels); a flip is any change of the predicted label set (at the run's "
            "thresholds). If attention points at what the model uses, removing the top sentence should hurt more "
            "than removing a random one.</p>"
        )
    else:
        explanation = (
            f'<p class="meta">{check.documents} documents sampled (seed {stats.options.seed}) from the {check.eligible} with at '
            "least two sentences. From each, the most attended sentence is removed, or a random other sentence, and the "
            "model is run again. Drop = probability of the originally predicted class before minus after "
            "(positive: the model became less sure). If attention points at what the model uses, removing the top sentence "
            "should hurt more than removing a random one.</p>"
        )
    return (
        '<section class="card" id="faithfulness"><h2>Faithfulness check</h2>' + explanation + "<table>"
        '<tr><th>removed</th><th class="num">mean drop</th><th class="num">median</th><th class="num">10th pct</th>'
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
    if stats.multilabel:
        accuracy = "" if stats.accuracy is None else f"; exact match (predicted set = true set) {stats.accuracy:.3f}"
        grouping = (
            f"{grouping} set: a document counts in the group of each label it has "
            f"({stats.unlabelled_documents} documents without any label count in none)"
        )
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
    return page("Attention over a corpus", CORPUS_CSS, f"{header}<main>{body}</main>")
