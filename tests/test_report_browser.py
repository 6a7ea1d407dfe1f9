"""The HTML report as a browser sees it: headless Chromium renders it and we read back its DOM.

CI installs Chromium (`.ci/run`); without it these tests are skipped with the reason shown.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import write_csv
from han.config import DocumentReportConfig
from han.reports.documents import document_report
from han.reports.output import write_document_report
from han.serving.trained import load_trained_run

CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not found (Debian: apt-get install chromium; .ci/run installs it)"
)

HOSTILE = (
    "Nice <script>document.body.setAttribute('data-pwned','1')</script> fit & \"quoted\" 'single' quotes. "
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\"> the team scored a goal! "
    "Привет, 東京 café naïve — ok."
)
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def find(self, tag: str, cls: str | None = None) -> list[Node]:
        return [n for n in self.walk() if n.tag == tag and (cls is None or cls in n.classes)]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(dom: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(dom)
    return builder.root


def dump_dom(page: Path, profile: Path, scripts: bool) -> str:
    """The DOM after Chromium loaded `page`; with scripts=False the profile disables JavaScript."""
    (profile / "Default").mkdir(parents=True)
    if not scripts:
        preferences = {"profile": {"default_content_setting_values": {"javascript": 2}}}
        (profile / "Default" / "Preferences").write_text(json.dumps(preferences))
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and "<html" in result.stdout, result.stderr[-3000:]
    return result.stdout


def test_profile_really_disables_scripts(tmp_path):
    page = tmp_path / "control.html"
    page.write_text('<html><body><p id="x">static</p><script>document.getElementById("x").textContent="ran"</script>')
    assert parse(dump_dom(page, tmp_path / "off", scripts=False)).find("p")[0].text() == "static"
    assert parse(dump_dom(page, tmp_path / "on", scripts=True)).find("p")[0].text() == "ran"


def test_browser_dom_shows_every_document_sentence_and_word_with_its_weight(trained_run, tmp_path):
    trained = load_trained_run(trained_run)
    many = " ".join(f"The team won match {i} today." for i in range(11))  # more sentences than max_sentences (8)
    long_sentence = "A chip " + " ".join(["server"] * 24) + " ok."  # more words than max_words (20)
    rows = [
        {"text": HOSTILE, "label": "sport"},
        {"text": many, "label": "sport"},
        {"text": long_sentence, "label": "food"},
        {"text": "Fresh bread from the oven.\n\nThe chef made a sauce.", "label": "food"},
    ]
    source = write_csv(tmp_path / "docs.csv", rows)
    report = document_report(trained, source, None, DocumentReportConfig(sort="misclassified"))
    hostile_labels = ['<b onmouseover="alert(1)">food</b>', 'sport & "co"', "tech's <i>"]
    report = replace(report, label_names=hostile_labels)
    page, data = tmp_path / "report.html", tmp_path / "report.jsonl"
    write_document_report(report, page, "html")
    write_document_report(report, data, "jsonl")
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]

    dom = parse(dump_dom(page, tmp_path / "profile", scripts=False))
    articles = dom.find("article", "doc")
    assert [int(a.attrs["data-row"]) for a in articles] == [r["row"] for r in records]
    assert sorted(r["row"] for r in records) == [1, 2, 3, 4]
    cut_sentences = cut_words = 0
    for article, record in zip(articles, records, strict=True):
        assert article.attrs["data-predicted"] == record["predicted"] and article.attrs["data-true"] == record["true"]
        assert article.find("b", "pred-label")[0].text() == record["predicted"]
        probabilities = {p.attrs["data-label"]: float(p.attrs["data-p"]) for p in article.find("span", "prob")}
        assert probabilities == pytest.approx(record["probabilities"], abs=1e-6)
        sentences = article.find("li", "sent")
        assert len(sentences) == len(record["sentences"])
        for item, sentence in zip(sentences, record["sentences"], strict=True):
            words = item.find("span", "w")
            assert [w.text() for w in words] == sentence["tokens"]
            if sentence["cut"]:
                cut_sentences += 1
                assert "cut" in item.classes and item.attrs["data-cut"] == "max_sentences"
                assert all("cut" in w.classes for w in words)
                continue
            assert float(item.attrs["data-weight"]) == pytest.approx(sentence["weight"], abs=1e-6)
            for word, weight in zip(words, sentence["word_weights"], strict=True):
                if weight is None:
                    cut_words += 1
                    assert "cut" in word.classes and word.attrs["data-cut"] == "max_words"
                else:
                    assert float(word.attrs["data-weight"]) == pytest.approx(weight, abs=1e-6)
    assert cut_sentences == 11 - 8 and cut_words == 28 - 20

    # Injected markup is inert text: no element or event handler came from the documents or the labels.
    tags = {node.tag for node in dom.walk()}
    assert not tags & {"script", "img", "i", "iframe"}
    assert not [name for node in dom.walk() for name in node.attrs if name.startswith("on")]
    hostile = next(a for a, r in zip(articles, records, strict=True) if r["row"] == 1)
    text = " ".join(span.text() for span in hostile.find("span", "text"))
    for fragment in (
        "<script>document.body.setAttribute('data-pwned','1')</script>",
        "fit & \"quoted\" 'single' quotes.",
        "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">",
        "Привет, 東京 café naïve — ok.",
    ):
        assert fragment in text, text
    labels = {b.text() for b in dom.walk() if b.tag == "b"}
    assert set(hostile_labels) & labels  # label names shown verbatim, as text

    # With scripts enabled, nothing runs either: the payloads never became elements.
    live = parse(dump_dom(page, tmp_path / "live", scripts=True))
    body = next(node for node in live.walk() if node.tag == "body")
    assert "data-pwned" not in body.attrs
    assert len(live.find("article", "doc")) == len(records)
