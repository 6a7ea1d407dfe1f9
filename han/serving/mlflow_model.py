"""A trained run as an MLflow `pyfunc` model, logged as "models from code": MLflow keeps this file, never a pickle.

`han.workflows.tracking` logs it with `mlflow.pyfunc.log_model(python_model=<this file>, artifacts={"run": <folder>})`,
the folder holding the run directory files that loading needs (`RUN_FILES`: config, labels, vocabulary,
manifest and the best weights as safetensors). When MLflow loads the model it runs this file as model
code (under a module name of its own), which hands `HanPyfuncModel` to `mlflow.models.set_model`;
`load_context` then loads the folder like `han predict` loads a run directory (verified against its
manifest), and `predict` scores texts exactly as `han predict` does.

    model = mlflow.pyfunc.load_model("runs:/<run id>/model")
    model.predict(pandas.DataFrame({"text": ["Shares rose ...", "The match ..."]}))
    # -> DataFrame: label, p_<class> for each class (float64), one row per text

The input columns are the run's own `data.text_column` (`text` above; a run trained on `review_body` takes
a `review_body` column, one trained on `[title, body]` takes both, joined per row by `data.text_separator`
exactly as `han predict` joins them, `han.data.records.join_text`): the signature names them, and a frame
without them is refused, never read from another column (MLflow refuses it against the signature first;
called directly, `predict` raises a DataError naming the missing column).

A multi-label run (task: multilabel) gives a `labels` string column instead of `label`: each text's
predicted label set (at the run's thresholds, thresholds.json being among the copied files) joined by
`han.serving.inference.label_separator` (the run's `data.label_separator`, default ";"), exactly the "labels"
cell `han predict` writes in CSV ("" for no label); the `p_<label>` columns are each label's own probability.

Importing this module imports mlflow and pandas: only `han.workflows.tracking` (and MLflow) import it.
"""

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, set_model
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, Schema, TensorSpec

from han.config import DataConfig
from han.data.records import join_text, non_text_kind
from han.errors import DataError
from han.serving.inference import PREDICT_CHUNK_SIZE, label_separator, predict_texts
from han.serving.trained import TrainedRun, load_trained_run
from han.store.rundir import RunDir

ARTIFACT_KEY = "run"  # context.artifacts key of the copied run directory files
EXAMPLE_TEXTS = ["A first document. Its second sentence.", "Another document."]


def input_example(data: DataConfig) -> pd.DataFrame:
    """Two short documents in the run's own text column(s) (MLflow checks the logged model predicts them)."""
    return pd.DataFrame({column: EXAMPLE_TEXTS for column in data.text_columns})


def run_files(run: RunDir) -> list[Path]:
    """The files of a run directory that loading its best weights needs, as paths inside `run.root`
    (with a multi-label run's thresholds.json)."""
    files = [run.config_path, run.labels_path, run.vocab_path, run.manifest_path, run.best_weights_path]
    return [*files, run.thresholds_path] if run.load_config().multilabel else files


def copy_run_files(run: RunDir, target: Path) -> Path:
    """Copy `run_files(run)` into `target`, keeping their paths relative to the run directory; return `target`."""
    for path in run_files(run):
        destination = target / path.relative_to(run.root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    return target


def label_column(multilabel: bool) -> str:
    """The output column of the prediction: `label`, or `labels` (the joined label set) for a multi-label run."""
    return "labels" if multilabel else "label"


def model_signature(classes: list[str], text_columns: list[str], multilabel: bool = False) -> ModelSignature:
    """Input: the run's text column(s) (`data.text_columns`) as strings; output: the predicted `label` (multi-label:
    `labels`, the joined label set) and one `p_<class>` double column per class."""
    outputs: list[ColSpec | TensorSpec] = [ColSpec("string", label_column(multilabel))]
    outputs += [ColSpec("double", f"p_{name}") for name in classes]
    inputs = Schema([ColSpec("string", column) for column in text_columns])
    return ModelSignature(inputs=inputs, outputs=Schema(outputs))


def _frame_texts(frame: pd.DataFrame, data: DataConfig) -> list[str]:
    """Each row's text columns joined as `han predict` joins a file's (missing cells are empty parts)."""
    columns = data.text_columns
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        names = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(
            f"model input: column(s) {', '.join(missing)} not found (columns: {names}); "
            f"the run reads data.text_column {', '.join(columns)}"
        )
    rows = zip(*(frame[c].tolist() for c in columns), strict=True)
    texts = []
    for index, parts in enumerate(rows):
        for column, value in zip(columns, parts, strict=True):
            kind = None if value is None or (isinstance(value, float) and value != value) else non_text_kind(value)
            if kind is not None:
                raise DataError(f"model input row {index}: column {column!r} is {kind}, not text; pass strings")
        texts.append(join_text(parts, data.text_separator))
    return texts


def input_texts(model_input: Any, data: DataConfig) -> list[str]:
    """The texts of a model input: a DataFrame's text column(s) (the run's `data.text_columns`, several joined
    by `data.text_separator`), or a Series or list of strings taken as whole documents."""
    if isinstance(model_input, pd.DataFrame):
        return _frame_texts(model_input, data)
    items: Iterable[Any]
    if isinstance(model_input, pd.Series):
        items = model_input.tolist()
    elif isinstance(model_input, str):
        items = [model_input]
    else:
        items = list(model_input)
    texts = list(items)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"model input row {index}: {type(text).__name__}, not a string; pass one text per row")
    return texts


def prediction_frame(probabilities: np.ndarray, classes: list[str], trained: TrainedRun | None = None) -> pd.DataFrame:
    """A DataFrame of the most probable class (`label`) and every class's probability (`p_<class>`, float64).

    With a multi-label `trained` run: its predicted label sets at its thresholds instead, joined by its
    label separator, in a `labels` column.
    """
    if trained is not None and trained.multilabel:  # the sets from the probabilities as scored, like `han predict`
        chosen = trained.predicted_sets(probabilities.reshape(-1, len(classes)))
        separator = label_separator(trained)
        joined = [separator.join(classes[i] for i in np.flatnonzero(row)) for row in chosen]
        probabilities = probabilities.astype(np.float64).reshape(-1, len(classes))
        frame = pd.DataFrame({label_column(True): pd.Series(joined, dtype=object)})
    else:
        probabilities = probabilities.astype(np.float64).reshape(-1, len(classes))
        frame = pd.DataFrame({"label": [classes[i] for i in probabilities.argmax(axis=1)]})
    for column, name in enumerate(classes):
        frame[f"p_{name}"] = probabilities[:, column]
    return frame


class HanPyfuncModel(PythonModel):
    """A han run directory served through MLflow's pyfunc interface: texts in, label (multi-label: the joined
    label set) and probabilities out."""

    trained: TrainedRun

    def load_context(self, context: PythonModelContext) -> None:
        """Load the copied run directory files (checked against their manifest), as `han predict` loads a run."""
        self.trained = load_trained_run(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Label (multi-label: the joined label set) and class probabilities of each text (see `input_texts`
        for the accepted inputs)."""
        texts = input_texts(model_input, self.trained.config.data)
        classes = list(self.trained.label_names)
        if not texts:
            return prediction_frame(np.zeros((0, len(classes)), dtype=np.float32), classes, self.trained)
        scored = np.stack(list(predict_texts(self.trained, texts, PREDICT_CHUNK_SIZE)))
        return prediction_frame(scored, classes, self.trained)


if __name__ not in ("han.serving.mlflow_model", "__main__"):  # run by MLflow as the model's code (its own module name)
    set_model(HanPyfuncModel())
