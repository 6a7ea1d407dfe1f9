"""How far a reader travels following one module: the project modules it imports and the places it leaves for them.

    python tests/reading_path.py han/training/train.py

Prints (1) the modules a reader must open to follow the file: itself and the project modules it imports;
(2) the references to names imported from them outside type annotations: each is a jump out of the file
and a return to it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def reading_path(path: Path) -> tuple[int, int]:
    """(modules to open, references to imported project names outside annotations) for `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "han":
            for alias in node.names:
                imported[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "han":
                    imported[(alias.asname or alias.name).split(".")[0]] = alias.name
    annotations: set[int] = set()
    for node in ast.walk(tree):
        for field in ("annotation", "returns"):
            if (sub := getattr(node, field, None)) is not None:
                annotations.update(id(inner) for inner in ast.walk(sub))
    references = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id in imported and isinstance(node.ctx, ast.Load)
    ]
    return len(set(imported.values())) + 1, sum(1 for node in references if id(node) not in annotations)


def main() -> None:
    """Print the reading path of each file named on the command line."""
    for name in sys.argv[1:]:
        modules, jumps = reading_path(Path(name))
        print(f"{name}: {modules} modules to open (itself and {modules - 1} it imports), {jumps} jumps out")


if __name__ == "__main__":
    main()
