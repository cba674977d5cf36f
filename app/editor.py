"""The New run page's data: spec sources, validation, an annotated view, and the schema form.

Pure functions, no Streamlit. Validation is the CLI's own (`validate_text` plus
`require_runnable`), so the editor shows the very ``file:line dotted.key: message`` lines that
``diffsde run`` would print. The form is generated from the spec's JSON Schema (what
``diffsde schema`` prints), so a plugin's new SDE or sampler shows up among the choices without
touching the dashboard.

Form values are written back by editing the YAML text in place (the span of one value, or one
new line), not by re-dumping the document: the comments and the flow/block layout a person
wrote survive a change of ``training.steps``. Each edit is checked by re-parsing; when an
unusual layout defeats it, the document is re-dumped instead (right data, comments lost).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml

from diffsde import get_registry
from diffsde._run import require_runnable
from diffsde._spec._model import spec_model
from diffsde._spec._source import SourceError, load_yaml
from diffsde._spec._validate import Setup, SpecError, SpecIssue, validate_text
from diffsde.runs import open_run

SPECS_DIR = pathlib.Path(__file__).resolve().parent.parent / "specs"
DEFAULT_SPEC = "vp_8gaussians"  # the spec of `make demo`: a sensible first thing to edit
EDITOR_FILE = "editor.yaml"  # the file name the editor's issues carry, as a CLI path would
COMMON_FIELDS = (
    "name",
    "seed",
    "sde.type",
    "data.type",
    "objective.type",
    "sampler.type",
    "training.steps",
    "training.batch_size",
    "training.learning_rate",
    "eval.n_samples",
)


# -- sources ---------------------------------------------------------------------------------


def shipped_specs(specs_dir: str | os.PathLike[str] = SPECS_DIR) -> dict[str, pathlib.Path]:
    """The example specs shipped in the repository's ``specs/``, by file stem, sorted."""
    specs_dir = pathlib.Path(specs_dir)
    if not specs_dir.is_dir():
        return {}
    return {path.stem: path for path in sorted(specs_dir.glob("*.yaml"))}


def run_spec(runs_dir: str | os.PathLike[str], run: str) -> str:
    """The resolved spec stored with run ``run`` (a directory name in ``runs_dir``).

    ``run`` comes from a URL or a form, so anything but a plain directory name (``../x``, an
    absolute path) is refused with a `ValueError` rather than read: the page only ever opens
    runs inside its own store. An unreadable run raises `diffsde.runs.RunReadError`.
    """
    if not run or run in (".", "..") or pathlib.PurePath(run).name != run or "\\" in run:
        raise ValueError(
            f"{run!r} is not a run of {runs_dir}: give a run id (a directory name in the runs "
            "directory); paths outside the runs directory are refused."
        )
    path = pathlib.Path(runs_dir) / run
    if not path.is_dir():
        raise ValueError(f"there is no run {run!r} in {runs_dir}.")
    return open_run(path).spec_yaml


# -- validation ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Validation:
    """The outcome of validating the editor text: the CLI's issues, or a one-line summary."""

    issues: tuple[SpecIssue, ...]
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.issues

    def lines(self) -> list[str]:
        """Each issue exactly as ``diffsde validate`` prints it."""
        return [str(issue) for issue in self.issues]


def describe(setup: Setup) -> str:
    """One line saying what a valid spec will train, for the ✓ under the editor."""
    spec = setup.spec
    return (
        f"{spec.name}: {spec.sde.type} SDE on {spec.data.type} data (dim {setup.dim}), "
        f"{spec.model.type} model, {spec.objective.type} objective, {spec.sampler.type} sampler; "
        f"{spec.training.steps} steps of batch {spec.training.batch_size}, "
        f"evaluated on {spec.eval.n_samples} samples"
    )


def validate(
    text: str, file: str = EDITOR_FILE, *, base_dir: str | os.PathLike[str] | None = None
) -> Validation:
    """Validate ``text`` as ``diffsde run`` would (the spec, then that it is runnable)."""
    try:
        setup = validate_text(text, file, (), base_dir=base_dir)
        require_runnable(setup)
    except SpecError as err:
        return Validation(tuple(err.issues))
    return Validation((), describe(setup))


