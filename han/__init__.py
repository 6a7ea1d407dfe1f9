"""han: hierarchical attention networks for document classification (the library; see README.md and docs/).

`han.load`, `han.run` and `han.train` (han/api.py) are imported on first use, so `import han` stays instant and a
cached `han preprocess` imports no heavy library. `han.__version__` is the installed distribution's version
(`han-classifier`; han/util/distribution.py), "unknown" in a source tree that was never installed.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("load", "run", "train", "Classifier", "Predictions", "Explanation"):
        from han import api

        return getattr(api, name)
    if name == "__version__":
        from han.util.distribution import installed_version

        return installed_version() or "unknown"
    raise AttributeError(f"module 'han' has no attribute {name!r}")
