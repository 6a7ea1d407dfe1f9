"""The ablation: what each setting buys on real corpora, short and long, over several seeds.

    python -m benchmarks.ablation --dir ablation                      # every corpus x every setting, 3 seeds
    python -m benchmarks.ablation --corpora bbc,reuters_time --settings learnt,fitted --dir ablation

Each (corpus, setting) cell is one `han compare CONFIG OVERRIDES --models KIND --seeds N --dir
DIR/<corpus>/<setting>` in its own process (the checkout's han: `python -m pipelines`); a cell whose
compare.json exists is not run again, so an interrupted ablation continues where it stopped. The table
(validation accuracy and macro-F1 and test accuracy, mean ± sample std over seeds, and test macro-F1) is
printed and written to DIR/ablation.md.

Corpora: the shipped BBC News, Reuters R8 and clothing configs, and two long-document stand-ins with
time-like splits built from the shared data (benchmarks/standin.py: `bbc_time`, `reuters_time`, written
into DIR on first use) and read with the BBC and R8 configs, and `imdb`, the IMDB-sized stand-in of the
speed figures (docs/results/performance.md: clothing reviews of one rating joined to IMDB's length) read with the clothing config. Settings override the config's model
(`off`, `learnt`, `fitted`: model.wide and model.wide_weights, without word dropout; `linear`: kind
linear), or with `+word_dropout` (model.word_dropout=0.2, the default) or `+word_dropout_0.4`; `shipped` is the
corpus's config as it is; `linear+uncapped`: the linear kind with caps of 400 sentences x 400 words (what n-gram
features read from the whole document would give it); `+extra_text`: word2vec also reads the validation and test text
(embeddings.extra_text.splits, never their labels); `+subwords`: FastText vectors (embeddings.subwords); `+weight_decay_X`: train.weight_decay=X; `+frozen_embeddings`: model.freeze_embeddings; `+lr_X`: train.lr=X; `+ensemble_3`: three networks trained together, scored as their mean (model.ensemble); `+wide`,
`+wide_fitted`: the n-gram channel on (model.wide) with its weights learnt or fitted; `+wide_lr_X`: on and learnt at
train.wide_lr=X (`auto`: 1 / the steps of an epoch); `+label_smoothing_X`: train.label_smoothing=X; `+dropout_X`: model.dropout=X; `+out_of_fold`, `+calibrated`, `+in_sample`: model.wide_training_scores=out_of_fold, calibrated, in_sample; `+unlabelled`: word2vec also reads in-domain text outside the corpus
(embeddings.extra_text.files; reuters_time only: benchmarks/standin.py reuters_unlabelled).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.standin import (
    ROOT,
    write_bbc_time,
    write_imdb,
    write_reuters_rare,
    write_reuters_time,
    write_reuters_unlabelled,
)

CORPORA = {
    "bbc": ["configs/bbc.yaml"],
    "r8": ["configs/reuters_r8.yaml"],
    "clothing": ["configs/clothing.yaml"],
    "bbc_time": ["configs/bbc.yaml", "data.source={dir}/bbc_time.csv", "data.split_column=split"],
    "reuters_time": ["configs/reuters_r8.yaml", "data.source={dir}/reuters_time.csv"],
    "reuters_rare": ["configs/reuters_r8.yaml", "data.source={dir}/reuters_rare.csv"],
    # read as benchmarks.realtext reads it: the clothing config, 30 sentences
    "imdb": [
        "configs/clothing.yaml",
        "data.source={dir}/imdb.csv",
        "data.text_column=text",
        "preprocess.max_sentences=30",
    ],
}
STAND_INS = {
    "bbc_time": write_bbc_time,
    "reuters_time": write_reuters_time,
    "reuters_rare": write_reuters_rare,
    "imdb": write_imdb,
}
UNLABELLED = {
    "reuters_time": write_reuters_unlabelled
}  # in-domain text outside the corpus: DIR/<corpus>_unlabelled.jsonl
NO_WORD_DROPOUT = "model.word_dropout=0"
EXTRA_TEXT = "embeddings.extra_text.splits=[validation,test]"  # word2vec also reads those splits' text
UNLABELLED_FILE = "embeddings.extra_text.files=[{dir}/{corpus}_unlabelled.jsonl]"  # ... or the corpus's unlabelled text
SETTINGS = {
    "off": ["model.wide=false", NO_WORD_DROPOUT],
    "learnt": ["model.wide=true", "model.wide_weights=learnt", NO_WORD_DROPOUT],
    "fitted": ["model.wide=true", "model.wide_weights=fitted", NO_WORD_DROPOUT],
    "off+word_dropout": ["model.wide=false", "model.word_dropout=0.2"],
    "learnt+word_dropout": ["model.wide=true", "model.wide_weights=learnt", "model.word_dropout=0.2"],
    "fitted+word_dropout": ["model.wide=true", "model.wide_weights=fitted", "model.word_dropout=0.2"],
    "learnt+word_dropout_0.4": ["model.wide=true", "model.wide_weights=learnt", "model.word_dropout=0.4"],
    "shipped": [],  # the corpus's config as it is
    "shipped+extra_text": [EXTRA_TEXT],
    "fitted+extra_text": ["model.wide=true", "model.wide_weights=fitted", NO_WORD_DROPOUT, EXTRA_TEXT],
    "shipped+unlabelled": [UNLABELLED_FILE],
    "fitted+unlabelled": ["model.wide=true", "model.wide_weights=fitted", NO_WORD_DROPOUT, UNLABELLED_FILE],
    "shipped+subwords": ["embeddings.subwords=true"],
    "shipped+weight_decay_1e-5": ["train.weight_decay=1e-5"],
    "shipped+weight_decay_3e-5": ["train.weight_decay=3e-5"],
    "shipped+weight_decay_1e-4": ["train.weight_decay=1e-4"],
    "shipped+frozen_embeddings": ["model.freeze_embeddings=true"],
    "shipped+lr_0.001": ["train.lr=0.001"],
    "shipped+lr_0.004": ["train.lr=0.004"],
    "fitted+subwords": ["model.wide=true", "model.wide_weights=fitted", NO_WORD_DROPOUT, "embeddings.subwords=true"],
    "shipped+ensemble_3": ["model.ensemble=3"],
    "shipped+wide": [
        "model.wide=true",
        "model.wide_weights=learnt",
    ],  # the n-gram channel, learnt, on top of the corpus's config
    "shipped+wide_lr_0.002": ["model.wide=true", "model.wide_weights=learnt", "train.wide_lr=0.002"],
    "shipped+wide_fitted": ["model.wide=true", "model.wide_weights=fitted"],
    "shipped+wide_lr_auto": [
        "model.wide=true",
        "model.wide_weights=learnt",
        "train.wide_lr=auto",
    ],  # 1 / the steps of an epoch
    "fitted+ensemble_3": ["model.wide=true", "model.wide_weights=fitted", NO_WORD_DROPOUT, "model.ensemble=3"],
    "fitted+unlabelled+ensemble_3": [
        "model.wide=true",
        "model.wide_weights=fitted",
        NO_WORD_DROPOUT,
        UNLABELLED_FILE,
        "model.ensemble=3",
    ],
    "shipped+label_smoothing_0.1": ["train.label_smoothing=0.1"],
    "shipped+wide_fitted+out_of_fold": [
        "model.wide=true",
        "model.wide_weights=fitted",
        "model.wide_training_scores=out_of_fold",
    ],
    "shipped+wide_fitted+calibrated": [
        "model.wide=true",
        "model.wide_weights=fitted",
        "model.wide_training_scores=calibrated",
    ],
    "shipped+wide_fitted+in_sample": [
        "model.wide=true",
        "model.wide_weights=fitted",
        "model.wide_training_scores=in_sample",
    ],  # the default channel on a config that sets another (the R8 config's calibrated)
    "shipped+wide_fitted+word_dropout_0.4": ["model.wide=true", "model.wide_weights=fitted", "model.word_dropout=0.4"],
    "shipped+wide_fitted+dropout_0.5": ["model.wide=true", "model.wide_weights=fitted", "model.dropout=0.5"],
    "shipped+wide_fitted+weight_decay_1e-5": [
        "model.wide=true",
        "model.wide_weights=fitted",
        "train.weight_decay=1e-5",
    ],
    "shipped+wide_fitted+label_smoothing_0.1": [
        "model.wide=true",
        "model.wide_weights=fitted",
        "train.label_smoothing=0.1",
    ],
    "linear": [],
    # the linear kind reading (nearly) whole documents: caps far above any corpus here's documents
    "linear+uncapped": ["preprocess.max_sentences=400", "preprocess.max_words=400"],
}


def run_cell(corpus: str, setting: str, seeds: int, root: Path) -> Path:
    """`han compare` of one corpus under one setting (skipped when its compare.json exists)."""
    target = root / corpus / setting
    if (target / "compare.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    if corpus in STAND_INS and not (root / f"{corpus}.csv").exists():
        STAND_INS[corpus](root / f"{corpus}.csv")
    if "+unlabelled" in setting:
        if corpus not in UNLABELLED:
            raise SystemExit(f"{setting}: no unlabelled text for {corpus} (only {', '.join(UNLABELLED)})")
        if not (root / f"{corpus}_unlabelled.jsonl").exists():
            UNLABELLED[corpus](root / f"{corpus}_unlabelled.jsonl")
    config, *overrides = (
        part.format(dir=root.resolve(), corpus=corpus) for part in CORPORA[corpus] + SETTINGS[setting]
    )
    kind = "linear" if setting.split("+")[0] == "linear" else "han"
    command = [sys.executable, "-m", "pipelines", "compare", config, *overrides]
    command += ["--models", kind, "--seeds", str(seeds), "--dir", str(target.resolve())]
    print(" ".join(command), flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{setting}.log", "w", encoding="utf-8") as log:
        subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    return target


def summary(target: Path) -> dict[str, str]:
    """Mean ± std over seeds of a cell's validation accuracy, validation macro-F1 and test accuracy, and its mean
    test macro-F1."""
    runs = json.loads((target / "compare.json").read_text())["rows"][0]["runs"]

    def mean_std(key: str) -> str:
        values = [run[key] for run in runs]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {spread:.3f}"

    f1 = statistics.mean(run["test_macro_f1"] for run in runs)
    return {
        "validation": mean_std("validation_accuracy"),
        "validation_f1": mean_std("validation_macro_f1"),
        "test": mean_std("test_accuracy"),
        "f1": f"{f1:.3f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("ablation"))
    args = parser.parse_args()
    corpora, settings = args.corpora.split(","), args.settings.split(",")
    unknown = sorted(set(corpora) - set(CORPORA)) + sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise SystemExit(
            f"unknown corpus or setting: {', '.join(unknown)} (corpora: {', '.join(CORPORA)}; "
            f"settings: {', '.join(SETTINGS)})"
        )
    lines = [
        "| corpus | setting | validation accuracy | validation macro-F1 | test accuracy | test macro-F1 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for corpus in corpora:
        for setting in settings:
            cell = summary(run_cell(corpus, setting, args.seeds, args.dir))
            row = f"| {corpus} | {setting} | {cell['validation']} | {cell['validation_f1']} | {cell['test']} | {cell['f1']} |"
            lines.append(row)
            print(lines[-1], flush=True)
    (args.dir / "ablation.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
