"""Score transforms: wrappers of a score s(x, t), applied before any sampler.

A transform is one equinox Module: its constructor's keyword parameters are its spec fields,
except the *context* parameters the pipeline fills (``sde``). Called as
``transform(score, x, t, condition)``, it returns the new score at (x, t) given the score it
wraps, ``score(x, t)`` (already bound to the condition, if there is one). ``condition`` is the
point's condition (a class label, …) or None; a transform that does not use it ``del``-s it.

:func:`apply_transforms` chains them in order: the first wraps the model's score, each next one
wraps the result, and the outcome is an ordinary score for any sampler. Built-ins:
``diffsde/_builtin/transforms.py``.
"""

import abc
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import equinox as eqx
import pydantic
from jaxtyping import PyTree

from ._custom_types import ScalarLike, ScoreFn, Vector
from ._errors import SpecFieldError
from ._model import bind_condition
from ._sde._base import AbstractSDE


class AbstractScoreTransform(eqx.Module):
    """Maps a score function to another. Subclasses set ``tag`` (the spec's ``type:``) and
    implement ``__call__``; context parameters (``sde``) are keyword-only constructor
    parameters."""

    tag: ClassVar[str]

    @abc.abstractmethod
    def __call__(
        self, score: ScoreFn, x: Vector, t: ScalarLike, condition: PyTree | None = None
    ) -> Vector:
        """The transformed score at (x, t); ``score(x, t)`` is the score this one wraps."""


class TransformedScore(eqx.Module):
    """``score`` with ``transforms`` applied in order: a score function ``(x, t) -> vector``
    (a pytree, so jitted samplers trace its arrays rather than bake them in)."""

    score: ScoreFn
    transforms: tuple[AbstractScoreTransform, ...]

    def __call__(self, x: Vector, t: ScalarLike, condition: PyTree | None = None) -> Vector:
        inner = bind_condition(self.score, condition)  # ignored by an unconditional score
        for transform in self.transforms:
            inner = _bind(transform, inner, condition)
        return inner(x, t)


def _bind(transform: AbstractScoreTransform, inner, condition):
    def score(x, t):
        return transform(inner, x, t, condition)

    return score


def apply_transforms(score: ScoreFn, transforms: Sequence[AbstractScoreTransform]) -> ScoreFn:
    """``score`` wrapped by ``transforms`` (first applied first); ``score`` itself if none."""
    transforms = tuple(transforms)
    for i, transform in enumerate(transforms):
        if not isinstance(transform, AbstractScoreTransform):
            raise TypeError(
                f"transforms[{i}] is {transform!r}, not a diffsde.AbstractScoreTransform: "
                "construct one (e.g. diffsde.Temperature(tau=0.5))"
            )
    return TransformedScore(score, transforms) if transforms else score


# building transforms from spec items ({"type": tag, field: value, …}) --------------------------


def build_transform(
    item: Mapping[str, Any], *, sde: AbstractSDE, configs: Mapping[str, type[pydantic.BaseModel]]
) -> AbstractScoreTransform:
    """The transform of one spec item ``{"type": tag, field: value, …}``, validated by its
    spec model (``configs[tag]``, e.g. ``get_registry().get("transform", tag).config``) and
    built for ``sde``; :class:`SpecFieldError` names the field and the fix."""
    if not isinstance(item, Mapping):
        raise SpecFieldError("type", f"a transform is a mapping with a `type:`, got {item!r}")
    tag = item.get("type")
    if tag not in configs:
        raise SpecFieldError(
            "type", f"unknown transform {tag!r}; choose one of {', '.join(sorted(configs))}"
        )
    config = configs[tag]
    try:
        section = config.model_validate(dict(item))
    except pydantic.ValidationError as err:
        error = err.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "type"
        if error["type"] == "extra_forbidden":
            fields = ", ".join(k for k in config.model_fields if k != "type") or "none"
            raise SpecFieldError(
                field, f"is not a field of transform '{tag}' (its fields: {fields})"
            ) from None
        raise SpecFieldError(field, error["msg"]) from None
    return section.build(sde=sde)


def transforms_label(base: str, items: Sequence[Mapping[str, Any]]) -> str:
    """``base+tag-key=value+…`` naming each transform item's settings, with characters a file
    name cannot hold replaced and a digest if it had to be shortened to 200 characters."""
    parts = [
        "-".join([str(i.get("type")), *(f"{k}={v}" for k, v in i.items() if k != "type")])
        for i in items
    ]
    label = "+".join([base, *parts])
    safe = re.sub(r"[^A-Za-z0-9._=+@,-]", "_", label)
    if len(safe) > 200:
        safe = f"{safe[:183]}-{hashlib.sha256(label.encode()).hexdigest()[:16]}"
    return safe
