"""The import graph of han/ and pipelines/: edges, floors and cycles.

    python tests/import_graph.py             # one line per module: floor, module, what it imports
    python tests/import_graph.py --packages  # the same between packages (han's subpackages, its top-level modules)

Every `import` counts, including those inside functions and under TYPE_CHECKING: a loop hidden in a
function is still a loop. A module's floor is 0 when it imports no project module, else one more
than the highest floor it imports. tests/test_layout.py asserts the boundaries on this graph.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("han", "pipelines")


def module_name(path: Path) -> str:
    """`han/reports/pages.py` -> `han.reports.pages`; a package's `__init__.py` -> the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports (a `from package import module` counts as the module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] in PACKAGES and modules[name].name != "__init__.py":
                found.add(name)
    found.discard(module_name(path))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    modules = project_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def package_of(module: str) -> str:
    """The package a module belongs to: `han.text.segment` -> `han.text`; a top-level module of han
    (`han.config`, `han.api`) is its own node; anything under `pipelines` is `pipelines`."""
    parts = module.split(".")
    if parts[0] != "han":
        return parts[0]
    return ".".join(parts[:2])


def package_graph(graph: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """Package -> the other packages its modules import."""
    graph = import_graph() if graph is None else graph
    packages: dict[str, set[str]] = {}
    for module, imported in graph.items():
        if module == "han":  # the lazy `han.load` hook: the package's face, above everything
            continue
        own = package_of(module)
        packages.setdefault(own, set()).update(package_of(m) for m in imported if m != "han")
    for own, targets in packages.items():
        targets.discard(own)
    return packages


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each module's floor (longest import chain below it); the graph must have no cycle."""
    result: dict[str, int] = {}

    def floor(node: str) -> int:
        if node not in result:
            result[node] = 1 + max((floor(t) for t in graph[node]), default=-1)
        return result[node]

    for node in graph:
        floor(node)
    return result


def main() -> None:
    """Print the graph (of modules, or of packages with --packages), floor by floor, and any cycle."""
    graph = package_graph() if "--packages" in sys.argv[1:] else import_graph()
    loops = cycles(graph)
    for loop in loops:
        print("CYCLE:", " <-> ".join(loop))
    if loops:
        raise SystemExit(1)
    levels = floors(graph)
    for name in sorted(graph, key=lambda n: (levels[n], n)):
        print(f"{levels[name]:2d}  {name:30s} {' '.join(sorted(graph[name]))}")
    kind = "packages" if "--packages" in sys.argv[1:] else "modules"
    print(f"{len(graph)} {kind}, {max(levels.values()) + 1} floors, no cycle")


if __name__ == "__main__":
    main()
