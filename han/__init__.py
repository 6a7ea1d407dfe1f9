"""han: hierarchical attention networks for document classification (the library; see README.md and docs/).

`han.load` and `han.run` (han/api.py) are imported on first use, so `import han` stays instant and a
cached `han preprocess` imports no heavy library.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("load", "run", "Classifier", "Predictions", "Explanation"):
        from han import api

        return getattr(api, name)
    raise AttributeError(f"module 'han' has no attribute {name!r}")
