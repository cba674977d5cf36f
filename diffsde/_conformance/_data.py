"""Conformance checks of datasets, metrics, score models and score transforms.

A dataset: ``sample`` has shape (n, dim), is finite, deterministic under a key and differs
between keys; ``held_out`` and the conditions have the right shapes and ranges; where it claims
an exact score (:class:`diffsde.ExactScore`), the score satisfies Stein's identity against its
own samples pushed through the SDE's kernel, E[s(X_t)] = 0 and E[s_i(X_t) X_t,i] = −1.
A metric returns finite named floats, deterministic under a key, covering the names of its
``directions``, and ranks exact samples and the exact score above shifted ones in each declared
direction. A model returns one finite vector of the data's dimension per point; a transform
keeps the score's shape and finiteness.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._data import AbstractDataset, exact_score
from .._metrics import EvalContext
from .._sde._base import AbstractGaussianSDE
from .._transforms import apply_transforms
from ._report import CheckResult, failed, guarded, measured, passed, skipped
from ._sampler import exact_at, mixture
from ._sde import Z
from ._simulate import mean_and_se


def dataset_shapes(data: AbstractDataset) -> list[CheckResult]:
    name, n = "samples", 64
    x = data.sample(key=jr.key(0), n=n)
    if x.shape != (n, data.dim) or not jnp.issubdtype(x.dtype, jnp.floating):
        return [
            failed(name, f"sample(n={n}) gave {x.dtype}{x.shape}, expected float ({n}, {data.dim})")
        ]
    if not bool(jnp.all(jnp.isfinite(x))):
        return [failed(name, "sample gave non-finite values")]
    results = [passed(name, f"sample(n={n}) is float ({n}, {data.dim}) and finite")]
    same = bool(jnp.all(x == data.sample(key=jr.key(0), n=n)))
    other = not bool(jnp.all(x == data.sample(key=jr.key(1), n=n)))
    results.append(
        passed("determinism", "the same key gives the same samples, another key others")
        if same and other
        else failed("determinism", f"same key equal: {same}; another key different: {other}")
    )
    held = data.held_out(key=jr.key(0), n=n)
    results.append(
        passed("held-out shape", f"held_out(n={n}) has {held.shape[0]} rows of {data.dim}")
        if held.ndim == 2 and held.shape[1] == data.dim and 0 < held.shape[0] <= n
        else failed("held-out shape", f"held_out(n={n}) gave shape {held.shape}")
    )
    if data.classes:
        _, c = data.sample_conditions(key=jr.key(0), n=n)
        leaves = jax.tree.leaves(c)
        good = all(
            leaf.shape[:1] == (n,)
            and jnp.issubdtype(leaf.dtype, jnp.integer)
            and bool(jnp.all((leaf >= 0) & (leaf < data.classes)))
            for leaf in leaves
        )
        results.append(
            passed("conditions", f"one integer label in [0, {data.classes}) per row")
            if leaves and good
            else failed(
                "conditions", f"conditions {c!r} are not one label in [0, {data.classes}) per row"
            )
        )
    return results


STEIN_FEATURES = 8
"""Random Fourier test functions f = sin(ω·x + b) per time, besides 1 and x_i."""


def stein(data: AbstractDataset, sde, n: int, key) -> CheckResult:
    """Stein's identity E[s·∇f + Δf] = 0 for the claimed exact score of p_t, at t = T/20, T/4,
    T/2, T: f = x_i (E[s_i X_i] = −1), the constant (E s = 0), and 8 random Fourier features
    sin(ω·x + b), ω ~ N(0, I/v) with v the variance of p_t, which see errors beyond the mean and
    variance (a Gaussian with the right moments fails them)."""
    name = "exact score (Stein's identity)"
    score = exact_score(data, sde)
    if score is None:
        return skipped(name, f"no exact score claimed under {type(sde).__name__}")
    if not isinstance(sde, AbstractGaussianSDE):
        return skipped(name, "needs an SDE with a Gaussian kernel to draw from p_t")
    worst = 0.0
    for i, t in enumerate(jnp.array([0.05, 0.25, 0.5, 1.0]) * sde.T):
        dkey, wkey, bkey = jr.split(jr.fold_in(key, i), 3)
        xt = exact_at(data, sde, t, n, dkey)
        s = jax.vmap(lambda x: score(x, t))(xt)
        if not bool(jnp.all(jnp.isfinite(s))):
            return failed(name, f"the score is not finite at t = {float(t):g}")
        w = jr.normal(wkey, (STEIN_FEATURES, data.dim)) / jnp.sqrt(jnp.mean(jnp.var(xt, 0)))
        phase = xt @ w.T + jr.uniform(bkey, (STEIN_FEATURES,), maxval=2 * jnp.pi)
        fourier = (s @ w.T) * jnp.cos(phase) - jnp.sum(w**2, 1) * jnp.sin(phase)
        for values in (s, s * xt + 1.0, fourier):
            est, se = mean_and_se(values)
            worst = max(worst, float(jnp.max(jnp.abs(est) / se)))
    return measured(
        name,
        f"E[s·∇f + Δf] = 0 for f = 1, x_i and {STEIN_FEATURES} random Fourier features, over "
        f"{n} draws of p_t at t = T/20 … T",
        worst,
        Z,
        "SE",
    )


def check_dataset(data: AbstractDataset, sde, *, quick: bool = False, seed: int = 0):
    results = guarded("samples", dataset_shapes, data)
    if all(r.passed for r in results):
        n = 4_000 if quick else 20_000
        results += guarded("exact score (Stein's identity)", stein, data, sde, n, jr.key(seed))
    return results


def _contexts(sde, key):
    data = mixture(sde.dim)
    n = 2_000
    skey, rkey, mkey = jr.split(key, 3)
    good = data.sample(key=skey, n=n)
    reference = data.sample(key=rkey, n=n)

    def exact(x, t):
        return data.score(x, t, sde)

    def shifted(x, t):
        return data.score(x, t, sde) + 0.5

    if not isinstance(sde, AbstractGaussianSDE):  # no exact score without a kernel
        exact = shifted = None
    perfect = EvalContext(good, reference, data, sde, exact, mkey)
    degraded = EvalContext(1.3 * good + 0.5, reference, data, sde, shifted, mkey)
    return perfect, degraded


def check_metric(metric, sde, *, quick: bool = False, seed: int = 0) -> list[CheckResult]:
    del quick
    return guarded("metric", _metric_checks, metric, sde, seed)


def _metric_checks(metric, sde, seed: int) -> list[CheckResult]:
    perfect, degraded = _contexts(sde, jr.key(seed))
    values = metric(perfect)
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, float | int) for k, v in values.items()
    ):
        return [failed("values", f"returned {values!r}, expected a dict of names to floats")]
    if not values:
        if isinstance(sde, AbstractGaussianSDE):
            return [
                failed(
                    "values",
                    f"returned nothing on exact samples of a Gaussian mixture, with its exact "
                    f"score under {type(sde).__name__}: nothing to compare",
                )
            ]
        return [skipped("values", f"returns nothing under {type(sde).__name__}: try --sde vp")]
    bad = [k for k, v in values.items() if not np.isfinite(v)]
    results = [
        failed("values", f"non-finite values for {bad}")
        if bad
        else passed("values", f"finite floats {sorted(values)}")
    ]
    again = metric(perfect)
    results.append(
        passed("determinism", "the same context gives the same values")
        if again == values
        else failed("determinism", f"{values} then {again} on the same context")
    )
    directions = dict(getattr(metric, "directions", {}))
    missing = sorted(set(directions) - set(values))
    if missing:  # e.g. bits/dim, returned for quantised images only
        results.append(skipped("directions", f"also names {missing}, not returned on this data"))
    worse = metric(degraded)
    for name, direction in directions.items():
        if name not in values or name not in worse:
            continue
        a, b = values[name], worse[name]
        better = {"min": a < b, "max": a > b, "zero": abs(a) < abs(b)}[direction]
        results.append(
            passed(f"ranks '{name}'", f"exact {a:.3g} better than shifted {b:.3g} ({direction})")
            if better
            else failed(
                f"ranks '{name}'",
                f"exact samples/score give {a:.3g}, shifted {b:.3g}: not better by '{direction}'",
            )
        )
    return results


def check_model(model, sde, *, quick: bool = False, seed: int = 0) -> list[CheckResult]:
    del quick
    return guarded("model", _model_checks, model, sde, seed)


def _model_checks(model, sde, seed: int) -> list[CheckResult]:
    x = jr.normal(jr.key(seed), (8, sde.dim))
    t = jnp.linspace(0.01, 1.0, 8) * sde.T
    shape = jax.eval_shape(model, x[0], t[0]).shape
    if shape != (sde.dim,):
        return [failed("output shape", f"model(x, t) has shape {shape}, expected ({sde.dim},)")]
    out = jax.jit(jax.vmap(model))(x, t)
    return [
        passed("output shape", f"model(x, t) is ({sde.dim},)"),
        passed("finite", "finite at 8 random points")
        if bool(jnp.all(jnp.isfinite(out)))
        else failed("finite", "non-finite output at random points"),
    ]


def check_transform(transform, sde, *, quick: bool = False, seed: int = 0):
    del quick
    data = mixture(sde.dim)
    wrapped = apply_transforms(lambda x, t: data.score(x, t, sde), [transform])
    return guarded("transform", _model_checks, wrapped, sde, seed)
