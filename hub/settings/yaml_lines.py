"""hub.yaml read with line numbers, so a problem names the line it is on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_Path = tuple[str | int, ...]


class _Document:
    """One YAML file as plain data, remembering the line of every key and item."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.data: Any = None
        self.lines: dict[_Path, int] = {}
        self.problems: list[str] = []

    def line(self, path: _Path) -> int | None:
        """The line of `path`, or of its nearest ancestor the file has (a missing key's parent)."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def locate(self, path: _Path) -> str:
        line = self.line(path)
        return self.display if line is None else f"{self.display}:{line}"

    def load(self, file: Path) -> bool:
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.problems.append(f"{self.display}: file not found")
            return False
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(f"{self.display}: cannot read: {exc}")
            return False
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = {} if node is None else self._convert(node, (), yaml.SafeLoader(""), set())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{self.display}:{mark.line + 1}" if mark else self.display
            text = f"{where}: YAML syntax error: {exc.problem or exc.context}"
            if exc.problem and exc.context and exc.context_mark:
                text += f" ({exc.context} at line {exc.context_mark.line + 1})"
            self.problems.append(text)
            return False
        except yaml.YAMLError as exc:
            self.problems.append(f"{self.display}: YAML error: {exc}")
            return False
        return True

    def _convert(
        self, node: yaml.Node, path: _Path, loader: yaml.SafeLoader, open_: set[int]
    ) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in open_:
            raise yaml.MarkedYAMLError(problem="recursive alias", problem_mark=node.start_mark)
        if isinstance(node, yaml.MappingNode):
            open_.add(id(node))
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str):
                    self.problems.append(f"{self.display}:{line}: key {key!r} must be a string")
                    continue
                if key in out:
                    self.problems.append(f"{self.display}:{line}: duplicate key {key!r}")
                    continue
                self.lines[(*path, key)] = line
                out[key] = self._convert(value_node, (*path, key), loader, open_)
            open_.discard(id(node))
            return out
        if isinstance(node, yaml.SequenceNode):
            open_.add(id(node))
            items = [self._convert(n, (*path, i), loader, open_) for i, n in enumerate(node.value)]
            open_.discard(id(node))
            return items
        return loader.construct_object(node)


_YAML_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
}


def _dotted(path: _Path) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return text or "(top level)"
