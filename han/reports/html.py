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


def esc(text: object) -> str:
    """Escape any value for HTML element content and quoted attribute values."""
    return html.escape(str(text), quote=True)


def page(title: str, css: str, body: str) -> str:
    """A complete HTML page: `title`, the base styles plus `css`, and `body`, under a restrictive CSP."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{BASE_CSS}{css}</style></head>\n"
        f"<body>{body}</body></html>\n"
    )


def format_number(value: float, digits: int = 3) -> str:
    """`value` with `digits` decimal places."""
    return f"{value:.{digits}f}"


# --- per-document report -----------------------------------------------------------------------
def svg_frame(width: int, height: int, content: str, label: str) -> str:
    """`content` inside an <svg> element of the given size, labelled `label` for screen readers."""
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
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        h = 0.0 if peak <= 0 else plot_h * min(max(value, 0.0) / peak, 1.0)
        x = left + i * step
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="{color}"><title>{esc(label)}: {esc(value_format.format(value))}</title></rect>'
        )
        if i % every == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{height - 6}" text-anchor="middle">{esc(label)}</text>')
    return svg_frame(width, height, "".join(parts), title)


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
    return svg_frame(width, height, "".join(parts), title)


# --- corpus report -------------------------------------------------------------------------------
def sqrt_scaled(word_weight: float, sentence_weight: float) -> float:
    """The paper's display weight of a word: its weight times the square root of its sentence's weight."""
    return word_weight * math.sqrt(sentence_weight)
