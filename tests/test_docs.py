"""The README and the documentation site: the README's "Getting started" block runs as written on a CSV of
its own, the generated reference pages hold every config key and every command, and the README stays short."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from conftest import invoke
from han.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GETTING_STARTED = "## Getting started with your own CSV"
# Settings that make the README's commands take seconds: a tiny network, one epoch, one word2vec pass.
FAST = [
    "preprocess.max_sentences=8",
    "preprocess.max_words=20",
    "preprocess.min_count=1",
    "embeddings.dim=16",
    "embeddings.epochs=1",
    "embeddings.min_count=1",
    "embeddings.workers=1",
    "model.word_hidden=8",
    "model.sentence_hidden=8",
    "model.attention_dim=8",
    "train.max_epochs=1",
    "train.batch_size=8",
    "train.threads=1",
]
TOPIC_WORDS = {
    "sport": "match goal striker team coach league season won scored penalty keeper final",
    "business": "shares market profit bank company investors prices quarter sales growth rates deal",
    "tech": "software chip phone computer users internet data app network device code screen",
}
FILLER = "the a of and in on with after before this that"


def docs_hooks() -> ModuleType:
    """docs/hooks.py, the generators of the reference pages, imported by path."""
    spec = importlib.util.spec_from_file_location("han_docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while it is defined
    spec.loader.exec_module(module)
    return module


def readme_section(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    assert f"\n{heading}\n" in text, f"the README has no section {heading!r}"
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def fenced_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def document(rng: random.Random, topic: str) -> str:
    sentences = []
    for _ in range(rng.randint(2, 4)):
        pools = [TOPIC_WORDS[topic] if rng.random() < 0.6 else FILLER for _ in range(rng.randint(5, 9))]
        words = [rng.choice(pool.split()) for pool in pools]  # most words the topic's, some filler
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def write_documents(path: Path, columns: list[str], count: int, seed: int) -> None:
    rng = random.Random(seed)
    topics = list(TOPIC_WORDS)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for index in range(count):
            topic = topics[index % len(topics)]
            writer.writerow([document(rng, topic), topic][: len(columns)])


def with_fast_overrides(args: list[str]) -> list[str]:
    """The command's arguments with FAST inserted after its config file (overrides follow the config)."""
    configs = [i for i, arg in enumerate(args) if arg.endswith((".yaml", ".yml"))]
    if not configs:
        return args
    return [*args[: configs[0] + 1], *FAST, *args[configs[0] + 1 :]]


