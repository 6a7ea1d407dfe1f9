"""Time attention-report generation for 1,000 documents; prints one JSON line.

    .venv/bin/python benchmarks/report.py RUN_DIR [--data ../shared/data/clothing_reviews.csv] [--documents 1000] [--repeats 3]

Takes the first N documents of the data file's test split (labelled, written to a temporary CSV) and
times, after one warm-up: the library path (read + segment + model with attention + select + HTML,
in process, model already loaded) and the whole command `han report RUN_DIR docs.csv -o report.html`
(a fresh process: imports, loading the run, everything). Reports medians over the repeats.
Target: under 30 s for 1,000 documents.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from han.config import DocumentReportConfig
from han.reports.documents import document_report
from han.reports.output import write_document_report
from han.serving.trained import load_trained_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/clothing_reviews.csv"))
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with open(args.data, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("split") == "test"][: args.documents]
    work = Path(tempfile.mkdtemp(prefix="han-report-bench-"))
    documents = work / "docs.csv"
    with open(documents, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    trained = load_trained_run(args.run_dir)
    options = DocumentReportConfig()
    library, stages = [], []
    for repeat in range(args.repeats + 1):  # the first is a warm-up
        start = time.perf_counter()
        report = document_report(trained, documents, None, options)
        built = time.perf_counter()
        write_document_report(report, work / "report.html", "html")
        done = time.perf_counter()
        if repeat:
            library.append(done - start)
            stages.append({"read_segment_attend": built - start, "render_write": done - built})
    han = Path(sys.executable).with_name("han")
    command = []
    for repeat in range(args.repeats + 1):
        start = time.perf_counter()
        subprocess.run(
            [str(han), "report", str(args.run_dir), str(documents), "-o", str(work / "cli.html")],
            check=True,
            capture_output=True,
        )
        if repeat:
            command.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "benchmark": "report",
                "documents": len(report.documents),
                "run_dir": str(args.run_dir),
                "library_seconds_median": round(statistics.median(library), 2),
                "library_seconds": [round(t, 2) for t in library],
                "stages_seconds_median": {
                    key: round(statistics.median(s[key] for s in stages), 2) for key in stages[0]
                },
                "command_seconds_median": round(statistics.median(command), 2),
                "command_seconds": [round(t, 2) for t in command],
                "html_bytes": (work / "report.html").stat().st_size,
                "target_seconds": 30,
            }
        )
    )


if __name__ == "__main__":
    main()