def annotate(
    text: str, issues: Sequence[SpecIssue], *, file: str = EDITOR_FILE, context: int = 1
) -> str:
    """The lines of ``text`` that carry issues, numbered, each followed by a caret under the
    issue's column and its message; ``context`` lines around each, ``…`` for the gaps.

    Issues located elsewhere (a ``--set`` override) are left out, and an issue past the end (a
    YAML error at the end of the stream) is shown on an empty last line. Empty when no issue is
    located in ``file``.
    """
    lines = text.splitlines()
    marks: dict[int, list[SpecIssue]] = {}
    for issue in issues:
        if issue.location.file == file:
            line = min(max(issue.location.line, 1), len(lines) + 1)
            marks.setdefault(line, []).append(issue)
    if not marks:
        return ""
    if max(marks) > len(lines):
        lines.append("")
    shown = sorted(
        {
            n
            for line in marks
            for n in range(line - context, line + context + 1)
            if 1 <= n <= len(lines)
        }
    )
    width = len(str(shown[-1]))
    out: list[str] = []
    for i, n in enumerate(shown):
        if i and n != shown[i - 1] + 1:
            out.append(f"{'…':>{width}}")
        source = lines[n - 1]
        out.append(f"{n:>{width}} | {source}")
        for issue in sorted(marks.get(n, []), key=lambda i: i.location.column):
            # keep tabs so the caret lines up under the same character
            lead = "".join(c if c == "\t" else " " for c in source[: issue.location.column - 1])
            label = f"{issue.key}: {issue.message}" if issue.key else issue.message
            out.append(f"{'':>{width}} | {lead}^ {label}")
    return "\n".join(out)


