"""Spec text → validated spec and built objects, or a list of located, teaching errors."""

import collections
import dataclasses
import difflib
import math
import os
import pathlib
import reprlib
import stat
import typing
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pydantic
import yaml

from .._component import MOVED_KEYS, requirement
from .._config import SpecFieldError, SpecFieldErrors
from .._data import AbstractDataset
from .._errors import first_line
from .._plugins import Component, Registry, get_registry
from .._prior import AbstractPrior
from .._sde._base import AbstractGaussianSDE, AbstractSDE
from ._memory import memory_problems
from ._model import SECTIONS, GaussianPriorConfig, GibbsPriorConfig, SpecBase, spec_model
from ._source import (
    MAX_SPEC_BYTES,
    BoundedLoader,
    Location,
    Path,
    SourceError,
    SourceMap,
    load_yaml,
)


@dataclasses.dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec: where, which dotted key, and what to do about it."""

    location: Location
    key: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.location} {self.key}: {self.message}"
            if self.key
            else f"{self.location} {self.message}"
        )


class SpecError(ValueError):
    """A spec with one or more problems; ``str()`` lists them one per line."""

    def __init__(self, issues: Sequence[SpecIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclasses.dataclass(frozen=True)
class Setup:
    """A validated spec and the objects it declares."""

    spec: SpecBase
    sde: AbstractSDE
    prior: AbstractPrior
    data: AbstractDataset
    file: str
    transforms: tuple = ()
    """The spec's score transforms (``transforms:``), built, in order."""

    @property
    def dim(self) -> int:
        return self.data.dim

    def resolved_yaml(self) -> str:
        """The spec with every default filled in, as YAML (what is stored with a run)."""
        return dump_resolved(self.spec)


def dump_resolved(spec: SpecBase) -> str:
    def type_first(value):
        if isinstance(value, dict):
            ordered = {"type": value["type"]} if "type" in value else {}
            ordered.update((k, type_first(v)) for k, v in value.items() if k != "type")
            return ordered
        if isinstance(value, list):
            return [type_first(v) for v in value]
        return value

    return yaml.safe_dump(
        type_first(spec.model_dump(mode="json")), sort_keys=False, allow_unicode=True
    )


def _dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


