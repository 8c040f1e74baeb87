"""YAML read once, with the line of every key and item, so errors can name the line."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

Path = tuple[str | int, ...]

# libyaml's loader where PyYAML was built with it: about ten times faster, and its nodes
# carry the same marks.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Located:
    """A parsed YAML document and the 1-based line of each path in it."""

    def __init__(self, data: Any, lines: dict[Path, int], name: str) -> None:
        self.data = data
        self.lines = lines
        self.name = name

    def line(self, path: Iterable[str | int]) -> int | None:
        """The line of ``path``, or of the deepest part of it that the file has."""
        parts = tuple(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get((), 1)

    def where(self, path: Iterable[str | int]) -> str:
        """``file:line`` for ``path``."""
        line = self.line(path)
        return f"{self.name}:{line}" if line is not None else self.name


def _walk(node: yaml.Node, path: Path, lines: dict[Path, int], seen: set[int]) -> None:
    if id(node) in seen:  # an alias: its lines are those of the anchor
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                child = (*path, key.value)
                lines.setdefault(child, key.start_mark.line + 1)
                _walk(value, child, lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines.setdefault(child, item.start_mark.line + 1)
            _walk(item, child, lines, seen)


def load_located(text: str, name: str) -> Located:
    """Parse ``text`` (safe YAML) once; a syntax error names the file and line."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{name}{line}: not valid YAML: {exc.problem or exc}") from None
    finally:
        loader.dispose()
    lines: dict[Path, int] = {(): 1}
    if node is not None:
        _walk(node, (), lines, set())
    return Located(data, lines, name)
