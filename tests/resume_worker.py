"""Subprocess of tests/test_resume.py: trains a run directory in forked children that the test kills.

    python tests/resume_worker.py CONFIG RUN_DIR [key=value ...]

Reads one command a line on stdin: `fresh` or `resume` forks a child that trains (printing its
pid, then "step" after every training step); the worker waits for it and prints `exit CODE`
(negative: killed by that signal). Forking from this warm process spares each attempt the
seconds of importing torch, spaCy and datasets. `quit` ends the worker.
"""

import os
import sys
import traceback
from pathlib import Path
from typing import Any

from han.config import load_config
from han.progress import Progress
from han.training.train import train


class StepPrinter(Progress):
    def advance(self, amount: int = 1, **info: Any) -> None:
        if info:  # the training loop reports loss and speed with every step
            print("step", flush=True)


def main() -> None:
    config_path, run_dir, *overrides = sys.argv[1:]
    config = load_config(config_path, overrides)
    for command in sys.stdin:
        mode = command.strip()
        if mode == "quit":
            return
        child = os.fork()
        if child == 0:
            code = 0
            try:
                print(f"pid {os.getpid()}", flush=True)
                train(config, Path(run_dir), StepPrinter(), resume=mode == "resume")
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(child, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"exit {code}", flush=True)


if __name__ == "__main__":
    main()
