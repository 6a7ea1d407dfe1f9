"""The layout holds, as rules between packages: no import loop between packages (or modules), the models
import only config, errors and util, stages never import each other, han never imports pipelines, the top
level of han/ is its public face only, and package __init__ files hold a docstring naming every module."""

import ast
import subprocess
import sys

import han.models.hierarchical
import han.store.vocab
from import_graph import ROOT, cycles, import_graph, package_graph, package_of, project_modules

# The stages of the pipeline: each meets the others only in the run directory and in lower layers.
STAGES = {
    "han.text.preprocess": "preprocess",
    "han.text.inspection": "data inspect",
    "han.training.train": "train",
    "han.serving.inference": "evaluate/predict",
    "han.reports.output": "report",
}
# The public face: the only modules at han/'s top level.
PUBLIC_FACE = {"han", "han.api", "han.config", "han.errors", "han.progress", "han.spark"}


def test_the_package_graph_has_no_cycle():
    assert cycles(package_graph()) == []


def test_the_module_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_package_graph_checks_what_it_says():
    # A loop between two packages' modules is a cycle between the packages even when no module loop exists.
    graph = {"han.a.x": {"han.b.y"}, "han.b.y": set(), "han.b.z": {"han.a.w"}, "han.a.w": set()}
    assert cycles(graph) == []
    assert cycles(package_graph(graph)) == [["han.a", "han.b"]]
    assert package_of("han.text.segment") == "han.text" and package_of("han.config") == "han.config"
    assert package_of("pipelines.cli") == "pipelines"


def test_models_import_only_config_errors_and_util():
    allowed = {"han.config", "han.errors", "han.util"}
    assert package_graph()["han.models"] <= allowed
    assert han.models.hierarchical.PAD_ID == han.store.vocab.PAD_ID


def stage_closure(graph: dict[str, set[str]], module: str) -> set[str]:
    """Every project module `module` imports, directly or through others."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for imported in graph[todo.pop()]:
            if imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


def test_stages_never_import_each_other():
    graph = import_graph()
    for module, stage in STAGES.items():
        others = {m for m, s in STAGES.items() if s != stage}
        reached = stage_closure(graph, module) & others
        assert not reached, f"{module} ({stage}) imports {sorted(reached)}"


def test_nothing_below_imports_the_workflows_or_the_api():
    for package, imported in package_graph().items():
        if package.startswith("han.") and package not in ("han.workflows", "han.api"):
            assert not imported & {"han.workflows", "han.api"}, f"{package} imports {sorted(imported)}"


def test_han_never_imports_pipelines():
    for package, imported in package_graph().items():
        if package.startswith("han"):
            assert "pipelines" not in imported, package


def test_han_top_level_is_its_public_face():
    top = {name for name, path in project_modules().items() if path.parent == ROOT / "han"}
    packages = {name for name, path in project_modules().items() if path.name == "__init__.py"}
    assert top - packages == PUBLIC_FACE - {"han"}


def test_package_init_files_are_a_docstring_naming_every_module():
    # A cached `han preprocess` must import no heavy library; an __init__ that imports would defeat it.
    # han/__init__.py alone holds a module `__getattr__` that imports han.api on first use (`han.load`).
    for path in project_modules().values():
        if path.name != "__init__.py":
            continue
        body = ast.parse(path.read_text(encoding="utf-8")).body
        lazy = path == ROOT / "han" / "__init__.py"
        for node in body:
            docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            typing_only = isinstance(node, ast.ImportFrom) and node.module == "typing"
            attribute_hook = isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
            assert docstring or (lazy and (typing_only or attribute_hook)), (path, ast.dump(node)[:80])
        if path.parent.parent == ROOT / "han":  # a subpackage: its docstring is its map
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            modules = sorted(p.stem for p in path.parent.glob("*.py") if p.name != "__init__.py")
            missing = [m for m in modules if f"`{m}`" not in doc]
            assert not missing, f"{path}: the docstring does not name {missing}"


def test_import_han_imports_nothing_heavy():
    code = "import sys, han; print(sorted(m for m in ('torch', 'spacy', 'han.api') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


def test_the_package_graph_prints_without_a_cycle():
    done = subprocess.run(
        [sys.executable, "tests/import_graph.py", "--packages"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip().endswith("no cycle")
    assert " han.models " in done.stdout and "han.text" in done.stdout


def test_the_training_loop_has_no_branch_for_ranks_and_a_short_reading_path():
    from reading_path import reading_path

    source = (ROOT / "han" / "training" / "train.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    tests_of_rank = [
        ast.unparse(node.test)
        for node in ast.walk(tree)
        if isinstance(node, (ast.If, ast.IfExp))
        and any(w in ast.unparse(node.test) for w in ("is_main", "world_size", "rank"))
    ]
    assert tests_of_rank == [], "the loop branches on ranks; put it behind han.training.distributed.Ranks"
    modules, jumps = reading_path(ROOT / "han" / "training" / "train.py")
    assert modules < 21 and jumps < 53, (modules, jumps)  # before the loop was cut into steps: 21 modules, 63 jumps
