"""MODEL_CARD.md: what a run is, for someone who will not read its JSON, as a Hugging Face style model card.

The card is made from the run directory's own files only (config.json, manifest.json, labels.json,
metrics.json, the weights' safetensors header), never from the data: the only text of the data in it is
label names, escaped for Markdown (`markdown_cell`), and the front matter is YAML written by a safe dumper.
The evaluate stage writes it after every change to metrics.json (`write_model_card`), lists it in the
manifest, and replaces only a card han wrote and nobody altered since; a card edited by hand is kept.
(Longer than ~400 lines: one short function per section of the card, which read best together.)
"""

from __future__ import annotations

import json
import logging
import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from han.config import Config
from han.errors import RunDirError
from han.store.rundir import RunDir
from han.util.atomic import read_json, write_text_atomic

log = logging.getLogger(__name__)

DASH = "—"
SPLITS = ("train", "validation", "test")
MAX_CLASSES_LISTED = 200  # per-class rows of a table: the classes of most support; metrics.json holds every one
MAX_HEADER_BYTES = 100 << 20  # a safetensors header larger than this is not read for the parameter count
MARKDOWN_SPECIAL = set("\\`*_[]<>|&#!~")  # backslash-escaped in label names (CommonMark escapes any punctuation)
# The front matter's model-index metrics: (type, metrics.json key, name, average)
SINGLE_LABEL_RESULTS = (("accuracy", "accuracy", "accuracy", None), ("f1", "macro_f1", "macro-F1", "macro"))
MULTILABEL_RESULTS = (
    ("f1", "micro_f1", "micro-F1", "micro"),
    ("f1", "macro_f1", "macro-F1", "macro"),
    ("exact_match", "exact_match", "exact match", None),
)


class _CardDumper(yaml.SafeDumper):
    """Safe YAML whose strings with line breaks are double-quoted with escapes (no line of a value is `---`)."""


_CardDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style='"' if any(c in text for c in "\n\r\t\x85\u2028\u2029") else None
    ),
)


