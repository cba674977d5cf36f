"""Conformance checks of a training objective on a target whose score is known exactly.

The model is the exact score of a two-mode Gaussian mixture plus a perturbation θ·φ:
s_θ(x, t) = ∇ log p_t(x) + (a x + b)/s_t, θ = (a, b). Every score-matching objective is
E λ(t) |s_θ − ∇ log p_t|² up to a constant independent of θ, so (1) its gradient at θ = 0
vanishes in expectation, whatever its weighting; (2) at θ ≠ 0 it points uphill, g·θ > 0, and is
linear in θ; (3) where the objective names its weighting, time distribution and ε, it equals
the gradient of explicit score matching with those parts. Each is compared in standard errors
over independent batches. Finally a small MLP trained on the objective must end below a
stated fraction of its initial exact-score error.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

from .._data import GaussianMixture
from .._model import MLPScore
from .._objective import AbstractObjective, ExplicitScoreMatching
from .._sde._base import AbstractGaussianSDE
from ._report import CheckResult, guarded, measured
from ._sampler import mixture
from ._sde import Z
from ._simulate import mean_and_se

TRAINED_FRACTION = 0.5
"""A small model trained on the objective must end below this fraction of its initial
exact-score error."""


class Perturbed(eqx.Module):
    """∇ log p_t(x) + (a x + b)/s_t, s_t = √(λ_t² + σ_t²) (the scale of p_t for unit data)."""

    data: GaussianMixture
    sde: AbstractGaussianSDE
    a: jax.Array
    b: jax.Array

    def __call__(self, x, t):
        lam, sigma = self.sde.kernel(t)
        return self.data.score(x, t, self.sde) + (self.a * x + self.b) / jnp.sqrt(lam**2 + sigma**2)


def _gradients(objective, data, sde, theta, batches: int, n: int, key):
    """Per-batch gradients of the loss in θ = (a, b), flattened: shape (batches, 1 + dim)."""

    def loss(theta, key):
        dkey, lkey = jr.split(key)
        x0 = data.sample(key=dkey, n=n)
        return objective.loss(Perturbed(data, sde, theta[0], theta[1:]), x0, key=lkey)

    return jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(theta, jr.split(key, batches))


def _z(difference, se) -> float:
    """The largest |difference|/se; an exact zero with no spread (ESM at its own minimiser) is
    0 standard errors, any other difference with none infinitely many."""
    ratio = jnp.where(se > 0, jnp.abs(difference) / jnp.where(se > 0, se, 1), jnp.inf)
    return float(jnp.max(jnp.where((difference == 0) & (se == 0), 0.0, ratio)))


def _reference(objective, sde, data):
    """ESM with the objective's weighting, time distribution and ε, if it names all three."""
    names = {f.name for f in dataclasses.fields(objective)}
    if not {"weighting", "time_sampling", "eps"} <= names:
        return None
    return ExplicitScoreMatching(
        sde, data, objective.weighting, objective.time_sampling, objective.eps
    )


