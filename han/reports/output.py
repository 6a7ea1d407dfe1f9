"""Writing reports: per-document reports as HTML or JSON Lines, corpus statistics as HTML or JSON; atomically."""

from __future__ import annotations

import json
from pathlib import Path

from han.reports.documents import DocumentReport, document_record
from han.reports.pages import render_corpus_report, render_document_report
from han.reports.statistics import CorpusStatistics
from han.store.outputs import write_output_text


def write_document_report(report: DocumentReport, output: Path, output_format: str) -> None:
    """Write the report as one self-contained HTML page or as JSON Lines, atomically."""
    if output_format == "jsonl":
        lines = (json.dumps(document_record(v, report.label_names), ensure_ascii=False) for v in report.documents)
        write_output_text(output, "".join(line + "\n" for line in lines))
    else:
        write_output_text(output, render_document_report(report))


def write_corpus_report(statistics: CorpusStatistics, output: Path, output_format: str) -> None:
    """Write the corpus statistics as an HTML page with plots, or as JSON, atomically."""
    if output_format == "json":
        write_output_text(output, json.dumps(statistics.as_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        write_output_text(output, render_corpus_report(statistics))
