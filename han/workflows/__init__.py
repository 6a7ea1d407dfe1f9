"""Stages composed; nothing in han imports these but `han.api`.

`run` is `han run` (preprocess, train, evaluate); `in_memory` is `han.train` (rows held in memory
written into the run directory, then `run`); `sharding` splits preprocess and predict over
processes; `compare` and `tune` train many runs over one shared preprocessing (`workspace`);
`tracking` logs a run to MLflow.
"""
