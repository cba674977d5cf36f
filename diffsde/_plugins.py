"""The plugin manager and the registry of components it collects.

Built-ins are a plugin like any other. Third-party plugins are entry points in the group
``diffsde``, loaded lazily on first use of the registry; ``DIFFSDE_PLUGINS`` (comma-separated
entry-point names, empty for none) limits which ones load. A plugin that fails to import or
registers something invalid is reported (``Registry.errors``) and skipped; the rest keeps working.
"""

import dataclasses
import difflib
import importlib.metadata
import inspect
import os
import typing
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from ._component import SpecModels, kind_of, tag_of
from ._config import BASES, ComponentConfig
from ._errors import first_line

HOOKS: dict[str, str] = {
    "sde": "register_sdes",
    "objective": "register_objectives",
    "sampler": "register_samplers",
    "model": "register_models",
    "dataset": "register_datasets",
    "metric": "register_metrics",
    "method": "register_training_methods",
    "transform": "register_score_transforms",
}
PART_HOOK = "register_parts"
"""The hook of parts (weightings, time distributions, step-size controllers, …): each class
names its kind by its base's ``kind`` attribute."""
MODULE_BASES: dict[str, str] = {
    "sde": "diffsde._sde._base:AbstractSDE",
    "objective": "diffsde._objective:AbstractObjective",
    "sampler": "diffsde._sampler:AbstractSampler",
    "metric": "diffsde._metrics:AbstractMetric",
    "dataset": "diffsde._data:AbstractDataset",
    "model": "equinox:Module",
    "method": "diffsde._methods:AbstractTrainingMethod",
    "transform": "diffsde._transforms:AbstractScoreTransform",
}
"""What a one-class component of each kind derives from (imported when the registry is made)."""
ENTRY_POINT_GROUP = "diffsde"
ALLOW_LIST_VARIABLE = "DIFFSDE_PLUGINS"
BUILTIN = "diffsde"


@dataclasses.dataclass(frozen=True)
class Component:
    kind: str
    name: str
    config: type[ComponentConfig]
    plugin: str
    distribution: str
    cls: type | None = None
    """The component's class, whose constructor ``config`` was generated from (None for a
    section written as a pydantic model with ``build``)."""

    @property
    def doc(self) -> str:
        """First line of the component's docstring."""
        lines = (inspect.getdoc(self.config) or "").strip().splitlines()
        return lines[0] if lines else ""


@dataclasses.dataclass(frozen=True)
class PluginError:
    plugin: str
    distribution: str
    message: str
    kind: str | None = None
    """The kind of component it is about (None: no one kind)."""
    tag: str | None = None
    """The tag of the component it could not register (None: not about one component)."""
    lost: bool = False
    """The plugin registered nothing (it failed to import, or pluggy refused it)."""

    def __str__(self) -> str:
        return f"plugin '{self.plugin}' (distribution '{self.distribution}'): {self.message}"


IMPORT_FAILED = "failed to import: "


@dataclasses.dataclass(frozen=True)
class Page:
    """A dashboard page a plugin adds (``register_pages``): ``render()`` draws it."""

    title: str
    render: Any
    icon: str | None
    plugin: str
    distribution: str


