"""The Plugins page's data: every registered component's parameters. Pure functions."""

from __future__ import annotations

from typing import Any

import pydantic


def _annotation(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "")


def parameter_rows(config: type[pydantic.BaseModel]) -> list[dict[str, str]]:
    """A component config's fields (``type`` aside): name, type, default (or "required"), doc."""
    rows = []
    for name, field in config.model_fields.items():
        if name == "type":
            continue
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = repr(field.default_factory())
        else:
            default = repr(field.default)
        rows.append(
            {
                "parameter": name,
                "type": _annotation(field.annotation),
                "default": default,
                "description": field.description or "",
            }
        )
    return rows
