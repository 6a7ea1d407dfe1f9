"""Training from tables held in memory (`han.train`): the rows are written into the run directory, then `han run`.

A pandas DataFrame, a pyarrow Table, a `datasets.Dataset`, or a mapping of split name -> one of those (a
`datasets.DatasetDict`) is written as Parquet under RUN_DIR/input/ (`han.store.ownership.INPUT_NAME`: claimed
with the run directory, listed in the manifest, kept by `--overwrite` as the run's input), and the resolved
config's `data.source` names those files. From there it is `run_all`: the same loading, validation,
preprocessing, training and evaluation as for a file; config.json repeats the run (`han run RUN_DIR/config.json
--run-dir OTHER`) and the manifest's data fingerprint covers these bytes. Parquet keeps column types as they
were (numbers, lists of labels, a Dataset's ClassLabel names), where a CSV would turn them into text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from han.config import Config, DataConfig, config_from_dict, load_config
from han.errors import ConfigError, DataError
from han.progress import Progress
from han.store.ownership import INPUT_NAME
from han.store.rundir import RunDir
from han.util.atomic import atomic_dir
from han.util.lock import folder_lock
from han.workflows.run import RunResult, run_all

if TYPE_CHECKING:
    import pyarrow as pa

ONE_TABLE = "data"  # input/data.parquet: the file of a table that is not split by name
SPLIT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a split name is a file name under input/
ACCEPTED = (
    "a pandas DataFrame, a pyarrow Table, a datasets Dataset or DatasetDict, or a dict of split name -> one of those"
)


def _table(data: Any, where: str) -> pa.Table:
    """One table as Arrow: a pandas DataFrame (its index dropped), a pyarrow Table or a datasets Dataset."""
    import pyarrow as pa

    kind = type(data)
    module = kind.__module__.partition(".")[0]
    if isinstance(data, pa.Table):
        return data
    if module == "pandas" and kind.__name__ == "DataFrame":
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
            raise DataError(
                f"{where}: a column cannot be stored as Arrow ({error}); give each column one type"
            ) from None
    if module == "datasets" and kind.__name__ == "Dataset":
        table: pa.Table = data.with_format("arrow")[
            :
        ]  # its rows in order (a select() or shuffle() applied), features kept
        return table
    raise DataError(f"{where} is {kind.__name__}; pass {ACCEPTED}")


def input_tables(data: Any) -> dict[str | None, pa.Table]:
    """The rows handed to `han.train` as Arrow tables: {None: table}, or split name -> table for a mapping."""
    if isinstance(data, Mapping):
        if not data:
            raise DataError(f"data is an empty {type(data).__name__}; pass {ACCEPTED}")
        tables: dict[str | None, pa.Table] = {}
        for split, part in data.items():
            if not isinstance(split, str) or not SPLIT_NAME.fullmatch(split):
                raise DataError(
                    f"data[{split!r}]: a split name must be letters, digits, '_', '.' or '-' (it names a file)"
                )
            tables[split] = _table(part, f"data[{split!r}]")
        return tables
    return {None: _table(data, "data")}


def check_columns(tables: dict[str | None, pa.Table], config: DataConfig) -> None:
    """Every column the config reads (text, label or label_columns, split_column) is in every table; a
    `DataError` names the missing one and the columns there are."""
    needed = [(column, "text=") for column in config.text_columns]
    needed += [
        (column, "label=" if not config.label_columns else "data.label_columns")
        for column in config.label_source_columns
    ]
    if config.split_column:
        needed.append((config.split_column, "data.split_column"))
    for split, table in tables.items():
        where = "data" if split is None else f"data[{split!r}]"
        present = table.column_names
        for column, setting in needed:
            if column not in present:
                shown = ", ".join(map(repr, present[:30])) + (" ..." if len(present) > 30 else "")
                raise DataError(
                    f"{where} has no column {column!r} (its columns: {shown or 'none'}); name the right one with {setting}"
                )


def train_config(
    config: str | Path | Config | None,
    overrides: list[str],
    files: dict[str | None, Path],
    text: str | list[str] | None,
    label: str | None,
) -> Config:
    """The resolved config of a `han.train`: `config` (a file, a `Config`, or han's defaults) with `data.source`
    naming `files`, the text and label columns given, then the dotted `overrides`, validated like a file's."""
    for item in overrides:
        if item.partition("=")[0].strip() == "data.source":
            raise ConfigError(
                f"override {item!r}: han.train reads the data it is given; drop data.source (or call han.run on a file)"
            )
    source: str | dict[str, str] = {split: str(path) for split, path in files.items() if split is not None}
    if None in files:
        source = str(files[None])
    ours = [f"data.source={json.dumps(source)}", "data.name=null", "data.revision=null"]  # JSON is YAML: any path
    if text is not None:
        ours.append(f"data.text_column={json.dumps(text)}")
    if label is not None:
        ours.append(f"data.label_column={json.dumps(label)}")
    if config is None:
        return config_from_dict({}, "han.train", [*ours, *overrides])
    if isinstance(config, Config):
        return config_from_dict(config.model_dump(mode="json"), "config", [*ours, *overrides])
    return load_config(config, [*ours, *overrides])


def train_from_tables(
    data: Any,
    run_dir: Path,
    config: str | Path | Config | None = None,
    overrides: list[str] | None = None,
    *,
    text: str | list[str] | None = None,
    label: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Write `data` under RUN_DIR/input/ as Parquet and run every stage on it (`run_all`), as `han run` would
    on the same rows in a file. `run_dir` must be new or empty, or a han run directory with `overwrite`."""
    tables = input_tables(data)  # in memory: nothing is written before the data and the config are checked
    run = RunDir(Path(run_dir))
    folder = run.root.absolute() / INPUT_NAME
    files = {split: folder / f"{split or ONE_TABLE}.parquet" for split in tables}
    resolved = train_config(config, list(overrides or []), files, text, label)
    check_columns(tables, resolved.data)
    with folder_lock(run.root, "han train"):
        run.claim(overwrite)  # a new or empty folder, or (overwrite) a han run directory emptied of what han made
        _write_tables(tables, files, folder)
        result = run_all(resolved, run.root, progress)
        run.record_artifacts(*(run.root / INPUT_NAME / path.name for path in files.values()))
    return result


def _write_tables(tables: dict[str | None, pa.Table], files: dict[str | None, Path], folder: Path) -> None:
    """The tables as Parquet files under `folder` (replaced as a whole, atomically)."""
    import pyarrow.parquet as pq

    with atomic_dir(folder) as tmp:
        for split, table in tables.items():
            pq.write_table(table, tmp / files[split].name)