@dataclasses.dataclass
class Registry:
    """Components by kind and name, dashboard pages, and the errors met while loading plugins."""

    components: dict[str, dict[str, Component]]
    errors: list[PluginError]
    pages: list[Page] = dataclasses.field(default_factory=list)
    parts: dict[str, dict[str, tuple[type, str, str]]] = dataclasses.field(default_factory=dict)
    """Parts by kind and tag: (class, plugin, distribution)."""

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> Component:
        return self.components[kind][name]

    def configs(self, kind: str) -> list[type[ComponentConfig]]:
        return [self.components[kind][n].config for n in self.names(kind)]

    def notes_for(self, kind: str, tag: str) -> list[PluginError]:
        """The errors that may explain why ``tag`` is not a registered ``kind``: a refused
        component of that kind and tag, a misspelt hook of that kind, and every plugin that
        registered nothing (it failed to import, or pluggy refused it)."""
        own = [e for e in self.errors if e.kind == kind and e.tag == tag]
        hooks = [e for e in self.errors if e.kind == kind and e.tag is None]
        return [*own, *hooks, *(e for e in self.errors if e.lost)]

    def where(self, kind: str, name: str) -> str:
        """``plugin 'p', distribution 'd'`` of a registered component."""
        c = self.get(kind, name)
        return f"plugin '{c.plugin}', distribution '{c.distribution}'"

    def rows(self) -> list[dict[str, str]]:
        """Every component as kind, name, distribution, plugin and one-line doc, by kind."""
        return [
            {
                "kind": kind,
                "name": c.name,
                "distribution": c.distribution,
                "plugin": c.plugin,
                "doc": c.doc,
            }
            for kind in self.components
            for c in (self.get(kind, n) for n in self.names(kind))
        ]


def type_tag(config: type) -> str | None:
    """The single string of a ``type: Literal["tag"]`` field, or None if there is none."""
    fields = getattr(config, "model_fields", {})
    field = fields.get("type")
    if field is None or typing.get_origin(field.annotation) is not typing.Literal:
        return None
    args = typing.get_args(field.annotation)
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


