"""Hostile configurations: each is refused with one line and its exit code.

Every case goes through the `han` command and must give exactly one non-empty stderr line naming the
key (or file and line), the expected exit code and no traceback. Config-only cases run `han data
inspect`, which reads the config first and never builds a model or trains vectors, so the same
tests run harmlessly against code that accepted these configs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import TINY_CONFIG, invoke, one_line_error


def inspect_file(text: str) -> Callable[[Path, list[str]], list[str]]:
    """`han data inspect` of a config file holding `text` ({csv} is the synthetic corpus)."""

    def args(tmp: Path, overrides: list[str]) -> list[str]:
        path = tmp / "config.yaml"
        assert overrides[0].startswith("data.source=")  # conftest.tiny_overrides: the synthetic corpus first
        path.write_text(text.replace("{csv}", overrides[0].partition("=")[2]), encoding="utf-8")
        return ["data", "inspect", str(path)]

    return args


def inspect_tiny(*extra: str) -> Callable[[Path, list[str]], list[str]]:
    """`han data inspect` of configs/tiny.yaml on the synthetic corpus, plus `extra` overrides."""
    return lambda tmp, overrides: ["data", "inspect", str(TINY_CONFIG), *overrides, *extra]


VALID = "data: {source: '{csv}', split_column: split}\n"
DEEP = 100_000
ALIAS_CHAIN = "x0: &x0 [a]\n" + "".join(f"x{i}: &x{i} [*x{i - 1}]\n" for i in range(1, 3000))


# --- finding 1: nesting is bounded before PyYAML's recursive composer can exhaust the stack ----------
@pytest.mark.parametrize(
    ("make_args", "fragments"),
    [
        (inspect_file("[" * DEEP), ["config.yaml: nested more than 32 levels deep (at line 1)"]),
        (inspect_file(VALID + "train: " + "{a: " * 40 + "1" + "}" * 40 + "\n"), ["nested more than 32 levels deep"]),
        (inspect_file(ALIAS_CHAIN + VALID), ["config.yaml: nested more than 32 levels deep"]),
        (inspect_tiny("train.lr=" + "[" * DEEP), ["override train.lr: the value is nested more than 32 levels deep"]),
    ],
    ids=["file of 100k open brackets", "file nested 40 deep", "alias chain 3000 deep", "override of 100k brackets"],
)
def test_deeply_nested_yaml_is_refused_with_one_line(tmp_path, tiny_overrides, make_args, fragments):
    one_line_error(invoke(*make_args(tmp_path, tiny_overrides)), 2, *fragments)


# --- finding 2: model sizes are bounded, and the network must fit in memory before it is allocated ---
@pytest.mark.parametrize(
    "override",
    [
        "model.word_hidden=100000000",
        "model.sentence_hidden=10000000",
        "model.attention_dim=1000000000",
        "embeddings.dim=100000000",
    ],
)
def test_huge_model_sizes_are_refused_by_the_schema(tmp_path, tiny_overrides, override):
    key, _, value = override.partition("=")
    one_line_error(
        invoke(*inspect_tiny(override)(tmp_path, tiny_overrides)),
        2,
        f"{key}: Input should be less than or equal to 4096 (got {value})",
    )


def test_a_model_larger_than_the_available_memory_is_refused_before_allocating(tmp_path, tiny_overrides, monkeypatch):
    config = [str(TINY_CONFIG), *tiny_overrides, "model.word_hidden=512", "--run-dir", str(tmp_path / "run")]
    invoke("preprocess", *config, check=True)
    monkeypatch.setattr("han.models.build.available_memory_bytes", lambda: 2**20, raising=False)  # 1 MiB left
    line = one_line_error(
        invoke("train", *config), 2, "the model would need 25.7 MiB", "but only 1.0 MiB of memory is available"
    )
    assert "lower model.word_hidden (the word encoder, model.word_hidden=512, is the largest part)" in line


# --- finding 3: floats are finite; a diverging training stops; JSON never holds a bare NaN ----------
@pytest.mark.parametrize(
    "override", ["train.lr=inf", "train.lr=1e400", "train.lr=.nan", "train.grad_clip=-.inf", "data.test_fraction=nan"]
)
def test_non_finite_floats_are_refused(tmp_path, tiny_overrides, override):
    key = override.partition("=")[0]
    one_line_error(
        invoke(*inspect_tiny(override)(tmp_path, tiny_overrides)), 2, f"{key}: Input should be a finite number"
    )


def strict_json(path: Path) -> object:
    """The parsed JSON (or, for .jsonl, the list of parsed lines) of `path`; a bare NaN/Infinity fails the test."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{path}: bare {constant} in JSON")

    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]
    return json.loads(text, parse_constant=refuse)