def test_the_readme_getting_started_runs_on_a_csv_of_its_own(tmp_path, monkeypatch):
    section = readme_section(GETTING_STARTED)
    (config_block,) = fenced_blocks(section, "yaml")
    (commands,) = fenced_blocks(section, "bash")
    shown = yaml.safe_load(config_block)
    assert shown == yaml.safe_load((ROOT / "configs" / "minimal.yaml").read_text(encoding="utf-8")), (
        "the README's config is configs/minimal.yaml"
    )
    data = shown["data"]
    assert set(data) == {"source", "text_column", "label_column"}
    # The example's columns are none of the shipped configs' own, so nothing here works by a default.
    shipped = [load_config(p) for p in sorted((ROOT / "configs").glob("*.yaml")) if p.name != "minimal.yaml"]
    shipped_columns = {c for config in shipped for c in [*config.data.text_columns, config.data.label_column]}
    assert not {data["text_column"], data["label_column"]} & shipped_columns

    monkeypatch.chdir(tmp_path)
    write_documents(tmp_path / data["source"], [data["text_column"], data["label_column"]], count=60, seed=0)
    write_documents(tmp_path / "new.csv", [data["text_column"]], count=6, seed=1)
    ran = []
    for line in commands.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "cp":
            source, target = words[1:]
            shutil.copyfile(ROOT / source, tmp_path / target)
        else:
            assert words[0] == "han", f"the Getting started block runs only cp and han: {line!r}"
            result = invoke(*with_fast_overrides(words[1:]))
            assert result.exit_code == 0, f"{line}\n{result.output}"
        ran.append(words[:2])
    assert [w[1] for w in ran if w[0] == "han"] == ["data", "run", "predict", "report"]

    # Every output the README's table names is where it says.
    outputs = re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)
    assert "runs/mine/metrics.json" in outputs and "preds.csv" in outputs and "report.html" in outputs
    for path in outputs:
        assert (tmp_path / path).is_dir() if path.endswith("/") else (tmp_path / path).is_file(), path
    classes = json.loads((tmp_path / "runs/mine/labels.json").read_text())["labels"]
    assert sorted(classes) == sorted(TOPIC_WORDS)
    metrics = json.loads((tmp_path / "runs/mine/metrics.json").read_text())
    assert {"validation", "test"} <= set(metrics)
    with (tmp_path / "preds.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and list(rows[0]) == ["row", "label", *(f"p_{c}" for c in classes)]
    assert "<html" in (tmp_path / "report.html").read_text(encoding="utf-8").lower()


def schema_keys(schema: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf key of a config schema, dotted, nested sections walked."""
    keys = []
    for name, field in schema.model_fields.items():
        annotation: Any = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += schema_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_the_config_reference_holds_every_key_with_its_type_default_and_description():
    hooks = docs_hooks()
    reference = hooks.config_reference()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_.]+)` \|.*$", reference, flags=re.M)}
    keys = schema_keys(Config)
    assert len(keys) > 80
    assert sorted(rows) == sorted(keys)
    for key in keys:
        # A row's cells: a code span or an escaped pipe is text, not a border.
        cells = [c.strip() for c in re.findall(r"(?:`[^`]*`|\\\||[^|])+", rows[key])]
        assert len(cells) == 4, cells
        _, kind, default, description = cells
        assert kind and default, key
        assert description, f"{key}: no description; write a comment beside it in han/config.py"
    assert "| `data.source` |" in reference and "**required**" in rows["data.source"]
    assert "`0.002`" in rows["train.lr"] and '"cosine"' in rows["train.scheduler"]


def test_the_command_reference_holds_every_command_and_option():
    hooks = docs_hooks()
    reference = hooks.cli_reference()
    commands = dict(hooks.cli_commands())
    assert {"han run", "han predict", "han report", "han data inspect", "han merge-predictions"} <= set(commands)
    for name, command in commands.items():
        assert f"## `{name}`" in reference, name
        for param in command.params:
            if param.name == "help":
                continue
            spelled = ", ".join(param.opts) if param.opts[0].startswith("-") else param.name
            assert spelled.split(", ")[-1] in reference, (name, spelled)


def test_every_docs_page_expands_and_an_unknown_generator_stops_the_build():
    hooks = docs_hooks()
    used = set()
    for page in sorted((ROOT / "docs").rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        used |= set(hooks.MARKER.findall(text))
        assert "<!-- generated:" not in hooks.expand(text, str(page))
    assert used == set(hooks.GENERATORS), "every generator has a page"
    architecture = hooks.package_reference()
    assert "`han.models`" in architecture and "`pipelines`" in architecture
    with pytest.raises(ValueError, match="no generator named 'nope'"):
        hooks.expand("<!-- generated: nope -->", "page.md")


def test_the_readme_is_a_page_for_users():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250
    assert lines[2:5] == [
        "```bash",
        "make demo   # creates .venv, installs han (CPU torch), trains + evaluates on BBC News (2,225 articles) -> runs/bbc/",
        "make test   # creates .venv, installs han with test extras, runs the test suite (offline; about 3 minutes on 2 cores)",
    ]
    for link in re.findall(r"\]\((docs/[^)#]+)", "\n".join(lines)):
        assert (ROOT / link).is_file(), link


@pytest.mark.slow
def test_the_docs_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.skip("mkdocs is not installed (the docs extra)")
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WARNING" not in done.stderr
    assert (tmp_path / "site" / "reference" / "config" / "index.html").is_file()