class _PluginHost:
    """Holds the pluggy manager, which plugin came from which distribution, and the registry."""

    def __init__(self):
        self.manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.manager.add_hookspecs(hookspecs)
        self.distributions: dict[str, str] = {}
        self.load_errors: list[PluginError] = []
        self.refused: dict[str, PluginError] = {}
        """Plugins whose hook implementations pluggy refused (by plugin name)."""
        self.entry_points_loaded = False
        self._registry: Registry | None = None
        from . import _builtin

        self.add(_builtin, BUILTIN, BUILTIN)

    def add(self, plugin: Any, name: str, distribution: str) -> None:
        """Register ``plugin``; one whose hook implementations pluggy refuses (arguments the
        hook does not pass) is reported as one :class:`PluginError` and left out."""
        try:
            self.manager.register(plugin, name=name)
        except pluggy.PluginValidationError as err:
            self.refused[name] = PluginError(
                name, distribution, _validation_message(self.manager, plugin, err), lost=True
            )
        except ValueError:  # pluggy: this name, or this very object, is registered already
            other = self.manager.get_name(plugin)
            problem = (
                f"its module is already registered as plugin '{other}': give each entry point "
                "its own module"
                if other is not None
                else f"the name '{name}' is taken by another plugin: give it another name"
            )
            self.refused[name] = PluginError(name, distribution, problem, lost=True)
            self._registry = None
            return
        self.distributions[name] = distribution
        self._registry = None

    def remove(self, name: str) -> None:
        if self.manager.has_plugin(name):
            self.manager.unregister(name=name)
        self.refused.pop(name, None)
        self.distributions.pop(name, None)
        self._registry = None

    def load_entry_points(self) -> None:
        self.entry_points_loaded = True
        allowed = os.environ.get(ALLOW_LIST_VARIABLE)
        allow = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allow is not None and ep.name not in allow:
                continue
            distribution = ep.dist.name if ep.dist is not None else "?"
            if self.manager.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
            except Exception as err:
                first = first_line(err, "")
                self.load_errors.append(
                    PluginError(
                        ep.name,
                        distribution,
                        f"{IMPORT_FAILED}{type(err).__name__}: {first}",
                        lost=True,
                    )
                )
                continue
            self.add(module, ep.name, distribution)

    def registry(self) -> Registry:
        if not self.entry_points_loaded:
            self.load_entry_points()
        if self._registry is None:
            self._registry = self._collect()
        return self._registry

    def _collect(self) -> Registry:
        errors = [*self.load_errors, *self.refused.values(), *self._unknown_hooks()]
        found: dict[str, dict[str, tuple[Any, str, str]]] = {kind: {} for kind in HOOKS}
        parts: dict[str, dict[str, tuple[Any, str, str]]] = {}
        hooks = [*HOOKS.items(), (None, PART_HOOK)]
        for kind, hook_name in hooks:
            for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
                plugin = impl.plugin_name
                distribution = self.distributions.get(plugin, "?")

                def register(obj, *, kind=kind, plugin=plugin, distribution=distribution):
                    if kind is None:
                        part_kind = kind_of(obj) if isinstance(obj, type) else None
                        table = parts.setdefault(part_kind, {}) if part_kind else {}
                        problem = _check_part(obj, part_kind, table)
                    else:
                        table = found[kind]
                        problem = _check_component(kind, obj, table)
                    if problem:
                        tag = (type_tag(obj) or tag_of(obj)) if isinstance(obj, type) else None
                        errors.append(PluginError(plugin, distribution, problem, kind, tag))
                        return
                    table[type_tag(obj) or tag_of(obj)] = (obj, plugin, distribution)

                _call(impl, hook_name, distribution, errors, register=register)
        components = self._spec_models(found, parts, errors)
        return Registry(components, errors, self._collect_pages(errors), parts=dict(parts))

    def _spec_models(self, found, parts, errors) -> dict[str, dict[str, Component]]:
        """Components by kind, the one-class ones with their generated spec models. A class
        whose spec model cannot be made is reported and left out."""
        models = SpecModels({k: [cls for cls, _, _ in v.values()] for k, v in parts.items()})
        components: dict[str, dict[str, Component]] = {kind: {} for kind in HOOKS}
        for kind, table in found.items():
            for name, (obj, plugin, distribution) in table.items():
                if isinstance(obj, type) and issubclass(obj, ComponentConfig):
                    components[kind][name] = Component(kind, name, obj, plugin, distribution)
                    continue
                try:
                    config = models.config(obj, kind)
                except Exception as err:
                    errors.append(
                        PluginError(
                            plugin,
                            distribution,
                            f"cannot read the spec of {obj.__qualname__} from its constructor: "
                            f"{err}",
                            kind,
                            name,
                        )
                    )
                    continue
                components[kind][name] = Component(kind, name, config, plugin, distribution, obj)
        return components

    def _unknown_hooks(self) -> list[PluginError]:
        """Hook implementations whose name is no diffsde hook (``register_sde``), which
        pluggy would otherwise ignore: one error each, with the nearest hook's name."""
        hooks = sorted(n for n, c in vars(self.manager.hook).items() if _has_spec(c))
        errors = []
        for name, caller in sorted(vars(self.manager.hook).items()):
            if name.startswith("_") or _has_spec(caller):
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook:
                    continue
                close = difflib.get_close_matches(name, hooks, n=1, cutoff=0.6)
                fix = f"did you mean {close[0]}?" if close else f"the hooks are {', '.join(hooks)}"
                kind = next((k for k, h in HOOKS.items() if close and h == close[0]), None)
                errors.append(
                    PluginError(
                        impl.plugin_name,
                        self.distributions.get(impl.plugin_name, "?"),
                        f"{name} is not a diffsde hook: {fix}",
                        kind,
                    )
                )
        return errors

    def _collect_pages(self, errors: list[PluginError]) -> list[Page]:
        pages: list[Page] = []
        titles: dict[str, Page] = {}
        for impl in self.manager.hook.register_pages.get_hookimpls():
            plugin = impl.plugin_name
            distribution = self.distributions.get(plugin, "?")

            def register(title, render, *, icon=None, plugin=plugin, distribution=distribution):
                if not (isinstance(title, str) and title.strip()) or not callable(render):
                    errors.append(
                        PluginError(
                            plugin,
                            distribution,
                            f"register_pages: register(title, render) takes a non-empty title "
                            f"and a callable, got {title!r} and {render!r}",
                        )
                    )
                    return
                if title in titles:
                    errors.append(
                        PluginError(
                            plugin,
                            distribution,
                            f"page '{title}' is already added by plugin "
                            f"'{titles[title].plugin}': give it another title",
                        )
                    )
                    return
                page = titles[title] = Page(title, render, icon, plugin, distribution)
                pages.append(page)

            _call(impl, "register_pages", distribution, errors, register=register)
        return pages

    def add_commands(self, subparsers) -> list[PluginError]:
        """Let every plugin add subcommands to ``subparsers``; a plugin that fails (or reuses
        a command name) is reported and skipped, the others keep theirs."""
        if not self.entry_points_loaded:
            self.load_entry_points()
        errors = list(self.load_errors)
        for impl in self.manager.hook.register_commands.get_hookimpls():
            plugin = impl.plugin_name
            before = dict(subparsers.choices)
            try:
                impl.function(subparsers=subparsers)
                for name in set(subparsers.choices) - set(before):
                    subparsers.choices[name].set_defaults(diffsde_plugin=plugin)
            except Exception as err:
                for name in set(subparsers.choices) - set(before):  # drop its half-made commands
                    del subparsers.choices[name]
                subparsers._choices_actions[:] = [
                    a for a in subparsers._choices_actions if a.dest in subparsers.choices
                ]
                errors.append(
                    PluginError(
                        plugin,
                        self.distributions.get(plugin, "?"),
                        f"register_commands raised {type(err).__name__}: {err}",
                    )
                )
        return errors


