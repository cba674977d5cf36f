"""New run's form: the common fields, read off the spec's JSON Schema, and written back into the
YAML text. Pure functions, no Streamlit.

The form is generated from the JSON Schema (what ``diffsde schema`` prints), so a plugin's new
SDE or sampler shows up among the choices without touching the dashboard. A value is written
back with a ruamel.yaml round trip, so the comments and the flow/block layout a person wrote
survive a change of ``training.steps``.
"""

from __future__ import annotations

import copy
import dataclasses
import io
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap

from diffsde.spec import SourceError, json_schema, load_yaml

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
    return json_schema()


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


def _round_trip() -> YAML:
    yaml = YAML()  # round trip: comments, key order, flow/block style and quotes are kept
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def _section(value: Any) -> Any:
    """A mapping written as one flow line (``{type: ve}``), as a person writes a short one."""
    if not isinstance(value, Mapping):
        return value
    out = CommentedMap((k, _section(v)) for k, v in value.items())
    out.fa.set_flow_style()
    return out


def _put(node: CommentedMap, key: str, value: Any) -> None:
    """``node[key] = value``; a key added to a block mapping goes after the mapping's last
    entry but before the comments and blank lines that follow it (ruamel keeps those with the
    last entry, so the new key would land below a comment about the next section)."""
    last = next(reversed(node), None) if key not in node and not node.fa.flow_style() else None
    node[key] = value
    comments = node.ca.items.get(last)
    token = comments[2] if comments and len(comments) > 2 else None
    if token is None or "\n" not in token.value:
        return
    inline, _, rest = token.value.partition("\n")
    moved = copy.copy(token)
    token.value, moved.value = inline + "\n", "\n" + rest
    node.ca.items[key] = [None, None, moved, None]


def set_key(text: str, key: str, value: Any) -> str:
    """``text`` with dotted ``key`` set to ``value``, creating missing sections (as flow
    mappings); everything else, comments included, is kept as written. `ValueError` when
    ``text`` is not a YAML mapping (nothing sensible to edit)."""
    _parse(text)  # the validator's bounded loader first: no alias bomb reaches ruamel
    try:
        data = _round_trip().load(text)
    except YAMLError as err:
        raise ValueError(f"the editor text is not valid YAML: {err}") from None
    if data is None:  # empty, or only comments: keep the comments above the new key
        data = CommentedMap()
        head = text if not text or text.endswith("\n") else f"{text}\n"
    else:
        head = ""
    *sections, last = key.split(".")
    node = data
    for part in sections:
        if not isinstance(node.get(part), Mapping):
            node[part] = _section({})
        node = node[part]
    _put(node, last, _section(value))
    out = io.StringIO()
    _round_trip().dump(data, out)
    return head + out.getvalue()