def _data_path(data: Any, loc: Sequence[Any]) -> Path:
    """pydantic's loc, less the union-tag and model-name parts that are not keys of the data."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif _is_tag(node, part):
            continue  # pydantic names the union member by its tag
        elif isinstance(node, dict) and isinstance(part, str):
            last = loc[-1]
            written = [k for k in (last, *MOVED_KEYS.get(last, ())) if k in node]
            if part != last and isinstance(last, str) and written:
                path.append(written[0])  # a key a section's spec_aliases moved (sampler.rtol)
                break
            path.append(part)  # a key that is missing from the data
            node = None
        else:
            break
    return tuple(path)


def _as_written(source: SourceMap, path: Path) -> Path:
    """``path``, or where the user wrote its value under an older key that a section's
    ``spec_aliases`` moved (``objective.simulation_steps`` for ``objective.source.steps``)."""
    if path in source.values or path in source.keys:
        return path
    for old in MOVED_KEYS.get(str(path[-1]), ()):
        for k in range(len(path) - 1, 0, -1):
            candidate = (*path[:k], old)
            if candidate in source.values:
                return candidate
    return path


def _is_tag(node: Any, part: str) -> bool:
    return isinstance(node, dict) and node.get("type") == part


def _kind_of(path: Path) -> str | None:
    if len(path) >= 1 and path[0] in SECTIONS:
        return SECTIONS[path[0]]
    if path[:2] == ("eval", "metrics"):
        return "metric"
    if path[:1] == ("transforms",):
        return "transform"
    if path[:1] == ("prior",):
        return "prior"
    return None


def _choices(registry: Registry, kind: str | None) -> list[str]:
    if kind == "prior":
        return ["gaussian", "gibbs"]
    return registry.names(kind) if kind in registry.components else []


def _plugin_notes(registry: Registry, kind: str | None, tag: Any) -> str:
    """``; note: plugin 'x' (distribution 'y') failed to import: …`` for each plugin error
    that may be why ``tag`` is unknown (a failed import, a refused component of that tag)."""
    if kind not in registry.components:
        return ""
    return "".join(f"; note: {e}" for e in registry.notes_for(kind, str(tag)))


def _did_you_mean(value: Any, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _section_path(path: Path) -> Path:
    if path[:2] == ("eval", "metrics"):
        return path[:3]
    return path[:2] if path[:1] == ("transforms",) else path[:1]


def _describe(error: dict, path: Path, data: Any, registry: Registry) -> tuple[Path, str, bool]:
    """Turn one pydantic error into (path, message, point at the key rather than the value)."""
    kind = error["type"]
    ctx = error.get("ctx", {})
    part = _part_field(path)
    if kind in ("union_tag_invalid", "union_tag_not_found") and part is not None:
        choices = [c.strip().strip("'") for c in str(ctx.get("expected_tags", "")).split(",")]
        if kind == "union_tag_not_found":
            return path, f"missing `type:`; choose one of: {', '.join(choices)}", True
        tag = ctx.get("tag", error.get("input"))
        return (
            path,
            f"unknown {path[-1]} '{tag}'; valid choices: {', '.join(choices)}"
            f"{_did_you_mean(tag, choices)}",
            False,
        )
    if kind in ("union_tag_invalid", "union_tag_not_found") or (
        kind == "literal_error" and path[-1:] == ("type",) and _kind_of(path) is not None
    ):
        section = _section_path(path)
        choices = _choices(registry, _kind_of(section))
        where = (*section, "type")
        if kind == "union_tag_not_found":
            return section, f"missing `type:`; choose one of: {', '.join(choices)}", True
        tag = ctx.get("tag", error.get("input"))
        label = _kind_of(section)
        return (
            where,
            f"unknown {label} type '{tag}'; valid choices: {', '.join(choices)}"
            f"{_did_you_mean(tag, choices)}{_plugin_notes(registry, label, tag)}",
            False,
        )
    if kind == "extra_forbidden":
        parent = path[:-1]
        loc = error["loc"]
        model = _model_at(registry, loc[:-1])
        allowed = (
            list(model.model_fields) if model is not None else _allowed_keys(parent, data, registry)
        )
        if len(loc) >= 3 and isinstance(loc[-3], str) and loc[-3] not in path:
            # a key the section's spec_aliases moved into a part (sampler.rtol → controller)
            return (
                path,
                f"'{path[-1]}' does not apply to {loc[-3]} '{loc[-2]}'; its keys: "
                f"{', '.join(allowed)}",
                True,
            )
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        valid = f"; valid keys: {', '.join(allowed)}" if allowed else ""
        return path, f"unknown key '{path[-1]}'{hint}{valid}", True
    if kind == "missing":
        return path, f"missing required key '{path[-1]}'", True
    if kind == "expression":
        return path, f"invalid expression: {ctx['message']}", False
    given = error.get("input")
    if kind in _NUMBER_TYPES and isinstance(given, bool):
        return (
            path,
            f"expected a number, got the boolean {given} (YAML reads yes/no/on/off/true/false "
            "as booleans): write a number",
            False,
        )
    if kind == "int_type" and isinstance(given, float) and given.is_integer():
        return (
            path,
            f"expected a whole number, got the float {given!r}: write it as an integer "
            f"({int(given)})",
            False,
        )
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return path, f"expected a mapping of keys (such as {{type: …}}), got {_brief(given)}", False
    if kind == "finite_number":
        return path, f"expected a finite number, got {_brief(given)}: write a finite value", False
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if (
        "input" in error
        and kind not in ("none_registered",)
        and not isinstance(error["input"], dict | list)
    ):
        message = f"{message} (got {_brief(error['input'])})"
    return path, message, False


_REPR = reprlib.Repr()  # keyword arguments need Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 60, 60, 40
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = 6


def _brief(value: Any) -> str:
    """A short repr of a value the user wrote: a message quotes it, never all of a huge one."""
    return _REPR.repr(value)


_NUMBER_TYPES = ("float_type", "int_type", "finite_number")


def _part_field(path: Path) -> str | None:
    """The key of a part inside a component's section (``sampler.solver``), or None."""
    section = _section_path(path)
    return path[-1] if len(path) > len(section) and isinstance(path[-1], str) else None


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models_in(a)]


def _model_at(registry: Registry, loc: Sequence[Any]) -> type[pydantic.BaseModel] | None:
    """The pydantic model validating the value at pydantic's ``loc`` (tags included), or
    None."""
    model: type[pydantic.BaseModel] | None = spec_model(registry)
    candidates: list[type[pydantic.BaseModel]] = []
    for part in loc:
        if candidates:
            tagged = [m for m in candidates if _tag_of(m) == part]
            if tagged:
                model, candidates = tagged[0], []
                continue
            if len(candidates) == 1:
                model, candidates = candidates[0], []
            else:
                return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        candidates = _models_in(field.annotation)
        if not candidates:
            return None
    if candidates:
        return candidates[0] if len(candidates) == 1 else None
    return model


