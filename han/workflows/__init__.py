"""Stages composed; nothing in han imports these but `han.api`.

`run` is `han run` (preprocess, train, evaluate); `sharding` splits preprocess and predict over
processes; `compare` and `tune` train many runs over one shared preprocessing (`workspace`);
`tracking` logs a run to MLflow.
"""
