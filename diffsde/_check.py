"""``diffsde check KIND TAG``: a registered component, built from spec settings like any spec
section, checked by the conformance kit (:mod:`diffsde._conformance`)."""

import pathlib
from collections.abc import Mapping
from typing import Any

import jax.random as jr
import yaml

from ._conformance import (
    CheckReport,
    check_dataset,
    check_metric,
    check_model,
    check_objective,
    check_sampler,
    check_sde,
    check_transform,
    mixture,
)
from ._conformance._method import check_method
from ._plugins import get_registry
from ._spec._optim import build_method
from ._spec._validate import SpecError, validate_text

KINDS = ("sde", "sampler", "objective", "metric", "dataset", "model", "transform", "method")
"""The kinds ``diffsde check`` knows how to check."""
SECTION = {
    "sde": "sde",
    "sampler": "sampler",
    "objective": "objective",
    "metric": "eval.metrics.0",
    "dataset": "data",
    "model": "model",
    "transform": "transforms.0",
    "method": "method",
}
"""Where each kind's section sits in the spec ``diffsde check`` builds, as its errors name it."""
DIMS = {
    "sde": 2,
    "sampler": 8,
    "objective": 2,
    "metric": 2,
    "dataset": None,
    "model": 2,
    "transform": 2,
    "method": 2,
}
"""The data dimension each kind is checked in (a sampler's order needs more coordinates to
average its weak error over; a dataset has its own)."""


def settings_from(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` → ``{"a": 1, "b": {"c": "x"}}`` (values read as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set steps=20")
        node = out
        *parents, last = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {pair!r}: {part} is already set to a value")
        if isinstance(node.get(last), dict):
            raise ValueError(f"--set {pair!r}: {last} already has keys set under it")
        node[last] = yaml.safe_load(value)
    return out


def _spec(kind: str, tag: str, settings: Mapping[str, Any], sde: str, dim: int | None) -> dict:
    section = {"type": tag, **settings}
    spec: dict[str, Any] = {"sde": {"type": sde}, "data": {"type": "gmm", "dim": dim}}
    if kind == "metric":
        spec["eval"] = {"metrics": [section]}
    elif kind == "transform":
        spec["transforms"] = [section]
    else:
        spec[SECTION[kind]] = section
    return spec


def check(
    kind: str,
    tag: str,
    *,
    settings: Mapping[str, Any] | None = None,
    quick: bool = False,
    sde: str = "vp",
    dim: int | None = None,
    seed: int = 0,
    spec: str | pathlib.Path | None = None,
) -> CheckReport:
    """Build the ``kind`` component ``tag`` from ``settings`` (its spec section's keys) and run
    every check of its kind. The context: the SDE ``sde`` (for the kinds that take one), the
    data dimension ``dim`` (default per kind, ``DIMS``); for a training method, the other
    sections of the spec file ``spec`` if given (its model, objective, data, SDE, training),
    else a 2×64 MLP trained by DSM on a Gaussian mixture. Raises ValueError for an unknown kind
    or tag and diffsde.SpecError for settings its spec section rejects."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind '{kind}': diffsde check knows {', '.join(KINDS)}")
    registry = get_registry()
    table = registry.components["transform" if kind == "transform" else kind]
    if tag not in table:
        failed = "".join(f"\n  note: {e}" for e in registry.errors)
        raise ValueError(
            f"unknown {kind} '{tag}': registered are {', '.join(sorted(table))}{failed}"
        )
    settings = dict(settings or {})
    if kind == "sde" and "dim" in settings:
        dim = settings.pop("dim")
    dim = dim if dim is not None else DIMS[kind]
    if kind == "method":
        return _check_method(tag, settings, quick=quick, sde=sde, dim=dim, seed=seed, spec=spec)
    spec = _spec(kind, tag, settings, tag if kind == "sde" else sde, dim)
    try:
        setup = validate_text(yaml.safe_dump(spec), file=f"<diffsde check {kind} {tag}>")
    except SpecError as err:
        if kind != "sde" or not any("no default prior" in i.message for i in err.issues):
            raise
        # an SDE without a default prior (a general one) needs the spec's own to validate; its
        # checks never sample it
        spec["prior"] = {"type": "gaussian", "std": 1.0}
        setup = validate_text(yaml.safe_dump(spec), file=f"<diffsde check {kind} {tag}>")
    report = CheckReport(kind, tag)
    built = setup.sde
    if kind == "sde":
        report.results = check_sde(built, quick=quick, seed=seed)
    elif kind == "sampler":
        report.results = check_sampler(
            setup.spec.sampler.build(sde=built),
            built,
            quick=quick,
            seed=seed,
            rebuild=lambda: setup.spec.sampler.build(sde=built),
        )
    elif kind == "objective":
        objective = setup.spec.objective.build(sde=built, data=mixture(built.dim))
        report.results = check_objective(objective, built, quick=quick, seed=seed)
    elif kind == "metric":
        report.results = check_metric(setup.spec.eval.metrics[0].build(), built, seed=seed)
    elif kind == "dataset":
        report.results = check_dataset(setup.data, built, quick=quick, seed=seed)
    elif kind == "model":
        model = setup.spec.model.build(sde=built, key=jr.key(seed), prior=setup.prior)
        report.results = check_model(model, built, seed=seed)
    else:
        report.results = check_transform(setup.transforms[0], built, seed=seed)
    return report


METHOD_STEPS = {True: 600, False: 2000}
"""Training steps of a method's check, quick and full."""


def _mixture_section(dim: int) -> dict:
    """The spec section of the kit's two-mode mixture (``_conformance._sampler.mixture``)."""
    mixture_ = mixture(dim)
    return {
        "type": "gmm",
        "dim": dim,
        "components": 2,
        "means": mixture_.means.tolist(),
        "weights": [0.3, 0.7],
        "std": 0.4,
    }


def _check_method(tag, settings, *, quick, sde, dim, seed, spec) -> CheckReport:
    steps = METHOD_STEPS[quick]
    section = {"type": tag, **settings}
    if spec is None:
        data = {
            "sde": {"type": sde},
            "data": _mixture_section(dim),
            "model": {"type": "mlp", "width": 64, "depth": 2},
            "objective": {"type": "dsm"},
            "training": {
                "steps": steps,
                "learning_rate": 3e-3,
                "warmup_steps": 20,
                "ema_decay": 0.99,
            },
        }
        file, base = f"<diffsde check method {tag}>", None
    else:
        path = pathlib.Path(spec)
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"--spec {spec}: a spec is a mapping of sections")
        data["training"] = {**(data.get("training") or {}), "steps": steps}
        file, base = str(path), path.parent
    data["method"] = section
    setup = validate_text(yaml.safe_dump(data), file=file, base_dir=base)
    model = None
    if setup.spec.model is not None:
        model = setup.spec.model.build(sde=setup.sde, key=jr.key(seed), prior=setup.prior)
    objective = None
    if setup.spec.objective is not None:
        objective = setup.spec.objective.build(sde=setup.sde, data=setup.data)
    method = build_method(
        setup.spec, model, objective, sde=setup.sde, data=setup.data, prior=setup.prior
    )
    report = CheckReport("method", tag)
    report.results = check_method(method, setup.data, setup.sde, steps=steps, seed=seed)
    return report
