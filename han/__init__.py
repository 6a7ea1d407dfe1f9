"""han: hierarchical attention networks for document classification (the library; see README.md)."""