def gradient_checks(objective, sde, quick: bool, key) -> list[CheckResult]:
    data = mixture(sde.dim)
    batches, n = (48, 256) if quick else (128, 512)
    keys = jr.split(key, 4)
    zero = jnp.zeros(1 + sde.dim)
    theta = jnp.concatenate([jnp.array([0.3]), 0.2 * jnp.ones(sde.dim)])
    g0 = _gradients(objective, data, sde, zero, batches, n, keys[0])
    mean, se = mean_and_se(g0)
    where = f"{batches} batches of {n}"
    results = [
        measured(
            "gradient vanishes at the exact score",
            f"E ∇_θ loss at s_θ = ∇ log p_t, θ = (a, b) of (a x + b)/s_t ({where})",
            _z(mean, se),
            Z,
            "SE",
        )
    ]
    g1 = _gradients(objective, data, sde, theta, batches, n, keys[1])
    g2 = _gradients(objective, data, sde, 2 * theta, batches, n, keys[2])
    uphill, uphill_se = mean_and_se(g1 @ theta)
    results.append(
        CheckResult(
            "gradient points uphill",
            f"E[∇loss·θ] > 0 at θ ≠ 0 ({where}): {float(uphill):.3g} ± {float(uphill_se):.2g}",
            float(uphill / uphill_se),
            Z,
            "SE",
            bool(uphill > Z * uphill_se),
            at_least=True,
        )
    )
    m1, s1 = mean_and_se(g1)
    m2, s2 = mean_and_se(g2)
    results.append(
        measured(
            "gradient is linear in θ",
            f"E ∇loss(2θ) against 2 E ∇loss(θ) ({where})",
            _z(m2 - 2 * m1, jnp.sqrt(s2**2 + 4 * s1**2)),
            Z,
            "SE",
        )
    )
    reference = _reference(objective, sde, data)
    if reference is not None:
        gr = _gradients(reference, data, sde, theta, batches, n, keys[3])
        mr, sr = mean_and_se(gr)
        results.append(
            measured(
                "gradient equals explicit score matching's",
                f"E ∇loss(θ) against ESM with the same weighting '{objective.weighting.tag}', "
                f"times '{objective.time_sampling.tag}', ε = {objective.eps:g} ({where})",
                _z(m1 - mr, jnp.sqrt(s1**2 + sr**2)),
                Z,
                "SE",
            )
        )
    return results


def _score_error(model, data, sde, key, n: int = 2048) -> float:
    """E_t E_{x~p_t} |s − ∇ log p_t|² / E|∇ log p_t|², t on 16 points of [0.05 T, T]."""
    ts = jnp.linspace(0.05 * sde.T, sde.T, 16)
    dkey, zkey = jr.split(key)
    x0 = data.sample(key=dkey, n=n)
    z = jr.normal(zkey, (16, *x0.shape))

    def at(t, z):
        xt = jax.vmap(lambda x: sde.marginal_mean(t, x))(x0) + sde.marginal_std(t) * z
        exact = jax.vmap(lambda x: data.score(x, t, sde))(xt)
        learned = jax.vmap(lambda x: model(x, t))(xt)
        return jnp.mean(jnp.sum((learned - exact) ** 2, -1)), jnp.mean(jnp.sum(exact**2, -1))

    err, size = jax.vmap(at)(ts, z)
    return float(jnp.sum(err) / jnp.sum(size))


def trains(objective, sde, quick: bool, key) -> CheckResult:
    """A 2×64 MLP trained with Adam (lr 3·10⁻³, batches of 256) on the objective."""
    data = mixture(sde.dim)
    steps = 600 if quick else 2000
    mkey, tkey, ekey = jr.split(key, 3)
    model = MLPScore(sde, width=64, depth=2, key=mkey)
    optimiser = optax.adam(3e-3)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = optimiser.init(params)

    @jax.jit
    def train(params, state):
        def step(carry, key):
            params, state = carry
            dkey, lkey = jr.split(key)
            x0 = data.sample(key=dkey, n=256)
            grads = jax.grad(lambda p: objective.loss(eqx.combine(p, static), x0, key=lkey))(params)
            updates, state = optimiser.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(step, (params, state), jr.split(tkey, steps))
        return params

    before = _score_error(model, data, sde, ekey)
    after = _score_error(eqx.combine(train(params, state), static), data, sde, ekey)
    return measured(
        "trains a small model",
        f"relative exact-score error of a 2×64 MLP after {steps} Adam steps: {before:.3g} → "
        f"{after:.3g}, ratio",
        after / before,
        TRAINED_FRACTION,
        "of initial",
    )


def check_objective(
    objective: AbstractObjective, sde, *, quick: bool = False, seed: int = 0
) -> list[CheckResult]:
    keys = jr.split(jr.key(seed), 2)
    return [
        *guarded("gradient checks", gradient_checks, objective, sde, quick, keys[0]),
        *guarded("trains a small model", trains, objective, sde, quick, keys[1]),
    ]
