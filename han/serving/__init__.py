"""A trained run in use.

`trained` loads a run directory (config, vocabulary, model and the text pipeline); `inference` holds the
evaluate and predict stages; `mlflow_model` wraps a run as an MLflow pyfunc model.
"""