# -- the form --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FormField:
    """One form field, read off the JSON Schema: what to show and which values are allowed.

    ``default`` is None where the spec has none (a required section's ``type``, an optional
    section left out). Bounds are the schema's: ``minimum``/``maximum`` with flags saying
    whether they are exclusive (``exclusiveMinimum: 0`` is "> 0").
    """

    key: str
    title: str
    description: str
    kind: Literal["string", "integer", "number", "choice"]
    default: Any = None
    choices: tuple[str, ...] = ()
    choice_descriptions: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False

    @property
    def replaces_section(self) -> bool:
        """Whether setting this field rewrites its whole section (a section's ``type``)."""
        return self.kind == "choice" and self.key.count(".") == 1 and self.key.endswith(".type")

    def widget_bounds(self) -> tuple[float | None, float | None]:
        """Inclusive bounds a number widget can enforce: an integer's exclusive bound moves by
        one; a real number's is dropped (no widget can say "> 0"; validation still does)."""
        low, high = self.minimum, self.maximum
        if self.exclusive_minimum and low is not None:
            low = low + 1 if self.kind == "integer" else None
        if self.exclusive_maximum and high is not None:
            high = high - 1 if self.kind == "integer" else None
        if self.kind == "integer":
            low = None if low is None else int(low)
            high = None if high is None else int(high)
        return low, high

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has this field's type and lies within its bounds."""
        if value is None:
            return False
        if self.kind == "choice":
            return isinstance(value, str)
        if self.kind == "string":
            return isinstance(value, str)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "integer" and not isinstance(value, int):
            return False
        if self.minimum is not None and not (
            value > self.minimum if self.exclusive_minimum else value >= self.minimum
        ):
            return False
        if self.maximum is not None and not (
            value < self.maximum if self.exclusive_maximum else value <= self.maximum
        ):
            return False
        return True

    def bounds_text(self) -> str:
        """The bounds as a reader would write them (``> 0``, ``≥ 0 and < 1``), or ``""``."""
        parts = []
        if self.minimum is not None:
            parts.append(f"{'>' if self.exclusive_minimum else '≥'} {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"{'<' if self.exclusive_maximum else '≤'} {self.maximum:g}")
        return " and ".join(parts)


def spec_schema() -> dict:
    """The spec's JSON Schema for the registry as loaded now (plugins included)."""
    return spec_model(get_registry()).model_json_schema()


def _deref(node: Mapping, defs: Mapping) -> Mapping:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def _members(node: Mapping, defs: Mapping) -> list[Mapping]:
    """The non-null alternatives of a (possibly nullable, possibly union) schema node."""
    node = _deref(node, defs)
    if "discriminator" in node:
        return [_deref(option, defs) for option in node.get("oneOf", [])] or [node]
    for union in ("anyOf", "oneOf"):
        if union in node:
            return [m for option in node[union] for m in _members(option, defs)]
    return [] if node.get("type") == "null" else [node]


def _type_choices(node: Mapping, defs: Mapping) -> tuple[tuple[str, ...], dict[str, str]]:
    """A section's ``type`` choices (a discriminator's mapping, else each member's ``type``
    constant) and each choice's description."""
    node = _deref(node, defs)
    found: dict[str, str] = {}
    discriminated = [node, *node.get("anyOf", [])]
    for candidate in discriminated:
        mapping = candidate.get("discriminator", {}).get("mapping", {})
        for name, ref in mapping.items():
            found[name] = _deref({"$ref": ref}, defs).get("description", "")
    for member in _members(node, defs):
        tag = member.get("properties", {}).get("type", {})
        for name in [tag["const"]] if "const" in tag else tag.get("enum", []):
            found.setdefault(name, member.get("description", ""))
    return tuple(found), found


def _scalar_field(key: str, node: Mapping, defs: Mapping, default: Any) -> FormField:
    options = _members(node, defs) or [{}]
    member = options[0]
    title = node.get("title") or member.get("title") or key
    description = node.get("description") or member.get("description", "")
    if "enum" in member or "const" in member:
        choices = tuple(member.get("enum", [member.get("const")]))
        return FormField(key, title, description, "choice", default, choices)
    kind = {"integer": "integer", "number": "number"}.get(member.get("type"), "string")
    low = member.get("exclusiveMinimum", member.get("minimum"))
    high = member.get("exclusiveMaximum", member.get("maximum"))
    return FormField(
        key,
        title,
        description,
        kind,
        default,
        minimum=low,
        maximum=high,
        exclusive_minimum="exclusiveMinimum" in member,
        exclusive_maximum="exclusiveMaximum" in member,
    )


def form_field(schema: Mapping, key: str) -> FormField:
    """The form field of dotted ``key`` (``name``, ``training.steps``, ``sde.type``, …)."""
    defs = schema.get("$defs", {})
    head, _, rest = key.partition(".")
    properties = schema["properties"]
    if head not in properties:
        raise KeyError(f"the spec schema has no key {key!r}; top-level keys: {list(properties)}")
    node = properties[head]
    if not rest:
        return _scalar_field(key, node, defs, node.get("default"))
    section_default = node.get("default")
    if rest == "type":
        choices, descriptions = _type_choices(node, defs)
        if choices:
            title = f"{node.get('title') or head.capitalize()} type"
            default = section_default.get("type") if isinstance(section_default, dict) else None
            description = (
                f"Which {head} to use. Changing it replaces the `{head}` section with just "
                f"`{{type: …}}`: the old type's parameters may not apply to the new one."
            )
            return FormField(key, title, description, "choice", default, choices, descriptions)
    members = _members(node, defs)
    child = members[0].get("properties", {}).get(rest) if len(members) == 1 else None
    if child is None or "." in rest:
        raise KeyError(
            f"{key!r} is not a form field: the form covers top-level keys, a section's type, "
            "and the keys of a section that is not a union (training.*, eval.*)"
        )
    member = members[0]
    default = child.get("default")
    if default is None and isinstance(section_default, dict):
        default = section_default.get(rest)
    field = _scalar_field(key, child, defs, default)
    if not field.description:
        field = dataclasses.replace(field, description=member.get("description", ""))
    return field


def form_fields(schema: Mapping | None = None, keys: Sequence[str] = COMMON_FIELDS) -> list:
    """The `FormField` of each of ``keys`` (by default the common fields), in order."""
    schema = spec_schema() if schema is None else schema
    return [form_field(schema, key) for key in keys]


def _parse(text: str) -> dict:
    """The YAML mapping in ``text`` (empty text is an empty mapping); `ValueError` otherwise."""
    try:  # the validator's bounded loader: no alias bomb or recursive alias is built here
        data, _ = load_yaml(text, "<editor>")
    except SourceError as err:
        raise ValueError(f"the editor text is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("the editor text is not a mapping of sections (sde:, data:, …)")
    return data


def _get(data: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def form_values(text: str, fields: Sequence[FormField]) -> dict[str, Any]:
    """Each field's value in ``text``, or its default where the text has none or one the field
    cannot hold (a string where a number goes, a number out of bounds): the form shows what a
    widget can show, and the validator still reports the bad value. `ValueError` when ``text``
    is not a YAML mapping."""
    data = _parse(text)
    values = {}
    for field in fields:
        value = _get(data, field.key.split("."))
        values[field.key] = value if field.accepts(value) else field.default
    return values


def apply_form(
    text: str, fields: Sequence[FormField], values: Mapping[str, Any]
) -> tuple[str, list[str]]:
    """``text`` with the form's changed ``values`` written in, and notes for the person.

    Only values that differ from what the form showed (`form_values`) are written, so leaving
    a default alone does not add it to the spec. A changed section ``type`` replaces the whole
    section with ``{type: new}`` (written first, so other fields of that section still apply):
    the old type's parameters may mean nothing to the new one, and each such drop is a note.
    """
    shown = form_values(text, fields)
    changed = [
        f
        for f in fields
        if f.key in values and values[f.key] is not None and values[f.key] != shown[f.key]
    ]
    changed.sort(key=lambda f: not f.replaces_section)
    notes = []
    for field in changed:
        value = values[field.key]
        if field.replaces_section:
            section = field.key.split(".")[0]
            old = _get(_parse(text), [section])
            dropped = [k for k in old if k != "type"] if isinstance(old, dict) else []
            text = set_key(text, section, {"type": value})
            if dropped:
                notes.append(
                    f"`{section}` is now `{{type: {value}}}`: the parameters of the old type "
                    f"({', '.join(map(str, dropped))}) were dropped since they may not apply; "
                    "add back the ones you need in the editor."
                )
            else:
                notes.append(f"`{section}` is now `{{type: {value}}}`.")
        else:
            text = set_key(text, field.key, value)
    return text, notes


# -- writing one key into YAML text ----------------------------------------------------------


def flow(value: Any) -> str:
    """``value`` as one line of YAML flow style (``20``, ``vp``, ``'a: b'``, ``{type: ve}``)."""
    wrapped = yaml.safe_dump([value], default_flow_style=True, width=2**31, allow_unicode=True)
    return wrapped.strip()[1:-1]


def _assign(data: dict, path: Sequence[str], value: Any) -> None:
    for part in path[:-1]:
        if not isinstance(data.get(part), dict):
            data[part] = {}
        data = data[part]
    data[path[-1]] = value


def _nested(path: Sequence[str], value: Any) -> Any:
    for part in reversed(path):
        value = {part: value}
    return value


def _last_line(node: yaml.Node) -> int:
    """The 0-based last line holding ``node``'s content (a block's end mark lies past trailing
    blank lines and comments, so blocks are measured by their last child)."""
    if isinstance(node, yaml.ScalarNode):
        end = node.end_mark
        return end.line if end.column > 0 or end.line == node.start_mark.line else end.line - 1
    if node.flow_style or not node.value:
        return node.end_mark.line
    children = node.value
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    return max(_last_line(child) for child in children)


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n"
    return lines


def _replace(text: str, key: yaml.Node, node: yaml.Node, new: str) -> str:
    """``text`` with the value ``node`` of ``key`` replaced by the flow text ``new``."""
    if isinstance(node, yaml.ScalarNode) or node.flow_style:
        start, end = node.start_mark.index, node.end_mark.index
        if start == end:  # an empty value (`sde:`): keep a space after the colon
            new = f" {new}"
        return text[:start] + new + text[end:]
    lines = _lines(text)
    first, last = key.start_mark.line, _last_line(node)
    prefix = lines[first][: key.start_mark.column]  # indentation, or a sequence's "- "
    key_text = text[key.start_mark.index : key.end_mark.index]
    return "".join([*lines[:first], f"{prefix}{key_text}: {new}\n", *lines[last + 1 :]])


def _insert(text: str, mapping: yaml.MappingNode, key: str, new: str) -> str:
    """``text`` with ``key: new`` added to ``mapping`` as its last entry."""
    if mapping.flow_style:
        if mapping.value:
            at = mapping.value[-1][1].end_mark.index
            return f"{text[:at]}, {flow(key)}: {new}{text[at:]}"
        at = mapping.end_mark.index - 1  # just before the "}"
        return f"{text[:at]}{flow(key)}: {new}{text[at:]}"
    lines = _lines(text)
    column = mapping.value[0][0].start_mark.column
    after = _last_line(mapping)
    entry = f"{' ' * column}{flow(key)}: {new}\n"
    return "".join([*lines[: after + 1], entry, *lines[after + 1 :]])


def _edit(text: str, path: Sequence[str], value: Any) -> str:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:  # empty, or only comments
        joined = text if not text or text.endswith("\n") else f"{text}\n"
        return f"{joined}{flow(path[0])}: {flow(_nested(path[1:], value))}\n"
    node = root
    for i, part in enumerate(path):
        entry = next(
            (
                (k, v)
                for k, v in node.value
                if isinstance(k, yaml.ScalarNode) and k.value == str(part)
            ),
            None,
        )
        if entry is None:
            return _insert(text, node, part, flow(_nested(path[i + 1 :], value)))
        key, child = entry
        if i == len(path) - 1 or not isinstance(child, yaml.MappingNode):
            return _replace(text, key, child, flow(_nested(path[i + 1 :], value)))
        node = child
    raise AssertionError("unreachable: the loop returns at the last part")


def set_key(text: str, key: str, value: Any) -> str:
    """``text`` with dotted ``key`` set to ``value``, creating missing sections.

    Edits the text in place (comments and layout kept) and checks the result parses to the
    expected data; if it does not, re-dumps the data instead. `ValueError` when ``text`` is not
    a YAML mapping (nothing sensible to edit).
    """
    path = key.split(".")
    expected = copy.deepcopy(_parse(text))
    _assign(expected, path, value)
    try:
        edited = _edit(text, path, value)
        if _parse(edited) == expected:
            return edited
    except ValueError:
        pass  # the edit broke an unusual layout: fall back to re-dumping below
    return yaml.safe_dump(expected, sort_keys=False, allow_unicode=True)