def _call(impl, hook_name: str, distribution: str, errors: list[PluginError], **kwargs) -> None:
    """Call one plugin's implementation of a hook; what it raises becomes its PluginError."""
    try:
        impl.function(**kwargs)
    except Exception as err:
        errors.append(
            PluginError(
                impl.plugin_name,
                distribution,
                f"{hook_name} raised {type(err).__name__}: {err}",
            )
        )


def _has_spec(caller: Any) -> bool:
    return isinstance(caller, pluggy.HookCaller) and caller.has_spec()


def _validation_message(manager: pluggy.PluginManager, plugin: Any, err: Exception) -> str:
    """One line for pluggy's refusal of a hook implementation: which hook, which arguments it
    declares that the hook does not pass, and what the hook passes."""
    for attr in dir(plugin):
        opts = manager.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            continue
        hook_name = opts.get("specname") or attr
        caller = getattr(manager.hook, hook_name, None)
        if not _has_spec(caller):
            continue
        function = getattr(plugin, attr)
        try:
            declared = [
                p.name
                for p in inspect.signature(function).parameters.values()
                if p.default is inspect.Parameter.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ]
        except (TypeError, ValueError):
            continue
        passed = list(caller.spec.argnames)
        extra = [a for a in declared if a not in passed and a != "self"]
        if extra:
            return (
                f"{hook_name}({', '.join(declared)}) declares {', '.join(extra)}, which the hook "
                f"does not pass: name its arguments from ({', '.join(passed)}), e.g. "
                f"def {hook_name}({', '.join(passed)})"
            )
    first = first_line(err)
    return f"pluggy refused its hook implementations: {first}"


