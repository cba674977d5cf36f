"""YAML text → Python data, remembering where every key and value came from."""

import dataclasses

import yaml

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

    def __init__(self, location: Location, message: str):
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


def _mark(file: str, mark, node=None) -> Location:
    scalar_start = None
    if isinstance(node, yaml.ScalarNode) and node.start_mark.line == node.end_mark.line:
        scalar_start = mark.column + 1 + (1 if node.style in ("'", '"') else 0)
    return Location(file, mark.line + 1, mark.column + 1, scalar_start)


def load_yaml(text: str, file: str) -> tuple[object, SourceMap]:
    """Parse one YAML document safely; return its data and a :class:`SourceMap`.

    Duplicate keys (which PyYAML silently merges) are errors, as are syntax errors; both raise
    :class:`SourceError` with the line and column.
    """
    loader = yaml.SafeLoader(text)
    source = SourceMap(file)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, source
        _walk(node, (), source, loader)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        message = " ".join(p for p in (err.context, err.problem) if p) or str(err)
        raise SourceError(where, f"YAML syntax error: {message}") from None
    finally:
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
