"""benchmarks/bf16_bound.py: the matrix products' share of a pass, and Amdahl's bound on bf16's speed-up."""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks.bf16_bound import bound
from benchmarks.bf16_bound import main as bound_main


def test_bound_is_amdahls_law():
    assert bound(0.0, 2.5) == 1.0
    assert bound(1.0, 2.5) == pytest.approx(2.5)
    assert bound(0.3, 2.5) == pytest.approx(1 / (0.7 + 0.12))
    assert bound(0.3, 2.5, moving=0.2) == pytest.approx(1 / (0.5 + 0.12 + 0.1))


def test_bound_measures_a_share_of_a_trained_runs_passes(trained_run, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bf16_bound", str(trained_run), "--docs", "8", "--reps", "1"])
    bound_main()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["pass"] for line in lines] == ["scoring", "training"]
    for line in lines:
        assert 0 < line["share"] < 1  # the GRU's products are timed, and they are not the whole pass
        assert 1 < line["bound"] < line["bound_infinite_ratio"]
        assert line["bound"] == pytest.approx(1 / ((1 - line["share"]) + line["share"] / 2.5), rel=1e-2)
