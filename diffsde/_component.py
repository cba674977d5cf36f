"""One definition per component: a component's spec section is read from its constructor.

A component is one class with a class attribute ``tag`` (the spec's ``type:`` value). The
keyword parameters of its constructor — for an equinox Module, its fields — are its spec keys,
with the defaults and constraints written once, in the signature::

    class Temperature(AbstractScoreTransform):
        tag: ClassVar[str] = "temperature"
        tau: Annotated[float, pydantic.Field(gt=0)] = 1.0

A component may define ``check_context(**context)`` for checks against context it does not
keep (a sampler's ε against the SDE's horizon T); it runs on every build.

Parameters named in the kind's *context* (``CONTEXT``: e.g. ``sde`` for an objective) are not
spec keys: the pipeline passes them when it builds the component, and their annotation is a
requirement checked once — ``sde: AbstractGaussianSDE`` means "needs an SDE with a Gaussian
transition kernel", reported at the spec's ``type:`` line. A parameter annotated with the base of
a *part* kind (a class with ``kind: ClassVar[str]``, e.g. ``AbstractWeighting``) takes any
registered part of that kind, written ``weighting: g2`` or ``weighting: {type: g2}``.

:func:`spec_config` turns such a class into the pydantic model the spec is validated with; its
``build(**context)`` constructs the component. The pydantic model, its JSON Schema, the
dashboard's form and ``diffsde plugins`` all come from that one class.
"""

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union

import pydantic

from ._config import ComponentConfig
from ._errors import REQUIREMENTS, SpecFieldError
from ._lineage import FrozenModel, RunRef

CONTEXT: dict[str, tuple[str, ...]] = {
    "sde": ("dim",),
    "dataset": (),
    "model": ("sde", "key", "prior"),
    "objective": ("sde", "data"),
    "sampler": (),
    "metric": (),
    "transform": ("sde",),
    "method": (
        "model",
        "objective",
        "optimizer",
        "schedule",
        "ema_decay",
        "sde",
        "data",
        "prior",
        "dim",
    ),
}
"""Constructor parameters of each kind that the pipeline fills; every other parameter is a spec
key. Part kinds (weightings, time distributions, …) have no context."""


MOVED_KEYS: dict[str, set[str]] = {}
"""Older names of keys that ``spec_aliases`` move into a part (``steps`` ← ``simulation_steps``),
collected from the components' ``spec_moved``, so an error in a moved value is reported where
the user wrote it."""


def describe_requirement(annotation: type, what: str) -> str:
    return REQUIREMENTS.get(annotation, f"{what} of type {annotation.__name__}")


def tag_of(cls: Any) -> str | None:
    """The ``tag`` class attribute, if it is a non-empty string."""
    tag = getattr(cls, "tag", None) if isinstance(cls, type) else None
    return tag if isinstance(tag, str) and tag else None


def kind_of(cls: type) -> str | None:
    """The nearest ``kind`` class attribute in the MRO of a part or component base."""
    for base in cls.__mro__:
        kind = base.__dict__.get("kind")
        if isinstance(kind, str):
            return kind
    return None


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One constructor parameter of a component: a spec key or a context value."""

    name: str
    annotation: Any
    default: Any  # inspect.Parameter.empty when required
    context: bool


def parameters(cls: type, kind: str) -> list[Parameter]:
    """The keyword parameters of ``cls``'s constructor (context ones marked)."""
    init = cls.__init__
    try:
        hints = typing.get_type_hints(init, include_extras=True)
    except Exception as err:  # an annotation naming something undefined
        raise TypeError(f"cannot read the annotations of {cls.__qualname__}: {err}") from None
    context = CONTEXT.get(kind, ())
    out = []
    for name, p in inspect.signature(init).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out.append(Parameter(name, hints.get(name, Any), p.default, name in context))
    return out


def requirement(cls: type, kind: str, name: str) -> type | None:
    """The class a context parameter ``name`` of ``cls`` must be an instance of, or None."""
    for p in parameters(cls, kind):
        if p.name == name and p.context:
            base = _strip(p.annotation)
            return base if isinstance(base, type) and base not in (Any, object) else None
    return None


