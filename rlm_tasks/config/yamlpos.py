"""YAML → plain Python data plus the line/column of every key path.

PyYAML's composed node tree keeps marks; constructing values ourselves from
that tree lets every later error point at `file:line:col`. A valid file needs
no position, and recording one per node was a fifth of the memory a
10,000-task rlm.yaml took to load: the positions are recorded by a second
parse, the first time an error or warning asks for one.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import yaml

KeyPath = tuple[str | int, ...]

# rlm.yaml is a handful of levels deep; libyaml's composer recurses in C and crashes the process on deep input.
MAX_DEPTH = 64
# Nodes reachable through aliases, counted with repetition: a 650-byte "billion laughs" file expands to
# hundreds of millions; real configs reuse a few blocks.
MAX_ALIAS_NODES = 100_000


class Position(NamedTuple):
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
    def __init__(self, loader: Any, located: bool) -> None:
        import yaml

        self.loader = loader
        self.yaml = yaml
        self.located = located
        self.positions: dict[KeyPath, Position] = {}
        self.key_positions: dict[KeyPath, Position] = {}

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        if self.located:
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
                if self.located:
                    self.key_positions[(*path, key)] = _position(key_node.start_mark)
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, self.yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


class YamlDocument:
    """The data of one document; the positions of its key paths are found when first asked for."""

    def __init__(self, data: Any, text: str) -> None:
        self.data = data
        self._text = text
        self._positions: tuple[dict[KeyPath, Position], dict[KeyPath, Position]] | None = None

    def _located(self) -> tuple[dict[KeyPath, Position], dict[KeyPath, Position]]:
        if self._positions is None:
            self._positions = _parse(self._text, located=True)[1:]
        return self._positions

    def position(self, path: KeyPath, *, key: bool = False) -> Position:
        """Closest known position: the key itself when asked, else its value or nearest parent."""
        positions, key_positions = self._located()
        if key and path in key_positions:
            return key_positions[path]
        probe = path
        while probe:
            if probe in positions:
                return positions[probe]
            probe = probe[:-1]
        return positions.get((), Position(1, 1))


def _check_shape(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH and alias expansion beyond MAX_ALIAS_NODES from the event stream,
    which libyaml produces without recursion, before anything composes or builds the document."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        sizes: dict[str, int] = {}  # anchor -> nodes its value expands to
        frames: list[list[Any]] = []  # open collections: [anchor, node count]
        expanded = 0
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(frames) >= MAX_DEPTH:
                    raise YamlSyntaxError(f"nesting deeper than {MAX_DEPTH} levels", _position(event.start_mark))
                frames.append([event.anchor, 1])
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, size = frames.pop()
            elif isinstance(event, yaml.AliasEvent):
                anchor, size = None, sizes.get(event.anchor or "", 1)
                expanded += size
                if expanded > MAX_ALIAS_NODES:
                    raise YamlSyntaxError(
                        f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes", _position(event.start_mark)
                    )
            elif isinstance(event, yaml.ScalarEvent):
                anchor, size = event.anchor, 1
            else:
                continue
            if anchor is not None:
                sizes[anchor] = size
            if frames:
                frames[-1][1] += size
    except yaml.YAMLError as exc:
        # PyYAML >= 6.0.2 stops deep nesting in its scanner, ahead of the events counted above: same refusal
        mark = getattr(exc, "problem_mark", None)
        if "nesting depth" in str(getattr(exc, "problem", "")) and mark is not None:
            raise YamlSyntaxError(f"nesting deeper than {MAX_DEPTH} levels", _position(mark)) from None
        raise
    finally:
        loader.dispose()


def load(text: str) -> YamlDocument:
    """Parse one YAML document; an empty document yields data None."""
    import yaml  # imported when needed: a cached, unchanged rlm.yaml is not parsed again (bench/)

    with contextlib.suppress(yaml.YAMLError):  # a syntax error: the parse below reports it with its position
        _check_shape(text)
    try:
        data = _streamed(text)
    except Exception:  # an error or an unusual shape: the whole-tree parse gives the answer, error or data
        data = _parse(text, located=False)[0]
    return YamlDocument(data, text)


class _Unusual(Exception):
    """A document _streamed leaves to the whole-tree parse."""


# Items of these top-level lists are composed one at a time: they are what grows with the plan.
_STREAMED_LISTS = ("tasks", "verify")


def _streamed(text: str) -> Any:
    """The data of a document whose root is a plain mapping, each top-level value composed and built on its
    own, and `tasks`/`verify` one item at a time: the node tree of a 10,000-task rlm.yaml (27 MB of nodes and
    marks) is never whole. The same data as _parse, or an exception (then _parse decides)."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = type("StreamingLoader", (base, yaml.composer.Composer), {})(text)
    loader.anchors = {}
    try:
        for kind in (yaml.StreamStartEvent, yaml.DocumentStartEvent, yaml.MappingStartEvent):
            if not loader.check_event(kind) or getattr(loader.peek_event(), "anchor", None) is not None:
                raise _Unusual
            loader.get_event()
        builder = _Builder(loader, located=False)
        result: dict[str, Any] = {}
        while not loader.check_event(yaml.MappingEndEvent):
            key_node = loader.compose_node(None, None)
            if key_node.tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"):
                raise _Unusual  # merge keys flatten the whole mapping
            key = builder.build(key_node, ())
            if not isinstance(key, str) or key in result:
                raise _Unusual  # refused, or turned into a string: _parse says how
            if key in _STREAMED_LISTS and loader.check_event(yaml.SequenceStartEvent) \
                    and loader.peek_event().anchor is None:
                loader.get_event()
                items: list[Any] = []
                while not loader.check_event(yaml.SequenceEndEvent):
                    items.append(builder.build(loader.compose_node(None, None), (key, len(items))))
                    loader.constructed_objects = {}  # the item's nodes go now
                loader.get_event()
                result[key] = items
            else:
                result[key] = builder.build(loader.compose_node(None, None), (key,))
                loader.constructed_objects = {}
        loader.get_event()
        if not loader.check_event(yaml.DocumentEndEvent):
            raise _Unusual
        loader.get_event()
        if not loader.check_event(yaml.StreamEndEvent):
            raise _Unusual  # a second document: _parse refuses it
        return result
    finally:
        loader.dispose()


def _parse(text: str, located: bool) -> tuple[Any, dict[KeyPath, Position], dict[KeyPath, Position]]:
    """(data, value positions, key positions); the positions stay empty unless `located`."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {(): Position(1, 1)}, {}
        builder = _Builder(loader, located)
        data = builder.build(node, ())
        # the loader keeps every node it constructed, and its parser state makes it a reference cycle: let the
        # node tree go now, not at the next garbage collection (loading runs with the collector off)
        loader.constructed_objects = {}
        return data, builder.positions, builder.key_positions
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and "end of stream" in (exc.problem or ""):
            mark = exc.context_mark  # an unclosed quote or bracket: point where it opens, not at the end
        pos = _position(mark) if mark is not None else Position(1, 1)
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise YamlSyntaxError(problem, pos) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; it knows the offset, not the line
        before = text[: exc.position]
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        raise YamlSyntaxError(f"unacceptable character #x{exc.character:04x}: {exc.reason}", Position(line, column)) \
            from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc).splitlines()[0], Position(1, 1)) from None
    finally:
        loader.dispose()
