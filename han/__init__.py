"""han: hierarchical attention networks for document classification."""

__version__ = "0.1.0"