def _strip(annotation: Any) -> Any:
    """``Annotated[T, ...]`` → T; ``T | None`` → T."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _strip(members[0])
    return annotation


class PartConfig(ComponentConfig):
    """A generated spec model of a part (a weighting, a step-size controller, …). One without
    settings is written, and stored, as its bare tag."""

    @pydantic.model_serializer(mode="wrap")
    def _bare_tag(self, handler):
        data = handler(self)
        return data["type"] if isinstance(data, dict) and list(data) == ["type"] else data


def _python_only(annotation: Any) -> bool:
    """A union member a spec cannot write: an equinox Module that is not a part (such as an
    already compiled ``Expression`` next to ``Expr``, the string the spec gives)."""
    if not isinstance(annotation, type):
        return False
    import equinox as eqx

    spec_written = kind_of(annotation) is not None or annotation is FrozenModel
    return issubclass(annotation, eqx.Module) and not spec_written


def _bare_to_mapping(value):
    return {"type": value} if isinstance(value, str) else value


def _is_float(annotation: Any) -> bool:
    base = _strip(annotation)
    return base is float


class SpecModels:
    """Turns classes into spec models, resolving part-typed parameters against the parts
    registered (``parts[kind]`` lists the part classes of each kind)."""

    def __init__(self, parts: Mapping[str, list[type]]):
        self.parts = parts
        self.made: dict[type, type[ComponentConfig]] = {}

    def union(self, kind: str) -> Any:
        configs = [self.config(c, kind) for c in self.parts.get(kind, [])]
        if not configs:
            raise TypeError(f"no part of kind '{kind}' is registered")
        union = configs[0] if len(configs) == 1 else Union[tuple(configs)]  # noqa: UP007
        return Annotated[
            union,
            pydantic.BeforeValidator(_bare_to_mapping),
            pydantic.Field(discriminator="type") if len(configs) > 1 else pydantic.Field(),
        ]

    def field_type(self, annotation: Any) -> Any:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            inner, *meta = typing.get_args(annotation)
            return Annotated[(self.field_type(inner), *meta)]
        if origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if not _python_only(a)]
            if len(members) == 1:
                return self.field_type(members[0])
            return Union[tuple(self.field_type(a) for a in members)]  # noqa: UP007
        if origin is list:
            (item,) = typing.get_args(annotation)
            return list[self.field_type(item)]
        if annotation is FrozenModel:  # another run's model: written {run: …, checkpoint: …}
            return RunRef
        if isinstance(annotation, type):
            kind = kind_of(annotation) if annotation.__dict__.get("kind") else None
            if kind is not None and kind in self.parts:
                return self.union(kind)
        return annotation

    def default(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.default(v) for v in value]
        tag = tag_of(type(value))
        if tag is not None and type(value) in self.made:
            return to_config(value, self.made[type(value)])
        return value

    def config(self, cls: type, kind: str) -> type[ComponentConfig]:
        if cls in self.made:
            return self.made[cls]
        tag = tag_of(cls)
        params = parameters(cls, kind)
        fields: dict[str, Any] = {"type": (Literal[tag], tag)}
        for p in params:
            if p.context:
                continue
            if p.name == "type":
                raise TypeError(
                    f"{cls.__qualname__} has a parameter `type`, which is the tag's key"
                )
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (self.field_type(p.annotation), self._default_after(default))
        base = PartConfig if kind not in CONTEXT else ComponentConfig
        validators = {}
        for new, old in getattr(cls, "spec_moved", {}).items():
            MOVED_KEYS.setdefault(new, set()).add(old)
        if callable(getattr(cls, "spec_aliases", None)):
            validators["_spec_aliases"] = pydantic.model_validator(mode="before")(
                _aliases(cls.spec_aliases)
            )
        model = pydantic.create_model(
            f"{cls.__name__}Spec",
            __base__=base,
            __doc__=inspect.getdoc(cls) or "",
            __module__=cls.__module__,
            __validators__=validators,
            **fields,
        )
        model.kind = kind
        model.component = cls
        if "directions" in dir(cls):  # a metric's ranking, read without building it
            model.directions = cls.directions
        model.build = _build_method(cls, kind, params)
        model.build.__doc__ = f"Construct {cls.__qualname__} from this section."
        self.made[cls] = model
        return model

    def _default_after(self, default: Any) -> Any:
        # defaults that are part instances become their spec models' instances; the part's
        # model must exist first, which config() of that part class makes on demand
        if default is ...:
            return ...
        values = default if isinstance(default, list) else [default]
        for value in values:
            tag, kind = tag_of(type(value)), kind_of(type(value))
            if tag is not None and kind in self.parts and type(value) not in self.made:
                self.config(type(value), kind)
        return self.default(default)


def _aliases(translate: Callable[[dict], dict]):
    """A before-validator applying a class's ``spec_aliases(data) -> data`` (older spellings of
    its section) to a mapping."""

    def validator(cls, data):
        return translate(dict(data)) if isinstance(data, dict) else data

    return classmethod(validator)


def to_config(instance: Any, model: type[ComponentConfig]) -> ComponentConfig:
    """The spec model of a part instance, read from its attributes of the constructor's
    parameter names."""
    values = {}
    for name in model.model_fields:
        if name == "type":
            continue
        value = getattr(instance, name)
        if tag_of(type(value)) is not None and hasattr(value, "__dataclass_fields__"):
            continue  # nested parts keep their defaults
        values[name] = value
    return model.model_construct(**values)


def _materialise(value: Any, annotation: Any) -> Any:
    if isinstance(value, ComponentConfig | RunRef):  # RunRef: the FrozenModel it names
        return value.build()
    if isinstance(value, list):
        return [_materialise(v, None) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and _is_float(annotation):
        return float(value)  # the spec accepts 1 where a float is meant; the class gets 1.0
    return value


def _build_method(cls: type, kind: str, params: list[Parameter]) -> Callable:
    def build(self, **context):
        values = {}
        for p in params:
            if p.context:
                if p.name not in context:
                    continue  # the class's own default, or its error about the missing value
                needed = _strip(p.annotation)
                given = context[p.name]
                checkable = isinstance(needed, type) and needed not in (Any, object)
                if checkable and given is not None and not isinstance(given, needed):
                    raise SpecFieldError(
                        "type",
                        f"{kind} '{cls.tag}' needs {describe_requirement(needed, p.name)}, and "
                        f"{type(given).__name__} is not one: change the {p.name}, or choose "
                        f"another {kind} (`diffsde plugins` lists them)",
                    )
                values[p.name] = given
            else:
                try:
                    values[p.name] = _materialise(getattr(self, p.name), p.annotation)
                except SpecFieldError as err:  # a part's own error, located inside its key
                    raise SpecFieldError(f"{p.name}.{err.field}", err.message, err.column) from None
        component = cls(**values)
        check = getattr(component, "check_context", None)
        if callable(check):
            check(**context)
        return component

    return build


def spec_configs(
    classes: Mapping[str, list[type]], parts: Mapping[str, list[type]]
) -> dict[type, type[ComponentConfig]]:
    """Spec models of every class in ``classes`` (by kind) and ``parts`` (by part kind)."""
    builder = SpecModels(parts)
    for kind, members in parts.items():
        for cls in members:
            builder.config(cls, kind)
    for kind, members in classes.items():
        for cls in members:
            builder.config(cls, kind)
    return builder.made


def changed_settings(config: ComponentConfig) -> list[tuple[str, Any]]:
    """The settings of a section that differ from their defaults, parts flattened: a part of
    another type gives ``(key, tag)``, then its own changed settings follow (``solver=heun,
    controller=fixed, steps=20``)."""
    out: list[tuple[str, Any]] = []
    for name, field in type(config).model_fields.items():
        if name == "type":
            continue
        value, default = getattr(config, name), field.default
        if isinstance(value, ComponentConfig):
            if type(value) is not type(default):
                out.append((name, value.type))
            out.extend(changed_settings(value))
        elif field.is_required() or value != default:
            out.append((name, value))
    return out