def _module_base(kind: str) -> type:
    module, _, name = MODULE_BASES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def _check_component(kind: str, obj: Any, existing: dict[str, tuple]) -> str | None:
    label = getattr(obj, "__qualname__", repr(obj))
    article = "an" if kind[0] in "aeiou" else "a"
    if isinstance(obj, type) and inspect.isabstract(obj):
        return _abstract_message(obj, label)
    if isinstance(obj, type) and issubclass(obj, ComponentConfig):
        base = BASES.get(kind)
        if base is None:
            return (
                f"registered {label}, a spec model, as {article} {kind}: a {kind} is one class "
                f"deriving from {MODULE_BASES[kind].replace(':', '.')} with a `tag`"
            )
        if not issubclass(obj, base):
            return (
                f"registered {label} as {article} {kind}, but it does not subclass "
                f"diffsde.{base.__name__}: derive it from diffsde.{base.__name__}"
            )
        name = type_tag(obj)
        if name is None:
            return f'registered {label} without a field `type: Literal["<tag>"]`: add one'
        problem = _missing_class_attributes(obj, label, base)
        if problem:
            return problem
    else:
        base = _module_base(kind)
        if not (isinstance(obj, type) and issubclass(obj, base)):
            where = "diffsde" if base.__module__.startswith("diffsde") else base.__module__
            return (
                f"registered {label} as {article} {kind}, but it is neither a subclass of "
                f"{where}.{base.__name__} (one class with a `tag`) nor of "
                f"diffsde.{BASES[kind].__name__} (a spec model with `build`): derive it from one"
            )
        name = tag_of(obj)
        if name is None:
            return f'registered {label} without a class attribute `tag: ClassVar[str] = "…"`'
        problem = _abstract_variables(obj, label)
        if problem:
            return problem
    problem = _bad_directions(obj, label) if kind == "metric" else None
    return problem or _duplicate(kind, name, label, existing)


def _public_name(cls: type) -> str:
    """``diffsde.AbstractSDE`` for a diffsde base, ``module.Name`` otherwise."""
    module = "diffsde" if cls.__module__.startswith("diffsde") else cls.__module__
    return f"{module}.{cls.__name__}"


def _declared_by(cls: type, name: str) -> str:
    """The public name of the nearest base of ``cls`` that declares ``name`` abstract."""
    for base in cls.__mro__[1:]:
        member = base.__dict__.get(name)
        annotations = base.__dict__.get("__annotations__", {})
        if getattr(member, "__isabstractmethod__", False) or name in annotations:
            return _public_name(base)
    return _public_name(cls.__mro__[1])


def _declared_type(cls: type, name: str) -> str:
    """``float`` of a base's ``name: eqx.AbstractVar[float]``."""
    for base in cls.__mro__[1:]:
        annotation = base.__dict__.get("__annotations__", {}).get(name)
        if annotation is not None:
            args = typing.get_args(annotation)
            inner = args[0] if args else annotation
            return getattr(inner, "__name__", str(inner))
    return "…"


def _abstract_message(cls: type, label: str) -> str:
    missing = sorted(cls.__abstractmethods__)
    bases = sorted({_declared_by(cls, m) for m in missing})
    return (
        f"registered {label}, which is abstract: implement {', '.join(missing)} "
        f"(abstract in {', '.join(bases)})"
    )


def _abstract_variables(cls: type, label: str) -> str | None:
    """An ``eqx.AbstractVar``/``AbstractClassVar`` of a base that ``cls`` leaves undefined
    (equinox would refuse to build it, in the middle of a run)."""
    variables = sorted(getattr(cls, "__abstractvars__", ()))
    class_variables = sorted(getattr(cls, "__abstractclassvars__", ()))
    missing = [*variables, *class_variables]
    if not missing:
        return None
    bases = sorted({_declared_by(cls, m) for m in missing})
    first = missing[0]
    example = (
        f"`{first}: {_declared_type(cls, first)} = eqx.field(static=True, default=…)`"
        if variables
        else f"`{first}: ClassVar[{_declared_type(cls, first)}] = …`"
    )
    return (
        f"registered {label}, which does not define {', '.join(missing)} (required by "
        f"{', '.join(bases)}): add a field or class attribute for each, e.g. {example}"
    )