def _tag_of(model: type[pydantic.BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


def _allowed_keys(parent: Path, data: Any, registry: Registry) -> list[str]:
    node: Any = data
    for part in parent:
        node = node[part]
    kind = _kind_of(parent) if len(parent) in (1, 3) else None
    if (
        kind in registry.components
        and isinstance(node, dict)
        and node.get("type") in registry.components[kind]
    ):
        return list(registry.get(kind, node["type"]).config.model_fields)
    if parent == ():
        return list(spec_model(registry).model_fields)
    if parent == ("prior",) and isinstance(node, dict):
        model = GibbsPriorConfig if node.get("type") == "gibbs" else GaussianPriorConfig
        return list(model.model_fields)
    if len(parent) == 1:
        field = spec_model(registry).model_fields.get(parent[0])
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            return list(annotation.model_fields)
    return []


def _issue(source: SourceMap, path: Path, message: str, *, at_key=False, column=None) -> SpecIssue:
    location = source.locate(path, key=at_key)
    if column is not None:
        location = location.shifted(column)
    return SpecIssue(location, _dotted(path), message)


def apply_overrides(data: dict, overrides: Sequence[str], source: SourceMap) -> list[SpecIssue]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) in place."""
    issues = []
    for item in overrides:
        origin = Location(f"--set {item}", 1, 1)
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            issues.append(SpecIssue(origin, "", "an override must look like key.path=value"))
            continue
        path: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
        try:
            value = yaml.load(raw, Loader=BoundedLoader) if raw.strip() else ""  # noqa: S506
        except yaml.YAMLError as err:
            issues.append(SpecIssue(origin, key, f"the value is not valid YAML: {err}"))
            continue
        node: Any = data
        for i, part in enumerate(path[:-1]):
            if isinstance(node, dict):
                node = node.setdefault(part, {})
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                issues.append(
                    SpecIssue(origin, key, f"'{_dotted(tuple(path[:i]))}' is not a mapping")
                )
                break
        else:
            if isinstance(node, dict) or (isinstance(node, list) and isinstance(path[-1], int)):
                node[path[-1]] = value
                source.values[tuple(path)] = Location(
                    f"--set {item}", 1, len(key) + 2, scalar_start=len(key) + 2
                )
                source.keys[tuple(path)] = Location(f"--set {item}", 1, 1)
            else:
                issues.append(
                    SpecIssue(origin, key, f"'{_dotted(tuple(path[:-1]))}' is not a mapping")
                )
    return issues


def _field_issues(
    source: SourceMap, section: Path, err: SpecFieldError | SpecFieldErrors
) -> list[SpecIssue]:
    errors = err.errors if isinstance(err, SpecFieldErrors) else [err]
    return [
        _issue(source, (*section, *e.field.split(".")), e.message, column=e.column) for e in errors
    ]


def _construct(section: Path, source: SourceMap, build, issues: list[SpecIssue]):
    """Run ``build()``; turn the errors it raises into issues located in ``section``."""
    try:
        return build()
    except (SpecFieldError, SpecFieldErrors) as err:
        issues += _field_issues(source, section, err)
    except ValueError as err:
        issues.append(_issue(source, section, str(err)))
    return None


def _build(spec: SpecBase, source: SourceMap, registry: Registry, file: str):
    issues: list[SpecIssue] = []
    data = _construct(("data",), source, spec.data.build, issues)
    if data is None:
        return None, issues
    dim = data.dim
    sde = _construct(("sde",), source, lambda: spec.sde.build(dim=dim), issues)
    if spec.prior is not None:
        prior = _construct(("prior",), source, lambda: spec.prior.build(dim=dim), issues)
    if sde is None:
        return None, issues
    issues += _trace_sde(spec, sde, registry, source)
    if spec.prior is None:
        try:
            prior = sde.prior()
        except ValueError as err:
            issues.append(_issue(source, ("sde", "type"), str(err)))
    if not issues:
        issues += _trace_prior(spec, sde, prior, registry, source)
    if not issues:  # the runs the spec takes models from, loaded before anything is built
        lineage = _lineage_issues(spec, sde, prior, dim, source)
        if lineage:
            return None, lineage
    issues += _condition_issues(spec, data, source)
    sampler_eps = getattr(spec.sampler, "eps", 0.0)
    outside = [t for t in spec.eval.save_times if not sampler_eps <= t <= sde.T]
    if outside:
        issues.append(
            _issue(
                source,
                ("eval", "save_times"),
                f"times {outside} lie outside [sampler.eps, T] = [{sampler_eps}, {sde.T}]",
            )
        )
    objective = spec.objective
    if (
        objective is not None
        and needs_gaussian_kernel(registry.get("objective", objective.type))
        and not isinstance(sde, AbstractGaussianSDE)
    ):
        # why DSM (or ESM) cannot train this SDE, and what can
        usable = compatible_objectives(sde, registry)
        alternatives = (
            f"objectives that can train it: {', '.join(usable)}"
            if usable
            else "no registered objective can train it yet"
        )
        issues.append(
            _issue(
                source,
                ("objective", "type"),
                f"objective '{objective.type}' needs an SDE with a Gaussian transition kernel, and "
                f"sde type '{spec.sde.type}' has none; {alternatives}",
            )
        )
    elif not issues:
        issues += _build_checks(spec, sde, prior, data, source, registry)
    transforms = []
    for i, item in enumerate(getattr(spec, "transforms", [])):
        built = _construct(("transforms", i), source, lambda item=item: item.build(sde=sde), issues)
        transforms.append(built)
    if issues:
        return None, issues
    return Setup(spec, sde, prior, data, file, tuple(transforms)), []


def _lineage_issues(spec, sde: AbstractSDE, prior, dim: int, source: SourceMap) -> list[SpecIssue]:
    """Resolve and load the runs that ``init:`` and ``FrozenModel`` values name (see
    ``diffsde._lineage``); a missing, damaged or checkpoint-less parent, or an ``init`` parent of
    another architecture, is an issue at the reference's ``run``."""
    from .._lineage import check

    return [_issue(source, path, message) for path, message in check(spec, sde, prior, dim)]


def _build_checks(
    spec, sde: AbstractSDE, prior, data, source: SourceMap, registry: Registry
) -> list[SpecIssue]:
    """Build the sections whose checks involve the SDE or the data (the model only abstractly,
    without computing its weights), so a combination that cannot run, such as a noise-predicting
    model or σ²-weighting on an SDE without a Gaussian kernel, is a located spec error now
    rather than an exception from `diffsde run`."""
    checks = {
        "objective": lambda: spec.objective.build(sde=sde, data=data),
        "model": lambda: _check_conditions(
            eqx.filter_eval_shape(spec.model.build, sde=sde, key=jr.key(0), prior=prior), data
        ),
        "sampler": lambda: spec.sampler.build(sde=sde),
    }
    issues, built = [], {}
    for section, build in checks.items():
        if getattr(spec, section) is None:
            continue
        try:
            built[section] = build()
        except (SpecFieldError, SpecFieldErrors) as err:
            issues += _field_issues(source, (section,), err)
        except ValueError as err:
            issues.append(_issue(source, (section,), str(err)))
        except Exception as err:  # a plugin's or JAX's own error: reported, never a traceback
            first = first_line(err, "")
            issues.append(
                _issue(source, (section,), f"cannot be built: {type(err).__name__}: {first}")
            )
    if not issues and "model" in built:
        issues += _trace_model(spec, built["model"], data, registry, source)
    method = getattr(spec, "method", None)
    if not issues and method is not None and "model" in built:
        try:
            _check_method(spec, sde, prior, data, built)
        except (SpecFieldError, SpecFieldErrors) as err:
            issues += _field_issues(source, ("method",), err)
        except ValueError as err:
            issues.append(_issue(source, ("method",), str(err)))
    if issues:
        return issues
    for path, message in memory_problems(spec, sde, data, built.get("model")):
        written = _as_written(source, path)
        if written != path:
            message = message.replace(_dotted(path), _dotted(written))
        issues.append(_issue(source, written, message))
    if issues:
        return issues
    return _probe(spec, sde, prior, data, source)


def _check_conditions(model, data: AbstractDataset):
    """A conditional model (``classes`` > 0) needs data with as many class labels (conditions,
    seam 1); returns ``model``."""
    from .._model import condition_classes

    classes = condition_classes(model)
    if classes and classes != data.classes:
        has = f"{data.classes} class labels" if data.classes else "no class labels"
        raise SpecFieldError(
            "classes",
            f"the model is conditional on {classes} classes, but the data yield {has}: set "
            f"classes: {data.classes} to match"
            if data.classes
            else f"the model is conditional on {classes} classes, but the data yield {has}: "
            "use labelled data (e.g. data: {type: gmm, labels: true}) or classes: 0",
        )
    return model


def _condition_issues(spec, data: AbstractDataset, source: SourceMap) -> list[SpecIssue]:
    """``eval.condition`` must be one of the data's classes, for a conditional model."""
    from .._model import condition_classes

    fixed = spec.eval.condition
    if fixed is None:
        return []
    where = ("eval", "condition")
    if not data.classes:
        return [
            _issue(
                source,
                where,
                f"is {fixed}, but the data yield no class labels: remove it or use labelled "
                "data (e.g. data: {type: gmm, labels: true})",
            )
        ]
    if fixed >= data.classes:
        return [_issue(source, where, f"is {fixed}; the data's classes are 0..{data.classes - 1}")]
    model = spec.model
    if model is not None and not condition_classes(model):
        return [
            _issue(
                source,
                where,
                f"samples class {fixed}, but the model is unconditional (it would ignore the "
                f"class): set model.classes: {data.classes}, or remove eval.condition",
            )
        ]
    return []


def _check_method(spec, sde, prior, data, built) -> None:
    """Build the training method on the abstract model (no weights computed), so its own checks
    run at validation; skipped when it needs an objective the spec lacks (`diffsde run` asks for
    it)."""
    from ._optim import build_method, method_requires

    objective = built.get("objective")
    if objective is None and method_requires(spec, "objective"):
        return
    eqx.filter_eval_shape(
        lambda model: build_method(spec, model, objective, sde=sde, data=data, prior=prior),
        built["model"],
    )


PROBE_POINTS = 3
"""Rows of the data at which drift, prior and model are probed (with the origin)."""


def _probe(spec, sde: AbstractSDE, prior, data, source: SourceMap) -> list[SpecIssue]:
    """Evaluate drift, diffusion, kernel, prior score and the untrained model's score at a few
    (t, x) — t at the sampler's ε and 16 even steps of (0, T], x at the origin and rows of the
    data — and name the first that is not finite, so a NaN from the SDE is not reported as a
    diverging loss later."""
    eps = getattr(spec.sampler, "eps", None) or 1e-3 * sde.T
    ts = np.asarray([eps, *np.linspace(sde.T / 16, sde.T, 16)], np.float32)
    fields = type(spec.sde).model_fields
    drift_key = next((k for k in ("drift", "f", "potential") if k in fields), None)
    diffusion_key = next((k for k in ("diffusion", "g") if k in fields), None)
    probes = [
        (
            ("sde", drift_key) if drift_key else ("sde",),
            "the drift",
            lambda t, x: sde.drift(t, x),
        ),
        (
            ("sde", diffusion_key) if diffusion_key else ("sde",),
            "the diffusion",
            lambda t, x: sde.diffusion(t),
        ),
    ]
    if sde.has_gaussian_kernel:
        probes.append((("sde",), "the transition kernel (λ_t, σ_t)", lambda t, x: sde.kernel(t)))
    prior_key = ("prior",) if spec.prior is not None else ("sde", drift_key or "type")
    if isinstance(spec.prior, GibbsPriorConfig):
        prior_key = ("prior", "potential")
    probes.append((prior_key, "the prior's log-density", lambda t, x: prior.log_prob(x)))
    probes.append((prior_key, "the prior's score", lambda t, x: prior.score(x)))
    parameterisation = getattr(spec.model, "parameterisation", None)
    if sde.has_gaussian_kernel and parameterisation is not None:
        resolved = parameterisation.build().resolve(sde)
        if resolved.needs_kernel:
            probes.append(
                (
                    ("model", "parameterisation"),
                    f"1/σ_t, by which parameterisation '{resolved.tag}' divides,",
                    lambda t, x: 1 / sde.kernel(t)[1],
                )
            )

    def points():
        rows = data.sample(key=jr.key(0), n=PROBE_POINTS).astype(jnp.float32)
        return jnp.concatenate([jnp.zeros((1, sde.dim), jnp.float32), rows])

    def on_grid(fn, xs):
        return jax.vmap(lambda t: jax.vmap(lambda x: fn(t, x))(xs))(jnp.asarray(ts))

    @jax.jit
    def evaluate():  # one compiled function for every probe (eager evaluation compiles per op)
        xs = points()
        return xs, [on_grid(fn, xs) for _, _, fn in probes]

    try:
        xs, results = evaluate()
    except Exception:
        try:
            xs, results = points(), [None] * len(probes)  # the failing probe is found below
        except Exception as err:
            first = first_line(err)
            return [_issue(source, ("data",), f"cannot be sampled: {first}")]
    for (key, what, fn), values in zip(probes, results, strict=True):
        try:
            if values is None:
                values = on_grid(fn, xs)
        except Exception as err:
            first = first_line(err)
            return [_issue(source, key, f"{what} cannot be evaluated: {first}")]
        for value in jax.tree_util.tree_leaves(values):
            value = np.asarray(value).reshape(len(ts), len(xs), -1)
            bad = np.argwhere(~np.isfinite(value))
            if bad.size:
                i, j, k = bad[0]
                x = np.array2string(np.asarray(xs[j]), precision=3, threshold=6)
                at = f"x={x}" if "prior" in what else f"t={float(ts[i]):.4g}, x={x}"
                return [
                    _issue(
                        source,
                        key,
                        f"{what} is {value[i, j, k]} at {at}: {_probe_fix(key)}",
                    )
                ]
    return []


def _probe_fix(key: Path) -> str:
    if key[0] == "model":
        return (
            "the parameterisation divides by σ_t or uses the prior's score there; choose "
            "parameterisation: score, or an SDE whose σ_t > 0 for t ≥ sampler.eps"
        )
    if len(key) > 1 and key[-1] != "type":
        return f"fix {'.'.join(str(p) for p in key)} or its params so it is finite there"
    return f"check the {key[0]} parameters (are they too large?)"


def needs_gaussian_kernel(objective: Component) -> bool:
    """Whether a registered objective needs an SDE with a Gaussian kernel: its ``sde``
    parameter is annotated ``AbstractGaussianSDE`` (a one-class objective), or its spec model
    says ``needs_gaussian_kernel``."""
    if objective.cls is not None:
        needed = requirement(objective.cls, "objective", "sde")
        return needed is not None and issubclass(needed, AbstractGaussianSDE)
    return bool(getattr(objective.config, "needs_gaussian_kernel", False))


def compatible_objectives(sde: AbstractSDE, registry: Registry) -> list[str]:
    """Names of registered objectives that can train a score for ``sde``."""
    return [
        name
        for name in registry.names("objective")
        if isinstance(sde, AbstractGaussianSDE)
        or not needs_gaussian_kernel(registry.get("objective", name))
    ]


PRIOR_PROBE_ROWS = 4
"""Rows drawn from the prior when its ``sample`` is traced for its shape."""


def _who(obj: Any, registry: Registry, kind: str, tag: str) -> str:
    """``WideG (plugin 'x', distribution 'y')``: the class of a built component and where it
    comes from, for a shape error that is the plugin author's to fix."""
    name = type(obj).__name__
    if tag in registry.components.get(kind, {}):
        return f"{name} ({registry.where(kind, tag)})"
    return name


def _shape_of(out: Any) -> str:
    """A traced output, described: ``shape (3,)``, ``a tuple of 3``, ``a dict``."""
    if isinstance(out, jax.ShapeDtypeStruct):
        return f"shape {out.shape}"
    if isinstance(out, tuple | list):
        shapes = [str(o.shape) if isinstance(o, jax.ShapeDtypeStruct) else "?" for o in out]
        return f"a {type(out).__name__} of shapes {', '.join(shapes)}"
    return f"a {type(out).__name__}"


def _first_line(err: Exception) -> str:
    """``Type: first line``, or the type alone for an empty message."""
    first = first_line(err, "")
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _traced(trace, what: str, expected: str, fix: str, check) -> str | None:
    """Trace ``trace()`` with ``jax.eval_shape``; a message if it fails or ``check(out)`` is
    false, else None."""
    try:
        out = trace()
    except Exception as err:
        return f"{what} cannot be evaluated on {expected}: {_first_line(err)}"
    if check(out):
        return None
    return f"{what} gives {_shape_of(out)}, expected {fix}"


def _is_shape(out: Any, shape: tuple[int, ...]) -> bool:
    return isinstance(out, jax.ShapeDtypeStruct) and out.shape == shape


def _trace_sde(spec, sde: AbstractSDE, registry: Registry, source: SourceMap) -> list[SpecIssue]:
    """Trace the SDE's drift, diffusion and kernel with ``jax.eval_shape`` for the data's
    dimension: a wrong shape is an issue at ``sde.type`` naming the class and its plugin,
    rather than an error in the middle of a run."""
    dim = sde.dim
    x = jax.ShapeDtypeStruct((dim,), jnp.float32)
    t = jax.ShapeDtypeStruct((), jnp.float32)
    inputs = f"t of shape () and x of shape ({dim},)"
    checks = [
        (
            lambda: jax.eval_shape(sde.drift, t, x),
            "drift(t, x)",
            inputs,
            f"shape ({dim},), one value per coordinate of x: return an array like x",
            lambda out: _is_shape(out, (dim,)),
        ),
        (
            lambda: jax.eval_shape(sde.diffusion, t),
            "diffusion(t)",
            "t of shape ()",
            "shape (), the scalar g(t) shared by every coordinate: return a scalar",
            lambda out: _is_shape(out, ()),
        ),
    ]
    if isinstance(sde, AbstractGaussianSDE):
        checks.append(
            (
                lambda: jax.eval_shape(sde.kernel, t),
                "kernel(t)",
                "t of shape ()",
                "(λ_t, σ_t), two scalars (the mean's scale and the standard deviation, not a "
                "variance): return a tuple of two scalars",
                lambda out: (
                    isinstance(out, tuple | list)
                    and len(out) == 2
                    and all(_is_shape(o, ()) for o in out)
                ),
            )
        )
    who = _who(sde, registry, "sde", spec.sde.type)
    issues = []
    for trace, what, given, expected, check in checks:
        problem = _traced(trace, what, given, expected, check)
        if problem:
            issues.append(_issue(source, ("sde", "type"), f"{who}: {problem}"))
    return issues


def _trace_prior(spec, sde: AbstractSDE, prior, registry: Registry, source: SourceMap):
    """The prior's ``sample(key=…, n=…)`` must give ``(n, dim)`` rows (traced)."""
    n, dim = PRIOR_PROBE_ROWS, sde.dim
    if spec.prior is not None:
        where, who = ("prior", "type"), type(prior).__name__
    else:
        where, who = ("sde", "type"), f"the prior() of {_who(sde, registry, 'sde', spec.sde.type)}"
    problem = _traced(
        lambda: jax.eval_shape(lambda k: prior.sample(key=k, n=n), jr.key(0)),
        f"sample(key=…, n={n})",
        "a key",
        f"shape ({n}, {dim}), n rows in the data's dimension {dim}",
        lambda out: _is_shape(out, (n, dim)),
    )
    return [_issue(source, where, f"{who}: {problem}")] if problem else []


def _trace_model(spec, model, data: AbstractDataset, registry: Registry, source: SourceMap):
    """The (abstract) model's ``model(x, t)`` must give ``(dim,)`` (traced, no weights)."""
    from .._model import condition_classes

    dim = data.dim
    x = jax.ShapeDtypeStruct((dim,), jnp.float32)
    t = jax.ShapeDtypeStruct((), jnp.float32)
    # the abstract model's leaves are ShapeDtypeStructs: trace them as the arrays they stand for
    leaves, rest = eqx.partition(model, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))
    extra = {"condition": jax.ShapeDtypeStruct((), jnp.int32)} if condition_classes(model) else {}

    def call(leaves, x, t, extra):
        return eqx.combine(leaves, rest)(x, t, **extra)

    problem = _traced(
        lambda: jax.eval_shape(call, leaves, x, t, extra),
        "model(x, t)",
        f"t of shape () and x of shape ({dim},)",
        f"shape ({dim},), the score at one point x: return one value per coordinate",
        lambda out: _is_shape(out, (dim,)),
    )
    who = _who(model, registry, "model", spec.model.type)
    return [_issue(source, ("model", "type"), f"{who}: {problem}")] if problem else []


