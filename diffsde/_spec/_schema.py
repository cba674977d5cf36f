"""The JSON Schema of a spec (``diffsde schema``), from the pydantic spec model."""

from typing import Any

from .._plugins import Registry, get_registry
from ._model import spec_model


def json_schema(registry: Registry | None = None) -> dict[str, Any]:
    """The JSON Schema of a spec with the components ``registry`` holds (default: the installed
    plugins'), as a JSON-ready dict."""
    return spec_model(registry or get_registry()).model_json_schema()