def _missing_class_attributes(cls: type, label: str, base: type) -> str | None:
    """A class attribute the spec-model base declares without a value (``ObjectiveConfig``'s
    ``needs_gaussian_kernel: ClassVar[bool]``) that ``cls`` does not set."""
    declared = {
        name: annotation
        for b in reversed(base.__mro__)
        if b.__module__.startswith("diffsde")
        for name, annotation in b.__dict__.get("__annotations__", {}).items()
    }
    for name, annotation in declared.items():
        if typing.get_origin(annotation) is not typing.ClassVar or name == "kind":
            continue
        if any(name in vars(b) for b in cls.__mro__):
            continue
        if name == "needs_gaussian_kernel":
            fix = (
                "add `needs_gaussian_kernel: ClassVar[bool] = True` if it uses the SDE's "
                "Gaussian transition kernel (as dsm does), False if it needs only samples of "
                "p_t (as ssm does)"
            )
        else:
            fix = f"give it a value (`{name}: ClassVar[...] = ...`)"
        return (
            f"registered {label} without the class attribute `{name}` that "
            f"{_public_name(base)} requires: {fix}"
        )
    return None


DIRECTIONS = ("min", "max", "zero")


def _bad_directions(cls: type, label: str) -> str | None:
    """A metric's ``directions`` must map each name it reports to "min", "max" or "zero"."""
    directions = getattr(cls, "directions", {})
    if not isinstance(directions, Mapping):
        return (
            f"registered {label}, whose `directions` is {type(directions).__name__}, not a "
            'mapping: give {name: "min" | "max" | "zero"} for the names it reports'
        )
    bad = {k: v for k, v in directions.items() if not isinstance(k, str) or v not in DIRECTIONS}
    if bad:
        name, value = next(iter(bad.items()))
        return (
            f"registered {label}, whose `directions` gives {name!r}: {value!r}: each name it "
            'reports maps to "min" (lower is better), "max" or "zero" (nearest 0)'
        )
    return None


def _check_part(obj: Any, kind: str | None, existing: dict[str, tuple]) -> str | None:
    label = getattr(obj, "__qualname__", repr(obj))
    if kind is None:
        return (
            f"registered {label} as a part, but neither it nor a base names its kind: derive it "
            "from a part base such as diffsde.AbstractWeighting"
        )
    name = tag_of(obj)
    if name is None:
        return f'registered {label} without a class attribute `tag: ClassVar[str] = "…"`'
    if inspect.isabstract(obj):
        return _abstract_message(obj, label)
    return _abstract_variables(obj, label) or _duplicate(kind, name, label, existing)


def _duplicate(kind: str, name: str, label: str, existing: dict[str, tuple]) -> str | None:
    if name in existing:
        _, plugin, distribution = existing[name]
        return (
            f"{kind} '{name}' ({label}) is already registered by plugin '{plugin}' "
            f"(distribution '{distribution}'): rename its tag"
        )
    return None


_host: _PluginHost | None = None


def _get_host() -> _PluginHost:
    global _host
    if _host is None:
        _host = _PluginHost()
    return _host


def get_registry() -> Registry:
    """The registry of every component, loading entry-point plugins on first call."""
    return _get_host().registry()


def add_plugin_commands(subparsers) -> list[PluginError]:
    """Add the subcommands plugins register (``register_commands``) to an argparse sub-parser
    action; returns the errors of plugins that failed."""
    return _get_host().add_commands(subparsers)


def register_plugin(plugin: ModuleType | object, name: str, distribution: str = "<local>") -> None:
    """Register a plugin object (module or instance with hookimpls) by hand, e.g. in tests."""
    _get_host().add(plugin, name, distribution)


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    _get_host().remove(name)


def reload_plugins() -> None:
    """Forget every loaded plugin (e.g. after changing DIFFSDE_PLUGINS); reload lazily."""
    global _host
    _host = None


def plugin_warnings(registry: Registry | None = None) -> list[str]:
    """One line per plugin problem, ``warning: plugin 'x' (distribution 'y'): …``, for a
    command that otherwise succeeds (``diffsde validate`` and ``diffsde run`` print them on
    stderr), so a plugin that failed to import is not silent."""
    registry = registry or get_registry()
    return [f"warning: {e}" for e in registry.errors]