def test_a_diverging_training_stops_with_one_line_and_writes_only_strict_json(tmp_path, tiny_overrides):
    run_dir = tmp_path / "run"
    config = [str(TINY_CONFIG), *tiny_overrides, "train.lr=1e38", "train.scheduler=constant", "--run-dir", str(run_dir)]
    invoke("preprocess", *config, check=True)
    line = one_line_error(
        invoke("train", *config), 2, "training diverged at epoch 1 step ", "lower train.lr", progress=True
    )
    assert "loss is nan" in line or "loss is inf" in line
    assert not (run_dir / "model" / "best.safetensors").exists() and not (run_dir / "train_log.jsonl").exists()
    written = sorted(run_dir.rglob("*.json")) + sorted(run_dir.rglob("*.jsonl"))
    assert written, "preprocessing wrote its files"
    for path in written:
        strict_json(path)


def test_the_json_writer_writes_non_finite_numbers_as_null(tmp_path):
    from han.util.atomic import write_json_atomic

    write_json_atomic(tmp_path / "m.json", {"loss": math.nan, "curve": [1.5, math.inf, -math.inf], "ok": 2})
    assert strict_json(tmp_path / "m.json") == {"loss": None, "curve": [1.5, None, None], "ok": 2}


# --- finding 4: seeds are integers in 0..2**32-1 ------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_a_config_seed_outside_32_bits_is_refused(tmp_path, tiny_overrides, seed):
    one_line_error(
        invoke(*inspect_tiny(f"seed={seed}")(tmp_path, tiny_overrides)),
        2,
        f"seed: a seed must be an integer from 0 to 2**32 - 1 = 4294967295 (got {seed})",
    )


def test_a_corpus_report_seed_outside_32_bits_is_refused(tmp_path, trained_run):
    args = ["corpus-report", str(trained_run), "--output", str(tmp_path / "c.json"), "--seed", "-1"]
    one_line_error(invoke(*args), 2, "han corpus-report options: seed: a seed must be an integer from 0 to 2**32 - 1")


# --- finding 5: duplicate keys are refused, naming the key and the line ------------------------------
@pytest.mark.parametrize(
    ("make_args", "fragment"),
    [
        (
            inspect_file(VALID + "train:\n  lr: 0.01\n  batch_size: 8\n  lr: 0.5\n"),
            "config.yaml: line 5: duplicate key 'lr' (first set at line 3)",
        ),
        (
            inspect_file(VALID + "model: {word_hidden: 8}\nmodel: {dropout: 0.5}\n"),
            "config.yaml: line 3: duplicate key 'model' (first set at line 2)",
        ),
        (inspect_tiny("data.splits={train: train, train: test}"), "override data.splits: key 'train' appears twice"),
    ],
    ids=["key in a section", "section", "key in an override value"],
)
def test_duplicate_yaml_keys_are_refused(tmp_path, tiny_overrides, make_args, fragment):
    one_line_error(invoke(*make_args(tmp_path, tiny_overrides)), 2, fragment)


# --- finding 6: true/false is not a number, and a number is not true/false ---------------------------
@pytest.mark.parametrize(
    ("make_args", "fragment"),
    [
        (inspect_file(VALID + "train: {max_epochs: true}\n"), "train.max_epochs: expected a number, not true/false"),
        (inspect_tiny("train.max_epochs=true"), "train.max_epochs: expected a number, not true/false (got True)"),
        (inspect_tiny("train.lr=false"), "train.lr: expected a number, not true/false (got False)"),
        (inspect_tiny("seed=true"), "seed: expected a number, not true/false"),
        (inspect_tiny("model.freeze_embeddings=1"), "model.freeze_embeddings: expected true or false (got 1)"),
        (inspect_file(VALID + "preprocess: {lowercase: 0}\n"), "preprocess.lowercase: expected true or false (got 0)"),
    ],
    ids=["file max_epochs true", "override max_epochs true", "override lr false", "seed true", "bool 1", "bool 0"],
)
def test_booleans_and_numbers_are_not_taken_for_each_other(tmp_path, tiny_overrides, make_args, fragment):
    one_line_error(invoke(*make_args(tmp_path, tiny_overrides)), 2, fragment)


@pytest.mark.parametrize(("precision", "tolerated"), [("fp32", 0), ("bf16", 0), ("fp16", 19)])
def test_a_non_finite_loss_is_divergence_at_once_except_for_fp16_overflows_the_scaler_skips(
    tiny_config, precision, tolerated
):
    from types import SimpleNamespace

    from han.errors import ConfigError
    from han.training.train import TrainingSession

    config = tiny_config.model_copy(update={"precision": precision})
    session = SimpleNamespace(config=config, loop=SimpleNamespace(epoch=2, global_step=40), nonfinite_in_a_row=0)
    for _ in range(tolerated):
        TrainingSession.check_divergence(session, math.inf)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^training diverged at epoch 2 step 41: loss is inf.*lower train\.lr"):
        TrainingSession.check_divergence(session, math.inf)  # type: ignore[arg-type]
