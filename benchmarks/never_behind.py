"""The rule that picks how the n-gram channel gets its weights by default, applied to an ablation's cells.

    python -m benchmarks.never_behind --dir ablation --corpora bbc,r8,clothing,reuters_time,reuters_rare,imdb

Reads DIR/<corpus>/<setting>/compare.json as `benchmarks.ablation` writes them: `linear` (the linear kind),
`shipped` (the channel's weights learnt, as each config ships) and `shipped+wide_fitted` (fitted, with
epoch 0), or the pairs `--candidates` names. A candidate *holds* on a corpus when its mean validation accuracy over seeds is at least the
linear kind's and its mean validation macro-F1 at most 2 points below it. The default is the candidate that
holds on more corpora; on a tie, the one with the higher mean validation macro-F1 over the corpora. Test
figures are printed beside, and decide nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

CANDIDATES = {"learnt": "shipped", "fitted": "shipped+wide_fitted"}
MACRO_F1_SLACK = 0.02
KEYS = ("validation_accuracy", "validation_macro_f1", "test_accuracy", "test_macro_f1")


def cell(root: Path, corpus: str, setting: str) -> dict[str, tuple[float, float]]:
    """(mean, sample std) over seeds of each of KEYS."""
    runs = json.loads((root / corpus / setting / "compare.json").read_text())["rows"][0]["runs"]
    return {
        key: (statistics.mean(r[key] for r in runs), statistics.stdev(r[key] for r in runs) if len(runs) > 1 else 0.0)
        for key in KEYS
    }


def holds(candidate: dict[str, tuple[float, float]], linear: dict[str, tuple[float, float]]) -> bool:
    """Validation accuracy at least the linear kind's, validation macro-F1 at most MACRO_F1_SLACK below it."""
    accuracy, f1 = candidate["validation_accuracy"][0], candidate["validation_macro_f1"][0]
    return accuracy >= linear["validation_accuracy"][0] and f1 >= linear["validation_macro_f1"][0] - MACRO_F1_SLACK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("ablation"))
    parser.add_argument("--corpora", default="bbc,r8,clothing,reuters_time,reuters_rare,imdb")
    parser.add_argument(
        "--candidates",
        default=",".join(f"{name}={setting}" for name, setting in CANDIDATES.items()),
        help="NAME=SETTING pairs (the ablation's settings), e.g. fitted=shipped+wide_fitted",
    )
    args = parser.parse_args()
    corpora = args.corpora.split(",")
    candidates = dict(pair.split("=", 1) for pair in args.candidates.split(","))
    print("| corpus | model | validation accuracy | validation macro-F1 | test accuracy | test macro-F1 | holds |")
    print("|---|---|---:|---:|---:|---:|---|")
    held = dict.fromkeys(candidates, 0)
    f1s: dict[str, list[float]] = {name: [] for name in candidates}
    for corpus in corpora:
        linear = cell(args.dir, corpus, "linear")
        rows = {"linear kind": linear} | {name: cell(args.dir, corpus, s) for name, s in candidates.items()}
        for name, figures in rows.items():
            shown = " | ".join(f"{figures[k][0]:.3f} ± {figures[k][1]:.3f}" for k in KEYS)
            verdict = ""
            if name in candidates:
                verdict = "yes" if holds(figures, linear) else "no"
                held[name] += verdict == "yes"
                f1s[name].append(figures["validation_macro_f1"][0])
            print(f"| {corpus} | {name} | {shown} | {verdict} |")
    means = {name: statistics.mean(values) for name, values in f1s.items()}
    default = max(candidates, key=lambda name: (held[name], means[name]))
    for name in candidates:
        print(f"{name}: holds on {held[name]} of {len(corpora)} corpora; mean validation macro-F1 {means[name]:.4f}")
    print(f"default by the rule: {default}")


if __name__ == "__main__":
    main()
