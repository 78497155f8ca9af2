"""YAML → plain Python data plus the line/column of every key path.

PyYAML's composed node tree keeps marks; constructing values ourselves from
that tree lets every later error point at `file:line:col`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


class YamlSyntaxError(Exception):
    """The file is not valid YAML (or uses YAML we refuse, like duplicate keys)."""

    def __init__(self, message: str, position: Position) -> None:
        super().__init__(message)
        self.position = position


def _position(mark: Any) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


class _Builder:
    def __init__(self, loader: Any) -> None:
        import yaml

        self.loader = loader
        self.yaml = yaml
        self.positions: dict[KeyPath, Position] = {}
        self.key_positions: dict[KeyPath, Position] = {}

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.positions.setdefault(path, _position(node.start_mark))
        if isinstance(node, self.yaml.MappingNode):
            self.loader.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    raise YamlSyntaxError("mapping keys must be plain scalars", _position(key_node.start_mark))
                key = str(key) if not isinstance(key, str) else key
                if key in result:
                    raise YamlSyntaxError(f"duplicate key '{key}'", _position(key_node.start_mark))
                self.key_positions[(*path, key)] = _position(key_node.start_mark)
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, self.yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


@dataclass(frozen=True)
class YamlDocument:
    data: Any
    positions: dict[KeyPath, Position]
    key_positions: dict[KeyPath, Position]

    def position(self, path: KeyPath, *, key: bool = False) -> Position:
        """Closest known position: the key itself when asked, else its value or nearest parent."""
        if key and path in self.key_positions:
            return self.key_positions[path]
        probe = path
        while probe:
            if probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        return self.positions.get((), Position(1, 1))


def load(text: str) -> YamlDocument:
    """Parse one YAML document; an empty document yields data None."""
    import yaml  # imported when needed: a cached, unchanged rlm.yaml is not parsed again (bench/)

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, {(): Position(1, 1)}, {})
        builder = _Builder(loader)
        data = builder.build(node, ())
        return YamlDocument(data, builder.positions, builder.key_positions)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and "end of stream" in (exc.problem or ""):
            mark = exc.context_mark  # an unclosed quote or bracket: point where it opens, not at the end
        pos = _position(mark) if mark is not None else Position(1, 1)
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise YamlSyntaxError(problem, pos) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc), Position(1, 1)) from None
    finally:
        loader.dispose()
