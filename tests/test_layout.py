"""The layout holds: no import loop, stages import only lower layers, the model imports no data or text
module, han never imports pipelines, package __init__ files are empty, and the README's layout names
every module there is."""

import ast
import re
import subprocess
import sys

import han.model
import han.vocab
from import_graph import ROOT, cycles, import_graph, project_modules

# The stages of the pipeline: each meets the others only in the run directory.
STAGES = {
    "han.preprocessing": "preprocess",
    "han.training": "train",
    "han.fitting": "train",
    "han.inference": "evaluate/predict",
    "han.inspection": "data inspect",
    "han.reports.documents": "report",
    "han.reports.statistics": "report",
    "han.reports.faithfulness": "report",
    "han.reports.pages": "report",
    "han.reports.output": "report",
}
# Compositions of stages (`han run`; sharded preprocess and predict); nothing in han imports them.
COMPOSITIONS = {"han.runner", "han.sharding", "han.comparison", "han.tuning", "han.api"}


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_stages_import_no_other_stage_and_nothing_imports_a_composition():
    graph = import_graph()
    for module, stage in STAGES.items():
        others = {m for m, s in STAGES.items() if s != stage} | COMPOSITIONS
        assert not graph[module] & others, f"{module} imports {sorted(graph[module] & others)}"
    for module, imported in graph.items():
        if module.startswith("han.") and module != "han.api":  # the Python API offers `han.run` (the runner)
            assert not imported & COMPOSITIONS, f"{module} imports {sorted(imported & COMPOSITIONS)}"


def test_han_never_imports_pipelines():
    for module, imported in import_graph().items():
        if module.startswith("han"):
            assert not {m for m in imported if m.startswith("pipelines")}, module


def test_the_model_imports_no_data_text_or_training_module():
    graph = import_graph()
    # the model's own layers: packed sequences and the GRU kernel, TF-IDF n-grams of token ids (the wide channel)
    own_layers = {"han.config", "han.packed", "han.ngrams", "han.errors"}
    assert graph["han.model"] <= own_layers
    assert graph["han.ngrams"] <= {"han.packed"} and graph["han.packed"] == set()
    network_modules = {"han.model", "han.flat", "han.linear", "han.ensemble", "han.networks"}
    for module in network_modules:  # the other kinds too: only each other and the model's own layers
        assert graph[module] <= network_modules | own_layers, module
    assert han.model.PAD_ID == han.vocab.PAD_ID


def test_package_init_files_are_empty():
    # A cached `han preprocess` must import no heavy library; an __init__ that imports would defeat it.
    # han/__init__.py alone holds a module `__getattr__` that imports han.api on first use (`han.load`).
    for path in project_modules().values():
        if path.name == "__init__.py":
            body = ast.parse(path.read_text(encoding="utf-8")).body
            lazy = path == ROOT / "han" / "__init__.py"
            for node in body:
                docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                typing_only = isinstance(node, ast.ImportFrom) and node.module == "typing"
                attribute_hook = isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
                assert docstring or (lazy and (typing_only or attribute_hook)), (path, ast.dump(node)[:80])


def test_import_han_imports_nothing_heavy():
    code = "import sys, han; print(sorted(m for m in ('torch', 'spacy', 'han.api') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


def readme_layout() -> dict[str, int]:
    """Module (as `reports/pages`) -> its line number in the README's layout block, for han/."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    named: dict[str, int] = {}
    inside = False
    for number, line in enumerate(block.splitlines()):
        if not line.startswith(" "):  # a package line ("han/", "pipelines/") opens or closes the section
            inside = line.startswith("han/")
        elif inside:  # module names, indented under han/, before the comment
            for name in re.findall(r"[a-z_]+(?:/[a-z_]+)?", line.split("#", 1)[0]):
                named[name] = number
    return named


def test_readme_layout_names_every_module():
    named = set(readme_layout())
    modules = {
        path.relative_to(ROOT / "han").with_suffix("").as_posix()
        for path in (ROOT / "han").rglob("*.py")
        if path.name != "__init__.py"
    }
    assert named == modules, f"missing from README: {sorted(modules - named)}; not in han/: {sorted(named - modules)}"


def test_readme_layout_reads_top_to_bottom():
    """Each module imports only modules named on its own line of the README's layout or above it."""
    line = {"han." + name.replace("/", "."): number for name, number in readme_layout().items()}
    for module, imported in import_graph().items():
        if module in line:
            below = sorted(m for m in imported if m in line and line[m] > line[module])
            assert not below, f"{module} imports {below}, listed below it in the README layout"
