"""Strict YAML for configs: safe loading only (plain data, no Python tags), duplicate keys refused,
nesting bounded while parsing (a file of 100,000 "[" costs no stack), errors as one line."""

from __future__ import annotations

from typing import Any

import yaml

from han.errors import ConfigError

MAX_NESTING = 32


class NestingTooDeep(Exception):
    """Raised by `StrictLoader` at the collection that opens level MAX_NESTING + 1 (`line` counts from 1)."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class DuplicateKey(Exception):
    """Raised by `StrictLoader` at the second occurrence of a key in one mapping (lines count from 1)."""

    def __init__(self, key: Any, line: int, first_line: int) -> None:
        super().__init__(key, line, first_line)
        self.key, self.line, self.first_line = key, line, first_line


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader (plain data only, no Python tags) that also refuses duplicate keys and deep nesting.

    The nesting is bounded while composing, before PyYAML's recursive composer could run out of stack.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open_collections = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose one node, refusing a collection nested more than MAX_NESTING levels deep."""
        opens = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        if opens:
            self._open_collections += 1
            if self._open_collections > MAX_NESTING:
                raise NestingTooDeep(self.peek_event().start_mark.line + 1)
        try:
            return super().compose_node(parent, index)
        finally:
            if opens:
                self._open_collections -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """Construct a mapping, refusing a key written twice (merge keys `<<` may still be overridden)."""
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DuplicateKey(key, line, seen[key])
                    seen[key] = line
                except TypeError:  # an unhashable key: the safe loader refuses it below
                    continue
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """Plain data of YAML `text`, read with `StrictLoader`."""
    loader = StrictLoader(text)
    try:
        return loader.get_single_data()
    except ValueError as error:  # e.g. an integer of more than 4,300 digits (Python's conversion limit)
        raise yaml.YAMLError(f"a value cannot be read ({str(error).splitlines()[0][:120]})") from None
    finally:
        loader.dispose()


def nesting(data: Any) -> int | None:
    """Levels of nesting of plain data (0 for a scalar, 1 for a flat list); None when it contains itself.

    Iterative, and each shared list or mapping (a YAML alias) is measured once, so neither a deep
    nor an alias-expanded structure costs stack or exponential time.
    """
    heights: dict[int, int] = {}
    entered: set[int] = set()  # collections being measured: the ancestors of the current one
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, finished = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        children = [c for c in (node.values() if isinstance(node, dict) else node) if isinstance(c, (dict, list))]
        if finished:
            entered.discard(id(node))
            heights[id(node)] = 1 + max((heights[id(c)] for c in children), default=0)
        elif id(node) in entered:
            return None  # an alias to one of its own ancestors
        elif id(node) not in heights:
            entered.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children)
    return heights.get(id(data), 0)


def check_nesting(data: Any, source: str) -> None:
    """Refuse plain data nested more than MAX_NESTING levels deep, or containing itself (through an alias)."""
    depth = nesting(data)
    if depth is None:
        raise ConfigError(f"{source}: a YAML alias refers to a section that contains it; remove the cycle")
    if depth > MAX_NESTING:
        raise ConfigError(
            f"{source}: nested more than {MAX_NESTING} levels deep ({depth}); han's settings need at most 4"
        )


def yaml_problem(error: yaml.YAMLError) -> str:
    """A one-line description of a YAML error: its problem and where (first line of its text otherwise)."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{error.problem}{where}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__
