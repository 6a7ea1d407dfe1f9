"""`model.kind: linear` against the TF-IDF figures of ../shared/data/README.md, and scikit-learn on the same split.

    python -m benchmarks.linear_reference

For clothing reviews and Reuters R8 (the `text` column, the files' own train/test split; R8 carves
10% of train for validation): han's `linear` kind with scikit-learn's kind of token
(`linear_tokens: words`) and defaults (`linear_min_df: 1`, `linear_c: 1`), and scikit-learn's own
`TfidfVectorizer(ngram_range=(1, 2))` + `LinearSVC()` on the raw text of exactly han's training and test documents. One JSON line each, with the shared README's
figures beside them.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import emit
from han.config import load_config
from han.data.splits import load_data
from han.workflows.run import run_all

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
README = {"clothing": (0.644, 0.423), "reuters_r8": (0.970, 0.909)}
OVERRIDES = [
    "data.text_column=text",
    "embeddings.source=random",
    "model.kind=linear",
    "model.linear_tokens=words",
    "model.linear_min_df=1",  # scikit-learn's defaults: every n-gram, C = 1
    "model.linear_c=1",
]


def scikit_learn_on_raw_text(config) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """TfidfVectorizer(1-2) + LinearSVC() on the raw text of han's train and test splits."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.svm import LinearSVC

    data = load_data(config.data, config.seed)
    train, test = data.splits["train"], data.splits["test"]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2))
    classifier = LinearSVC().fit(vectorizer.fit_transform(list(train.texts)), np.asarray(train.labels))
    predicted = classifier.predict(vectorizer.transform(list(test.texts)))
    labels = np.asarray(test.labels)
    return float(accuracy_score(labels, predicted)), float(f1_score(labels, predicted, average="macro"))


def main() -> None:
    """Measure both datasets."""
    for name, (accuracy, macro_f1) in README.items():
        config = load_config(ROOT / "configs" / f"{name}.yaml", OVERRIDES)
        with tempfile.TemporaryDirectory() as folder:
            run_all(config, Path(folder) / "run")
            test = json.loads((Path(folder) / "run" / "metrics.json").read_text())["test"]
        sk_accuracy, sk_macro_f1 = scikit_learn_on_raw_text(config)
        emit(
            {
                "benchmark": "linear_reference",
                "dataset": name,
                "han_linear_accuracy": test["accuracy"],
                "han_linear_macro_f1": test["macro_f1"],
                "readme_accuracy": accuracy,
                "readme_macro_f1": macro_f1,
                "sklearn_raw_text_accuracy": sk_accuracy,
                "sklearn_raw_text_macro_f1": sk_macro_f1,
                "test_documents": test["documents"],
            }
        )


if __name__ == "__main__":
    main()