def validate_text(
    text: str,
    file: str = "<spec>",
    overrides: Sequence[str] = (),
    *,
    registry: Registry | None = None,
    base_dir: str | pathlib.Path | None = None,
) -> Setup:
    """Validate spec text; return the :class:`Setup` or raise :class:`SpecError`.

    Relative file paths in the spec (``data: {type: file, path: …}``) are resolved against
    ``base_dir``, by default the current working directory (:func:`load_spec` passes the spec
    file's directory); sections see it as ``context["base_dir"]`` of pydantic validation.
    """
    registry = registry or get_registry()
    try:
        data, source = load_yaml(text, file)
    except SourceError as err:
        raise SpecError([SpecIssue(err.location, err.key, err.message)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(
            [
                SpecIssue(
                    Location(file, 1, 1),
                    "",
                    "a spec must be a mapping of sections (sde:, data:, …)",
                )
            ]
        )
    issues = apply_overrides(data, overrides, source)
    issues += [_issue(source, path, message) for path, message in _out_of_float32(data, ())]
    if issues:
        raise SpecError(issues)
    try:
        spec = spec_model(registry).model_validate(
            data, context={"base_dir": pathlib.Path.cwd() if base_dir is None else base_dir}
        )
    except pydantic.ValidationError as err:
        found = []
        for error, path in _one_error_per_union(data, err.errors()):
            path, message, at_key = _describe(error, path, data, registry)
            column = error.get("ctx", {}).get("column") if error["type"] == "expression" else None
            found.append(_issue(source, path, message, at_key=at_key, column=column))
        raise SpecError(_unique(found)) from None
    setup, issues = _build(spec, source, registry, file)
    if issues:
        raise SpecError(issues)
    return setup


_CONTAINER_TYPES = ("list_type", "dict_type", "model_type", "tuple_type", "model_attributes_type")


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _out_of_float32(node: Any, path: Path) -> list[tuple[Path, str]]:
    """Finite numbers beyond float32's range, in which every array of a run is computed."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _out_of_float32(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _out_of_float32(v, (*path, i))]
    if isinstance(node, float) and math.isfinite(node) and abs(node) > FLOAT32_MAX:
        return [
            (
                path,
                f"{node:g} is beyond float32's range (±{FLOAT32_MAX:.3g}), in which diffsde "
                "computes: write a smaller number",
            )
        ]
    return []


def _one_error_per_union(data: Any, errors: list[dict]) -> list[tuple[dict, Path]]:
    """pydantic reports a bad value of ``float | list[float]`` once per member of the union;
    keep the member that matches the value's shape: drop "should be a list" where another member
    also failed, and "should be a number" for a list whose items were checked."""
    located = [(e, _data_path(data, e["loc"])) for e in errors]
    below = collections.Counter(p[:k] for _, p in located for k in range(len(p) + 1))
    kept = []
    for error, path in located:
        others = below[path] - 1  # errors at ``path`` or inside it, this one excepted
        container_input = isinstance(error.get("input"), list | dict)
        if others and (
            error["type"] in _CONTAINER_TYPES
            or (container_input and error["type"] in (*_NUMBER_TYPES, "string_type"))
        ):
            continue
        kept.append((error, path))
    return kept


MAX_ISSUES = 50  # reported at once; a spec with more is told how many more there are


def _unique(issues: list[SpecIssue]) -> list[SpecIssue]:
    seen, out = set(), []
    for issue in issues:
        if (issue.location, issue.key, issue.message) not in seen:
            seen.add((issue.location, issue.key, issue.message))
            out.append(issue)
    out.sort(key=lambda i: (i.location.file, i.location.line, i.location.column))
    if len(out) > MAX_ISSUES:
        rest = out[MAX_ISSUES]
        more = f"and {len(out) - MAX_ISSUES} more problems; fix the ones above first"
        out = [*out[:MAX_ISSUES], SpecIssue(rest.location, rest.key, more)]
    return out


def load_spec(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> Setup:
    """Read and validate the spec file at ``path``; raise :class:`SpecError` on any problem.

    Relative file paths inside the spec are resolved against the spec file's directory.
    """
    path = pathlib.Path(path)
    origin = Location(str(path), 1, 1)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device would block or never end
            raise SpecError([SpecIssue(origin, "", "not a regular file: give a .yaml file")])
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        raise SpecError([SpecIssue(origin, "", f"cannot read: {err.strerror}")]) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(
            [
                SpecIssue(
                    origin,
                    "",
                    f"the spec is over {MAX_SPEC_BYTES:,} bytes (1 MiB): a spec "
                    "needs a few kilobytes, put data in a file (data: {type: file, path: …})",
                )
            ]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        before = raw[: err.start]
        where = Location(str(path), before.count(b"\n") + 1, len(before.rsplit(b"\n", 1)[-1]) + 1)
        raise SpecError(
            [
                SpecIssue(
                    where,
                    "",
                    f"not UTF-8 text (byte {raw[err.start]:#04x}): save the spec as UTF-8",
                )
            ]
        ) from None
    return validate_text(text, str(path), overrides, base_dir=path.parent)
