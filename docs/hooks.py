"""MkDocs hook: the reference pages are generated from the code at build time, so they cannot drift from it.

A page marks where generated text goes with an HTML comment, `<!-- generated: NAME -->`, alone on a line;
`on_page_markdown` replaces it with `GENERATORS[NAME]()`. An unknown name stops the build.

- `config`: every config key (han/config.py's schema, walked recursively) with its type, default and the
  comment written beside it in han/config.py (or its `Field(description=...)`).
- `cli`: every command of the typer app (pipelines/cli.py) with its usage, help, arguments and options.
- `packages`: the package graph of tests/import_graph.py, floor by floor, with each package's docstring.
- `run-directory`: the run directory's layout, as han/store/rundir.py's docstring gives it.

The functions are plain Python (no MkDocs import), so tests call them directly.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import re
import tokenize
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG_SOURCE = ROOT / "han" / "config.py"
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)


# ---------------------------------------------------------------- config reference


@dataclass(frozen=True)
class ConfigKey:
    """One setting of the config: its dotted key, type, default (None when required) and description."""

    key: str
    type: str
    default: str | None
    description: str


def _field_comments(source: str) -> dict[tuple[str, str], str]:
    """(class name, field name) -> the comments written above a field's line and at the end of its lines.

    A comment block belongs to the field right below it (a blank line or code in between breaks it);
    a trailing comment on any line of the field's statement belongs to that field.
    """
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_lines.add(token.start[0])
    result: dict[tuple[str, str], str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            above: list[str] = []
            line = statement.lineno - 1
            while line in comments and line not in code_lines:
                above.insert(0, comments[line])
                line -= 1
            end = statement.end_lineno or statement.lineno
            beside = [comments[n] for n in range(statement.lineno, end + 1) if n in comments]
            result[(node.name, statement.target.id)] = "\n".join(above + beside)
    return result


def cell(text: str) -> str:
    """Plain text as a Markdown table cell: `&`, `<`, `>`, `*` and `|` escaped outside `code spans` (a table
    row's pipes inside a code span are not cell borders, and a code span shows its text as it is)."""
    parts = re.split(r"(`[^`]*`)", text)
    for index in range(0, len(parts), 2):  # the even parts are outside code spans
        plain = parts[index].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        parts[index] = plain.replace("*", "\\*").replace("|", "\\|")
    return "".join(parts)


def _join_comment(text: str) -> str:
    """Comment lines as one Markdown table cell: lines joined, a `- item` line starting a new line."""
    lines = []
    for line in text.splitlines():
        if line.startswith("- ") and lines:
            lines.append("<br>" + cell(line))
        else:
            lines.append(cell(line))
    return " ".join(lines).replace(" <br>", "<br>")


def _constraints(metadata: list[Any]) -> list[str]:
    """Bounds and patterns of a field or an `Annotated` type, as `≥ 1`, `≤ 4096`, `length ≥ 1`, ..."""
    shown = []
    symbols = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    for item in metadata:
        for name, symbol in symbols.items():
            if getattr(item, name, None) is not None:
                shown.append(f"{symbol} {getattr(item, name)}")
        for name, symbol in (("min_length", "≥"), ("max_length", "≤")):
            if getattr(item, name, None) is not None:
                shown.append(f"length {symbol} {getattr(item, name)}")
        if getattr(item, "pattern", None):
            shown.append(f"matches `{item.pattern}`")
        shown.extend(_constraints(list(getattr(item, "metadata", []) or [])))
    return shown


def _type_name(annotation: Any) -> str:
    """A type annotation as a reader writes it: `str | list[str]`, `"cbow" | "skipgram"`, `int (≥ 1)`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Annotated:
        bounds = _constraints(list(args[1:]))
        base = _type_name(args[0])
        return f"{base} ({', '.join(bounds)})" if bounds else base
    if origin is typing.Literal:
        return " | ".join(json.dumps(value) for value in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(arg) for arg in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _is_section(annotation: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def config_keys() -> list[ConfigKey]:
    """Every key of `han.config.Config`, sections walked recursively, in the schema's order."""
    from han.config import Config

    comments = _field_comments(CONFIG_SOURCE.read_text(encoding="utf-8"))

    def walk(schema: Any, prefix: str) -> Iterator[ConfigKey]:
        for name, field in schema.model_fields.items():
            key = f"{prefix}{name}"
            if _is_section(field.annotation):
                yield from walk(field.annotation, f"{key}.")
                continue
            described = [field.description or "", comments.get((schema.__name__, name), "")]
            description = _join_comment("\n".join(part for part in described if part))
            bounds = _constraints(list(field.metadata))
            kind = _type_name(field.annotation) + (f" ({', '.join(bounds)})" if bounds else "")
            default = None
            if not field.is_required():
                default = json.dumps(field.get_default(call_default_factory=True), ensure_ascii=False, default=str)
            yield ConfigKey(key, kind, default, description)

    return list(walk(Config, ""))


def config_sections() -> list[tuple[str, str]]:
    """(dotted section, its schema's docstring) for the top level and every section, in the schema's order."""
    from han.config import Config

    found = [("", Config.__doc__ or "")]

    def walk(schema: Any, prefix: str) -> None:
        for name, field in schema.model_fields.items():
            if _is_section(field.annotation):
                found.append((f"{prefix}{name}", field.annotation.__doc__ or ""))
                walk(field.annotation, f"{prefix}{name}.")

    walk(Config, "")
    return found


def config_reference() -> str:
    """Markdown: one table per config section, every key with its type, default and description."""
    keys = config_keys()
    lines: list[str] = []
    for section, doc in config_sections():
        own = [k for k in keys if k.key.rpartition(".")[0] == section]
        if not own:
            continue
        title = f"`{section}`" if section else "Top level"
        lines += [f"## {title}", "", cell(" ".join(doc.split())), ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for item in own:
            default = "**required**" if item.default is None else f"`{item.default}`"
            lines.append(f"| `{item.key}` | {cell(item.type)} | {default} | {item.description} |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI reference


def _usage(name: str, command: Any) -> str:
    """`han run [OPTIONS] CONFIG [OVERRIDES]...`: a command's synopsis, its arguments upper-cased."""
    pieces = [name, "[OPTIONS]"]
    for param in command.params:
        if param.param_type_name != "argument":
            continue
        shown = param.name.upper()
        shown = shown if param.required else f"[{shown}]"
        pieces.append(shown + ("..." if param.nargs == -1 else ""))
    return " ".join(pieces)


def _commands(group: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


def cli_commands() -> list[tuple[str, Any]]:
    """("han run", the command) for every command of the `han` app, sub-apps included, in the app's order."""
    import typer

    from pipelines.cli import app

    return list(_commands(typer.main.get_command(app), "han"))


def cli_reference() -> str:
    """Markdown: every `han` command with its usage, its help, and a table of its arguments and options."""
    import typer

    from pipelines.cli import app

    group = typer.main.get_command(app)
    root = group.context_class(group, info_name="han")  # click's Context, wherever typer takes click from
    lines = ["## Options of `han` itself", "", "```text", "han [OPTIONS] COMMAND [ARGS]...", "```", ""]
    lines += [cell(" ".join((group.help or "").split())), "", *_param_table(group, root)]
    for name, command in cli_commands():
        context = command.context_class(command, info_name=name, parent=root)
        help_text = " ".join((command.help or "").split())
        lines += [f"## `{name}`", "", "```text", _usage(name, command), "```", "", cell(help_text), ""]
        lines += _param_table(command, context)
    return "\n".join(lines)


def _param_table(command: Any, context: Any) -> list[str]:
    """A command's arguments and options as `--help` shows them (`--help` itself left out), as table rows."""
    lines = ["| argument or option | description |", "|---|---|"]
    for param in command.get_params(context):
        record = param.get_help_record(context)
        if record is None or param.name == "help":
            continue
        spelled, description = record
        lines.append(f"| `{spelled}` | {cell(description)} |")
    return [*lines, ""]


# ---------------------------------------------------------------- architecture


def _import_graph_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("han_docs_import_graph", ROOT / "tests" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _docstring_of(package: str) -> str:
    path = ROOT.joinpath(*package.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    doc = ast.get_docstring(ast.parse(source.read_text(encoding="utf-8"))) or ""
    if not path.is_dir():  # a module: its first paragraph; a package's whole docstring is its map
        doc = doc.split("\n\n")[0]
    return cell(" ".join(doc.split()))


def package_reference() -> str:
    """Markdown: han's packages (and the app) floor by floor, what each imports and what each holds."""
    graph_module = _import_graph_module()
    graph = graph_module.package_graph()
    floors = graph_module.floors(graph)
    lines = ["| floor | package | imports | what it holds |", "|---:|---|---|---|"]
    for name in sorted(graph, key=lambda n: (floors[n], n)):
        imports = ", ".join(f"`{m}`" for m in sorted(graph[name])) or "—"
        lines.append(f"| {floors[name]} | `{name}` | {imports} | {_docstring_of(name)} |")
    return "\n".join(lines) + "\n"


def run_directory_reference() -> str:
    """Markdown: the run directory's layout and rules, from han/store/rundir.py's docstring."""
    doc = ast.get_docstring(ast.parse((ROOT / "han" / "store" / "rundir.py").read_text(encoding="utf-8"))) or ""
    layout, _, rules = doc.partition("Layout:\n")[2].partition("\n\n")
    lines = ["```text", *(line[4:] if line.startswith("    ") else line for line in layout.splitlines()), "```"]
    return "\n".join(lines) + "\n\n" + " ".join(rules.split()) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "config": config_reference,
    "cli": cli_reference,
    "packages": package_reference,
    "run-directory": run_directory_reference,
}


def expand(markdown: str, where: str = "page") -> str:
    """`markdown` with every `<!-- generated: NAME -->` line replaced by that generator's text."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{where}: no generator named {name!r} (known: {', '.join(GENERATORS)})")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """MkDocs event: fill in the generated parts of a page."""
    return expand(markdown, page.file.src_path)
