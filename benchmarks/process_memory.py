"""The memory of a command and every process it starts, summed: its peak proportional set size (PSS).

    python -m benchmarks.process_memory -- python -m pipelines train CONFIG ... --run-dir RUN --overwrite

A process's own peak RSS (what `/usr/bin/time` and the manifest's `stage_peak_memory` give) leaves out the
forked workers a command starts (the linear fits side by side, the n-gram counting, scoring), and adding the
workers' RSS would count the pages they share with the command twice. PSS splits each shared page between the
processes that map it, so the sum over the command and its descendants is the memory they hold together. Read
from /proc every `--every` seconds while the command runs (Linux). One JSON line.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from benchmarks.common import emit


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it that is still running."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid, *(p for child in children for p in descendants(int(child)))]


def pss_mb(pid: int) -> float:
    """The process's PSS in MB (0 once it has ended)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=0.1, help="seconds between readings")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    together = alone = 0.0
    most = 1
    while process.poll() is None:
        pids = descendants(process.pid)
        together = max(together, sum(pss_mb(pid) for pid in pids))
        alone = max(alone, pss_mb(process.pid))
        most = max(most, len(pids))
        time.sleep(args.every)
    emit(
        {
            "bench": "process_memory",
            "command": " ".join(command),
            "returncode": process.returncode,
            "seconds": time.perf_counter() - start,
            "peak_pss_mb_all_processes": together,
            "peak_pss_mb_command_alone": alone,
            "most_processes": most,
        }
    )


if __name__ == "__main__":
    main()
