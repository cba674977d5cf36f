"""YAML text → Python data, remembering where every key and value came from.

The loader is bounded: a spec may hold at most :data:`MAX_SPEC_BYTES` of text, nest at most
:data:`MAX_DEPTH` levels and expand (through aliases) to at most :data:`MAX_NODES` values; an
alias that refers to the node that contains it is refused without being followed. Integers have
at most :data:`MAX_INT_DIGITS` digits. Floats follow YAML 1.2 (``1e-3`` is a number, not the
string it is in YAML 1.1).
"""

import dataclasses
import re

import yaml
from yaml.events import AliasEvent

MAX_SPEC_BYTES = 1 << 20
"""The largest spec text accepted (1 MiB)."""
MAX_DEPTH = 32
"""The deepest nesting of mappings and lists accepted in a spec."""
MAX_NODES = 100_000
"""The most values (scalars, lists and mappings, aliases counted as what they expand to)."""
MAX_INT_DIGITS = 30
"""The most digits of an integer literal (2**64 has 20)."""

Path = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class Location:
    """A place in a source: 1-based line and column. ``scalar_start`` is where the text of a
    scalar value begins (after a quote), or None when it spans lines in a way columns can't map.
    """

    file: str
    line: int
    column: int
    scalar_start: int | None = None

    def shifted(self, offset: int) -> "Location":
        """The location ``offset`` characters into the scalar's text (for expressions)."""
        if self.scalar_start is None:
            return self
        return dataclasses.replace(self, column=self.scalar_start + offset)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclasses.dataclass
class SourceMap:
    """Where each key (``keys``) and each value (``values``) of a document was written."""

    file: str
    keys: dict[Path, Location] = dataclasses.field(default_factory=dict)
    values: dict[Path, Location] = dataclasses.field(default_factory=dict)

    def locate(self, path: Path, *, key: bool = False) -> Location:
        """The best location for ``path``: itself, else its nearest written ancestor."""
        table = self.keys if key else self.values
        for cut in range(len(path), 0, -1):
            here = path[:cut]
            if here in table:
                return table[here]
            if here in self.keys:
                return self.keys[here]
        return Location(self.file, 1, 1)


class SourceError(ValueError):
    """A YAML syntax or structure error, at a location."""

    def __init__(self, location: Location, message: str, key: str = ""):
        super().__init__(f"{location} {key}: {message}" if key else f"{location}: {message}")
        self.location = location
        self.message = message
        self.key = key


def _mark(file: str, mark, node=None) -> Location:
    scalar_start = None
    if isinstance(node, yaml.ScalarNode) and node.start_mark.line == node.end_mark.line:
        scalar_start = mark.column + 1 + (1 if node.style in ("'", '"') else 0)
    return Location(file, mark.line + 1, mark.column + 1, scalar_start)


_FLOAT_1_2 = re.compile(
    r"""^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$""", re.X
)
"""Floats with an exponent and no dot (``1e-3``, ``2E5``) that YAML 1.1 reads as strings."""


class LimitError(yaml.MarkedYAMLError):
    """A spec over one of the loader's bounds (size of integers, nesting, alias expansion);
    ``key`` is the dotted key of the offending value."""

    def __init__(self, loader: "BoundedLoader", message: str, mark):
        super().__init__(None, None, message, mark)
        self.key = ".".join(str(p) for p in loader.path if p is not None)


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounded nesting, bounded alias expansion, no recursive aliases
    and bounded integer literals (errors carry the mark of the offending node)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.path: list[object] = []  # the keys and indices leading to the node being composed
        self._sizes: dict[int, int] = {}  # id(node) -> values it expands to, once complete

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                self.path.append(index.value if isinstance(index, yaml.ScalarNode) else index)
                raise LimitError(
                    self,
                    f"alias *{event.anchor} refers to a node that contains it (a recursive "
                    "alias): specs must be trees; write the value out",
                    event.start_mark,
                )
            return node
        start = self.peek_event().start_mark
        if parent is not None:
            self.path.append(index.value if isinstance(index, yaml.ScalarNode) else index)
        if len(self.path) >= MAX_DEPTH:
            raise LimitError(
                self,
                f"nested more than {MAX_DEPTH} levels deep: a spec needs a few; flatten it",
                start,
            )
        node = super().compose_node(parent, index)
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[id(v)] for v in node.value)
        else:
            size = 1
            if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_INT_DIGITS:
                raise LimitError(
                    self,
                    f"an integer of {len(node.value)} digits is too long (at most "
                    f"{MAX_INT_DIGITS}): write a smaller number",
                    node.start_mark,
                )
        if size > MAX_NODES:
            raise LimitError(
                self,
                f"this value expands (through YAML aliases) to more than {MAX_NODES:,} values "
                "(an alias bomb?): write the values out or use fewer aliases",
                node.start_mark,
            )
        self._sizes[id(node)] = size
        if parent is not None:
            self.path.pop()
        return node


BoundedLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))


def load_yaml(text: str, file: str) -> tuple[object, SourceMap]:
    """Parse one YAML document safely; return its data and a :class:`SourceMap`.

    Duplicate keys (which PyYAML silently merges) are errors, as are syntax errors, text over
    :data:`MAX_SPEC_BYTES`, nesting deeper than :data:`MAX_DEPTH`, alias expansion beyond
    :data:`MAX_NODES` values and recursive aliases; all raise :class:`SourceError` with the line
    and column, in time and memory bounded by the size of the text.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SPEC_BYTES:
        raise SourceError(
            Location(file, 1, 1),
            f"the spec is {size:,} bytes; the limit is {MAX_SPEC_BYTES:,} (1 MiB): a spec "
            "needs a few kilobytes, put data in a file (data: {type: file, path: …})",
        )
    source = SourceMap(file)
    loader = None
    try:
        loader = BoundedLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, source
        _walk(node, (), source, loader)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        message = " ".join(p for p in (err.context, err.problem) if p) or str(err)
        if isinstance(err, LimitError):
            raise SourceError(where, message, err.key) from None
        raise SourceError(where, f"YAML syntax error: {message}") from None
    except yaml.YAMLError as err:  # the reader's errors (NUL and other unprintable characters)
        where = Location(file, 1, 1)
        if isinstance(getattr(err, "position", None), int):
            before = text[: err.position]
            where = Location(file, before.count("\n") + 1, len(before.rsplit("\n", 1)[-1]) + 1)
        raise SourceError(where, f"YAML error: {str(err).splitlines()[0]}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, source


def _walk(node, path: Path, source: SourceMap, loader: yaml.SafeLoader) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, Location] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise SourceError(
                    _mark(source.file, key_node.start_mark), "keys must be plain names"
                )
            here = _mark(source.file, key_node.start_mark)
            if key in seen:
                raise SourceError(
                    here,
                    f"duplicate key '{key}' (first written at line {seen[key].line}): keep one",
                )
            seen[key] = here
            child = (*path, key)
            source.keys[child] = here
            source.values[child] = _mark(source.file, value_node.start_mark, value_node)
            _walk(value_node, child, source, loader)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            source.values[child] = _mark(source.file, item.start_mark, item)
            source.keys[child] = source.values[child]
            _walk(item, child, source, loader)