def markdown_cell(text: Any) -> str:
    """`text` safe inside a Markdown table cell: line breaks become spaces, Markdown punctuation is escaped."""
    flat = " ".join(str(text).splitlines()) or " "
    return "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in flat)


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return DASH
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A Markdown table of already escaped cells; `align` holds l or r per column (default: the first column
    left, the others, numbers, right)."""
    align = align or "l" + "r" * (len(head) - 1)
    rules = [":---" if side == "l" else "---:" for side in align]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(rules) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _parameter_count(path: Path) -> int | None:
    """The number of values in a safetensors file, from its JSON header (None when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if size > MAX_HEADER_BYTES:
                return None
            header = json.loads(handle.read(size))
        return sum(math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _architecture(config: Config) -> str:
    """One sentence naming the network and its sizes."""
    m = config.model
    if m.kind in ("han", "han_avg", "han_max"):
        pool = {"han": f"attention ({m.attention_dim})", "han_avg": "mean pooling", "han_max": "max pooling"}[m.kind]
        text = (
            f"hierarchical network: a bidirectional {m.cell.upper()} over each sentence's words ({m.word_hidden} "
            f"per direction) and {pool}, then a bidirectional {m.cell.upper()} over the sentences "
            f"({m.sentence_hidden} per direction) and {pool}"
        )
        if m.wide:
            text += f"; plus a wide channel of TF-IDF word n-grams up to {m.linear_ngrams} ({m.wide_weights} weights)"
    elif m.kind == "rnn":
        direction = "bidirectional " if m.bidirectional else ""
        text = f"one {direction}{m.cell.upper()} over the capped token sequence ({m.word_hidden}), {m.pooling} pooling"
    elif m.kind == "cnn":
        text = f"convolutions of widths {', '.join(map(str, m.cnn_widths))} ({m.cnn_maps} maps each), max over time"
    elif m.kind == "mean":
        text = "the average word vector and a linear layer"
    else:
        text = f"TF-IDF of word n-grams up to {m.linear_ngrams} with a {m.linear_classifier} (C {m.linear_c})"
    if m.kind != "linear":
        text += f"; dropout {m.dropout}, word dropout {m.word_dropout}"
        if m.ensemble > 1:
            text += f"; an ensemble of {m.ensemble} such networks"
    return text


def _code(text: Any) -> str:
    """`text` as a Markdown code span, or escaped plain text when a backtick or line break would break the span."""
    text = str(text)
    return markdown_cell(text) if "`" in text or "|" in text or len(text.splitlines()) > 1 else f"`{text}`"


def _source(source: Any) -> str:
    if isinstance(source, (str, type(None))):
        return _code(source)
    if isinstance(source, list):
        return ", ".join(map(_code, source))
    return "; ".join(f"{markdown_cell(split)}: {_source(files)}" for split, files in _dict(source).items())


def _how_made(config: Config, split: str, carved: list[str]) -> str:
    data = config.data
    if split in carved:
        method = "iterative stratification over the label sets" if config.multilabel else "stratified by class"
        if split == "test":
            return f"carved from train: {data.test_fraction * 100:g}% of it, {method}, seed {config.seed}"
        after = " (after test was carved)" if "test" in carved else ""
        return f"carved from train{after}: {data.validation_fraction * 100:g}% of it, {method}, seed {config.seed}"
    name = getattr(data.splits, split)
    if data.split_column:
        return f"given: rows whose {_code(data.split_column)} is {_code(name)}"
    return f"given: the source's {_code(name)} split"


def _front_matter(config: Config, name: str, labels: list[str], metrics: dict[str, Any]) -> str:
    results = []
    for split in ("test", "validation"):
        scores = _dict(metrics.get(split))
        if not scores:
            continue
        values = []
        for kind, key, label, average in MULTILABEL_RESULTS if config.multilabel else SINGLE_LABEL_RESULTS:
            value = scores.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                values.append({"type": kind, "value": round(float(value), 4), "name": f"{split} {label}"})
                if average:
                    values[-1]["args"] = {"average": average}
        source = config.data.source if isinstance(config.data.source, str) else json.dumps(config.data.source)
        task = "multi-label text classification" if config.multilabel else "text classification"
        results.append(
            {
                "task": {"type": "text-classification", "name": task},
                "dataset": {"name": source, "type": source, "split": split},
                "metrics": values,
            }
        )
    front = {
        "library_name": "han",
        "language": [config.preprocess.lang],
        "pipeline_tag": "text-classification",
        "tags": ["text-classification", "hierarchical-attention-network", config.model.kind, config.task],
        "metrics": ["f1", "exact_match"] if config.multilabel else ["accuracy", "f1"],
        "labels": labels,
        "model-index": [{"name": name, "results": results}],
    }
    dumped = yaml.dump(front, Dumper=_CardDumper, sort_keys=False, allow_unicode=True, width=math.inf)
    return f"---\n{dumped}---\n"


def _description(run: RunDir, config: Config, manifest: dict[str, Any], labels: list[str]) -> str:
    pre, versions = _dict(manifest.get("preprocess")), _dict(manifest.get("versions"))
    emb = config.embeddings
    vectors = {"word2vec": "trained with word2vec on the training split", "file": f"read from {_code(emb.path)}"}
    params = _parameter_count(run.best_weights_path)
    facts = [
        ("task", f"{config.task}: {'a set of labels' if config.multilabel else 'one label'} per document"),
        ("model kind", f"`{config.model.kind}`"),
        ("architecture", _architecture(config)),
        ("word vectors", f"{emb.dim} dimensions, {vectors.get(emb.source, 'random')}"),
        ("vocabulary", f"{pre.get('vocab_size', DASH)} words (min_count {config.preprocess.min_count})"),
        ("parameters", f"{params:,}" if params is not None else DASH),
        ("classes", str(len(labels))),
        ("han version", f"{versions.get('han', DASH)} (torch {versions.get('torch', DASH)})"),
        ("created", str(manifest.get("created", DASH))),
    ]
    return "## Model description\n\n" + _table(["", ""], [[k, v] for k, v in facts], "ll")


def _training_data(config: Config, manifest: dict[str, Any]) -> str:
    pre = _dict(manifest.get("preprocess"))
    listed = manifest.get("carved_splits")
    carved = [str(split) for split in listed] if isinstance(listed, list) else []
    documents = _dict(pre.get("documents"))
    rows = [[split, _number(documents.get(split)), _how_made(config, split, carved)] for split in SPLITS]
    rows[0][2] = "what was left" if carved else _how_made(config, "train", [])
    dropped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in _dict(pre.get("rows_dropped")).items() if v)
    text_columns = ", ".join(map(_code, config.data.text_columns))
    return "\n".join(
        [
            "## Training data",
            "",
            f"- source: {_source(config.data.source)} (as written in the config; text {text_columns})",
            f"- fingerprint: `{manifest.get('data_fingerprint', DASH)}` (SHA-256 over every split's texts and labels)",
            f"- rows read {pre.get('rows_in', DASH)}, kept {pre.get('rows_kept', DASH)}; dropped: {dropped or 'none'}",
            "",
            _table(["split", "documents", "how it was made"], rows, "lrl"),
        ]
    )


def _training(config: Config, manifest: dict[str, Any]) -> str:
    train, t = _dict(manifest.get("train")), config.train
    if config.model.kind == "linear":
        return "## Training\n\nFitted once on the training split (scikit-learn); no epochs."
    metric = train.get("metric_name", f"validation {t.early_stopping_metric}")
    kept = f"epoch {train.get('best_epoch', DASH)}, best {metric} {_number(train.get('best_metric'))}"
    if train.get("best_epoch") == 0 and config.model.wide and config.model.wide_weights == "fitted":
        beyond = " beyond chance" if t.beat_linear_start == "significantly" else ""
        kept += f": the fitted n-gram channel alone (no epoch of the network beat it on validation{beyond})"
    facts = [
        ("epochs", f"{train.get('epochs_run', DASH)} of at most {t.max_epochs} (patience {t.early_stopping_patience})"),
        ("kept weights", kept),
        ("optimiser", f"{t.optimizer}, learning rate {t.lr} ({t.scheduler} schedule), batch size {t.batch_size}"),
        ("device", f"{train.get('device', DASH)}, {train.get('world_size', 1)} process(es), {config.precision}"),
    ]
    return "## Training\n\n" + _table(["", ""], [[k, markdown_cell(v)] for k, v in facts], "ll")


def _labels(config: Config, labels: list[str], manifest: dict[str, Any], metrics: dict[str, Any]) -> str:
    counts = _dict(_dict(manifest.get("preprocess")).get("label_counts"))
    if not counts:  # preprocessed before han counted labels: the held-out splits' support from metrics.json
        key = "per_label" if config.multilabel else "per_class"
        counts = {
            split: {n: _dict(e).get("support") for n, e in _dict(_dict(metrics.get(split)).get(key)).items()}
            for split in ("validation", "test")
        }
    rows = [[markdown_cell(name), *(_number(_dict(counts.get(s)).get(name)) for s in SPLITS)] for name in labels]
    note = " A document counts once for each of its labels." if config.multilabel else ""
    return f"## Labels\n\nDocuments per label and split, in class-id order.{note}\n\n" + _table(
        ["label", *SPLITS], rows
    )


def _per_class(scores: dict[str, Any], multilabel: bool) -> str:
    entries = _dict(scores.get("per_label" if multilabel else "per_class"))
    names = list(entries)
    if len(names) > MAX_CLASSES_LISTED:
        support = {n: _dict(entries[n]).get("support") or 0 for n in names}
        names = sorted(names, key=lambda n: -support[n])[:MAX_CLASSES_LISTED]
    keys = ["precision", "recall", "f1", "support", *(["threshold"] if multilabel else [])]
    rows = [[markdown_cell(n), *(_number(_dict(entries[n]).get(k)) for k in keys)] for n in names]
    more = len(entries) - len(names)
    note = (
        f"\n\nThe {len(names)} classes of most support, of {len(entries)}; metrics.json holds every one."
        if more
        else ""
    )
    return _table(["label" if multilabel else "class", *keys], rows) + note


def _evaluation(config: Config, metrics: dict[str, Any]) -> str:
    if not metrics:
        return "## Evaluation results\n\nNot evaluated yet: `han evaluate RUN_DIR` writes metrics.json and this card."
    multilabel = config.multilabel
    keys = ["micro_f1", "macro_f1", "exact_match", "loss"] if multilabel else ["accuracy", "macro_f1", "loss"]
    names = ["micro-F1", "macro-F1", "exact match", "loss"] if multilabel else ["accuracy", "macro-F1", "loss"]
    rows = [
        [markdown_cell(split), _number(_dict(m).get("documents")), *(_number(_dict(m).get(k)) for k in keys)]
        for split, m in metrics.items()
    ]
    parts = ["## Evaluation results", "", "From metrics.json (`han evaluate` refreshes both).", ""]
    parts.append(_table(["evaluated on", "documents", *names], rows))
    for split in ("test", "validation"):
        if _dict(metrics.get(split)):
            at = ", at the run's per-label thresholds" if multilabel else ""
            parts += ["", f"### Per-{'label' if multilabel else 'class'} scores: {split}{at}", ""]
            parts.append(_per_class(metrics[split], multilabel))
    return "\n".join(parts)


def _caps(config: Config, manifest: dict[str, Any]) -> str:
    pre = config.preprocess
    head = (
        f"## What the caps cut\n\nThe model reads at most {pre.max_sentences} sentences of {pre.max_words} words "
        f"per document (`preprocess.max_sentences`, `preprocess.max_words`), after cutting each text at "
        f"{pre.max_chars:,} characters (`preprocess.max_chars`); `han predict` applies the same caps, so text past "
        "them never counts. Counted while preprocessing:\n\n"
    )
    handling = _dict(_dict(manifest.get("preprocess")).get("text_handling"))
    if not handling:
        return head.replace("Counted while preprocessing:\n\n", "This run was preprocessed before han counted cuts.")
    rows = []
    for split, h in handling.items():
        h = _dict(h)
        tokens, cut = h.get("tokens"), h.get("tokens_cut")
        share = f"{cut / tokens:.1%}" if isinstance(tokens, int) and tokens and isinstance(cut, int) else DASH
        keys = ("documents", "truncated", "capped_documents", "sentences_cut", "tokens_cut")
        rows.append([markdown_cell(split), *(_number(h.get(k)) for k in keys), share])
    head_row = ["split", "documents", "cut at max_chars", "capped", "sentences cut", "tokens cut", "share of tokens"]
    return head + _table(head_row, rows)


def _limitations(config: Config, labels: list[str], manifest: dict[str, Any]) -> str:
    lang, source = config.preprocess.lang, _source(config.data.source)
    empty = (
        "gets no label unless `predict.at_least_one` is set (then its most probable one)"
        if config.multilabel
        else "still gets one of the classes, the one the model leans to when it knows nothing"
    )
    return (
        "## Intended use and limitations\n\n"
        f"Intended use: sorting documents like the training data ({source}, language {_code(lang)}) into its "
        f"{len(labels)} classes.\n\n"
        f"- Domain: the training data only. Other domains, languages, lengths or label definitions were not measured; "
        "the held-out splits come from the same source, so expect lower figures on other data.\n"
        f"- Only these {len(labels)} labels exist for the model: "
        + ("each document gets a subset of them.\n" if config.multilabel else "every document gets one of them.\n")
        + f"- Words outside its {_dict(manifest.get('preprocess')).get('vocab_size', DASH)}-word vocabulary are "
        f"unknown to it{' (lowercased text)' if config.preprocess.lowercase else ''}; text past the caps is ignored.\n"
        f"- An empty document is scored as one unknown word, so it {empty} (a document of words outside the "
        "vocabulary fares about the same); do not act on such a prediction.\n"
        "- Attention weights, where the model has them (`han report`, `classifier.explain`), show where it put "
        "weight, not why it decided: they are no proof of causation (`han corpus-report` measures how faithful).\n"
    )


def _usage(run: RunDir, config: Config) -> str:
    where, python_path = shlex.quote(run.root.as_posix()), json.dumps(run.root.as_posix())
    column = config.data.text_columns[0]
    return (
        "## How to use\n\n"
        f"Documents to label go in a file with the text column {_code(column)} (CSV, TSV, JSON Lines or Parquet).\n\n"
        "```bash\n"
        f"han predict {where} new.csv --output preds.csv   # a label and p_<class> per row\n"
        f"han report {where} new.csv -o report.html       # which sentences and words drove each decision\n"
        "```\n\n"
        "```python\n"
        "import han\n\n"
        f"classifier = han.load({python_path})\n"
        'predictions = classifier.predict(["the text of a document"])\n'
        "print(predictions.labels, predictions.probabilities)\n"
        "```"
    )


def _reproduce(run: RunDir, config: Config) -> str:
    again = shlex.quote(run.root.as_posix() + "-again")
    repeatable = config.embeddings.workers == 1 and config.train.threads is not None
    note = (
        "With this config's `embeddings.workers` 1 and fixed `train.threads`, the same machine gives the same weights."
        if repeatable
        else "For bit-identical weights add `embeddings.workers=1 train.threads=1` (docs/guides/reproducibility.md)."
    )
    return (
        "## Reproduce\n\n"
        f"config.json holds every setting, the seed ({config.seed}) included; the data must match the fingerprint "
        f"above.\n\n```bash\nhan run {shlex.quote(run.config_path.as_posix())} --run-dir {again}\n```\n\n{note}"
    )


def render_model_card(run: RunDir) -> str:
    """The Markdown model card of a trained run, from its config, manifest, labels and metrics (if any)."""
    config, labels, manifest = run.load_config(), run.load_labels(), run.read_manifest()
    metrics = _dict(read_json(run.metrics_path)) if run.metrics_path.exists() else {}
    metrics = {key: value for key, value in metrics.items() if isinstance(value, dict)}
    name = run.root.resolve().name
    kind = "multi-label" if config.multilabel else f"{len(labels)}-class"
    intro = (
        f"# {markdown_cell(name)}\n\nA `{config.model.kind}` {kind} text classifier trained with "
        f"han on {_source(config.data.source)}. Written by han from the run directory's "
        "files (regenerated by `han evaluate`; edit a copy)."
    )
    sections = [
        intro,
        _description(run, config, manifest, labels),
        _training_data(config, manifest),
        _training(config, manifest),
        _labels(config, labels, manifest, metrics),
        _evaluation(config, metrics),
        _caps(config, manifest),
        _limitations(config, labels, manifest),
        _usage(run, config),
        _reproduce(run, config),
    ]
    return _front_matter(config, name, labels, metrics) + "\n" + "\n\n".join(s.rstrip() for s in sections) + "\n"


def written_model_card(run: RunDir, manifest: dict[str, Any] | None = None) -> Path | None:
    """RUN_DIR/MODEL_CARD.md when it exists and the manifest lists it (han wrote it), else None."""
    path = run.model_card_path
    listed = path.relative_to(run.root).as_posix() in run.listed_artifacts(manifest)
    return path if listed and path.is_file() else None


def write_model_card(run: RunDir) -> Path | None:
    """Write RUN_DIR/MODEL_CARD.md (atomically) and list it in the manifest; return its path.

    A MODEL_CARD.md that han did not write, or that was edited since, is kept as it is (None is returned).
    """
    path = run.model_card_path
    if path.exists() or path.is_symlink():
        try:
            run.verify_artifacts(path)
        except RunDirError:
            log.warning("%s: not the card han wrote (edited or placed by hand); kept as it is", path)
            return None
    write_text_atomic(path, render_model_card(run))
    run.record_artifacts(path)
    return path
