"""Conformance checks of a forward SDE against its own declarations and against theory.

Every SDE: ``drift``/``diffusion``/``prior`` have the right shapes and are finite on random
inputs; where a ``stationary_law`` is declared, a forward simulation started in it stays in it.
An SDE with a Gaussian kernel also: the kernel against a forward simulation (mean and variance,
Richardson-extrapolated Euler–Maruyama), against the moment ODEs of an affine drift, its
``conditional_score`` against autodiff of the kernel's log-density, its prior against the
simulated law of X_T (within the ``prior_bias`` it declares), and the reverse SDE and the
probability-flow ODE with the exact score of a Gaussian target, started from the exact p_T,
returning the target.
"""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._sde._base import AbstractGaussianSDE, AbstractSDE
from ._report import CheckResult, failed, guarded, measured, passed, skipped
from ._simulate import extrapolated, mean_and_se, paired_paths

Z = 4.0
"""Tolerance of a Monte-Carlo comparison, in standard errors (each of a handful of
comparisons; with fixed seeds the outcome is reproducible)."""
REL = 1e-3
"""Tolerance of a deterministic float32 comparison (autodiff, tight ODE solves)."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """Monte-Carlo paths and Euler–Maruyama steps (coarse; the fine path takes twice as many)."""

    paths: int = 20_000
    steps: int = 256

    @classmethod
    def of(cls, quick: bool) -> "Budget":
        return cls(4_000, 64) if quick else cls()


def _start(dim: int) -> jnp.ndarray:
    """A fixed, non-zero x₀ whose coordinates differ (so the mean map is tested)."""
    return jnp.linspace(-1.0, 1.5, dim, dtype=jnp.float32) if dim > 1 else jnp.ones(1)


def _worst_z(estimate, se, expected) -> float:
    return float(jnp.max(jnp.abs(estimate - expected) / jnp.maximum(se, 1e-30)))


def shapes(sde: AbstractSDE) -> CheckResult:
    """drift(t, x) → (dim,), diffusion(t) → (), kernel(t) → two scalars, prior sample →
    (n, dim), traced with jax.eval_shape, then finite at 9 times on random x."""
    name, dim = "shapes", sde.dim
    x = jax.ShapeDtypeStruct((dim,), jnp.float32)
    t = jax.ShapeDtypeStruct((), jnp.float32)
    expected = {"drift(t, x)": (dim,), "diffusion(t)": ()}
    found = {
        "drift(t, x)": jax.eval_shape(sde.drift, t, x).shape,
        "diffusion(t)": jax.eval_shape(sde.diffusion, t).shape,
    }
    if isinstance(sde, AbstractGaussianSDE):
        lam, sigma = jax.eval_shape(sde.kernel, t)
        expected["kernel(t)"], found["kernel(t)"] = ((), ()), (lam.shape, sigma.shape)
    try:
        prior = sde.prior()
        expected["prior().sample(n=3)"] = (3, dim)
        found["prior().sample(n=3)"] = jax.eval_shape(
            lambda k: prior.sample(key=k, n=3), jr.key(0)
        ).shape
    except ValueError:  # no default prior (a general SDE): nothing to check
        pass
    wrong = [
        f"{k} has shape {found[k]}, expected {v}" for k, v in expected.items() if found[k] != v
    ]
    if wrong:
        return failed(name, "; ".join(wrong))
    ts = jnp.linspace(0.0, sde.T, 9)
    xs = 3.0 * jr.normal(jr.key(1), (9, dim))
    drift = jax.vmap(sde.drift)(ts, xs)
    g = jax.vmap(sde.diffusion)(ts)
    bad = [n for n, v in (("drift", drift), ("diffusion", g)) if not bool(jnp.all(jnp.isfinite(v)))]
    if bad:
        return failed(name, f"{' and '.join(bad)} not finite at some t in [0, T] for x ~ N(0, 9 I)")
    return passed(name, "drift (dim,), diffusion (), kernel, prior; finite")


def kernel_vs_simulation(sde: AbstractGaussianSDE, budget: Budget, key) -> list[CheckResult]:
    """Mean and variance of X_t | X_0 = x₀ from the kernel against the simulated forward SDE at
    t = T/4, T/2, 3T/4, T (Richardson-extrapolated Euler–Maruyama; worst coordinate and time)."""
    x0 = _start(sde.dim)
    starts = jnp.broadcast_to(x0, (budget.paths, sde.dim))
    fine, coarse = paired_paths(
        sde.drift, sde.diffusion, starts, 0.0, sde.T, budget.steps, key=key, saves=4
    )
    ts = sde.T * jnp.arange(1, 5) / 4
    mean_z = var_z = 0.0
    for i, t in enumerate(ts):
        m = sde.marginal_mean(t, x0)
        est, se = mean_and_se(extrapolated(lambda x: x, fine[i], coarse[i]))
        mean_z = max(mean_z, _worst_z(est, se, m))
        est, se = mean_and_se(extrapolated(lambda x: (x - m) ** 2, fine[i], coarse[i]))
        var_z = max(var_z, _worst_z(est, se, sde.marginal_std(t) ** 2))
    where = f"{budget.paths} paths, {budget.steps}/{2 * budget.steps} steps, t = T/4 … T"
    return [
        measured("kernel mean vs simulation", f"m_t(x₀) against E[X_t] ({where})", mean_z, Z, "SE"),
        measured(
            "kernel variance vs simulation", f"σ_t² against Var X_t ({where})", var_z, Z, "SE"
        ),
    ]


MOMENT_TIMES = 8


@eqx.filter_jit
def _moment_errors(sde: AbstractGaussianSDE):
    """(non-affinity, non-isotropy, ODE error, initial-condition error) of the kernel against
    the moment ODEs of the drift, at 8 times in [T/20, T]; one compiled call."""
    dim, T = sde.dim, sde.T
    ts = jnp.linspace(0.05 * T, T, MOMENT_TIMES)
    xa, xb, v = jr.normal(jr.key(2), (3, dim))
    # the drift's Jacobian along one random direction v, at two points: O(dim), and with
    # probability 1 it tells an affine, isotropic drift (J = a I everywhere) from any other
    along = jax.vmap(
        lambda t, x: jax.jvp(lambda y: sde.drift(t, y), (x,), (v,))[1], in_axes=(0, None)
    )
    ja, jb = along(ts, xa), along(ts, xb)
    scale = 1.0 + jnp.max(jnp.abs(ja))
    a = ja @ v / (v @ v)
    affine_gap = jnp.max(jnp.abs(ja - jb)) / scale
    iso_gap = jnp.max(jnp.abs(ja - a[:, None] * v)) / scale
    x0 = _start(dim)

    def mean(t):
        return sde.marginal_mean(t, x0)

    def var(t):
        return sde.marginal_std(t) ** 2

    def one(t, a):
        m, dm = jax.jvp(mean, (t,), (jnp.ones_like(t),))
        v, dv = jax.jvp(var, (t,), (jnp.ones_like(t),))
        g2 = sde.diffusion(t) ** 2
        rhs_m, rhs_v = sde.drift(t, m), 2 * a * v + g2
        # errors relative to the size of the terms (dv/dt is a small difference near stationarity)
        size_m = jnp.max(jnp.abs(rhs_m) + jnp.abs(a * m) + jnp.abs(dm)) + 1e-6
        err_m = jnp.max(jnp.abs(dm - rhs_m)) / size_m
        err_v = jnp.abs(dv - rhs_v) / (jnp.abs(dv) + jnp.abs(2 * a * v) + g2 + 1e-12)
        return jnp.maximum(err_m, err_v)

    err = jnp.max(jax.vmap(one)(ts, a))
    zero = jnp.zeros(())
    initial = jnp.maximum(
        jnp.max(jnp.abs(mean(zero) - x0)) / (1 + jnp.max(jnp.abs(x0))),
        sde.marginal_std(zero) / sde.marginal_std(T),
    )
    return affine_gap, iso_gap, jnp.maximum(err, initial)


def moment_odes(sde: AbstractGaussianSDE) -> CheckResult:
    """For an affine drift b(t, x) = a(t) x + c(t): dm/dt = b(t, m_t) and dσ²/dt = 2a σ² + g²
    (autodiff of the kernel in t), with m_0 = x₀ and σ_0 = 0."""
    name = "kernel vs moment ODEs"
    try:
        affine_gap, iso_gap, err = (float(v) for v in _moment_errors(sde))
    except TypeError as error:  # e.g. a custom_vjp in the kernel: no forward-mode derivative
        return skipped(name, f"the kernel cannot be differentiated forward in t ({error})"[:300])
    if affine_gap > 1e-4:
        return skipped(name, "the drift is not affine in x (no closed moment ODEs)")
    if iso_gap > 1e-4:
        return skipped(name, "the drift's Jacobian is not a multiple of the identity")
    return measured(
        name,
        f"dm/dt = b(t, m), dσ²/dt = 2aσ² + g² at {MOMENT_TIMES} times, and m_0 = x₀, σ_0 = 0",
        err,
        REL,
        "relative",
    )


def kernel_warning(sde: AbstractSDE, tag: str) -> str | None:
    """A one-line warning when ``sde``'s kernel contradicts its own drift and diffusion (the
    deterministic moment-ODE check, one compiled call: what ``validate`` and ``run`` can
    afford), else None."""
    if not isinstance(sde, AbstractGaussianSDE):
        return None
    try:
        result = moment_odes(sde)
    except Exception:  # noqa: BLE001  (what validate cannot evaluate, `diffsde check` reports)
        return None
    if result.passed:
        return None
    return (
        f"warning: sde '{tag}' ({type(sde).__name__}): its kernel(t) contradicts its drift and "
        f"diffusion (moment ODEs dm/dt = b(t, m), dσ²/dt = 2aσ² + g², relative error "
        f"{result.deviation:.3g} > {REL:g}); samples and the esm metric will be wrong: run "
        f"`diffsde check sde {tag}`"
    )


def conditional_score(sde: AbstractGaussianSDE) -> CheckResult:
    """``conditional_score(t, x_t, x₀)`` against jax.grad of log N(x_t; m_t(x₀), σ_t² I)."""
    ts = jnp.linspace(0.05 * sde.T, sde.T, 8)
    x0, z = jr.normal(jr.key(3), (2, 8, sde.dim))

    def one(t, x0, z):
        xt = sde.marginal_mean(t, x0) + sde.marginal_std(t) * z

        def log_density(x):
            return -0.5 * jnp.sum((x - sde.marginal_mean(t, x0)) ** 2) / sde.marginal_std(t) ** 2

        auto, given = jax.grad(log_density)(xt), sde.conditional_score(t, xt, x0)
        return jnp.max(jnp.abs(given - auto)) / jnp.max(jnp.abs(auto))

    err = float(jnp.max(jax.vmap(one)(ts, x0, z)))
    return measured(
        "conditional score vs autodiff", "∇ log p(x_t | x₀) at 8 times", err, REL, "relative"
    )


def _moments(x):
    """Per-coordinate mean and variance, and their standard errors."""
    mean, se_mean = mean_and_se(x)
    var, se_var = mean_and_se((x - mean) ** 2)
    return mean, se_mean, var, se_var


PRIOR_DATA_MEAN = 0.5
"""The prior is checked for data N(½·1, I): unit variance, each coordinate's mean half a
standard deviation from 0 (so a prior that ignores what X_T keeps of x₀ shows)."""


def prior_vs_law(sde: AbstractGaussianSDE, budget: Budget, key) -> CheckResult:
    """``prior()`` against the simulated law of X_T for data N(½·1, I): the gaps in mean and in
    standard deviation per coordinate (in units of the law's), less the declared
    ``prior_bias()``, in standard errors."""
    skey, dkey, pkey = jr.split(key, 3)
    starts = PRIOR_DATA_MEAN + jr.normal(dkey, (budget.paths, sde.dim))
    fine, coarse = paired_paths(
        sde.drift, sde.diffusion, starts, 0.0, sde.T, budget.steps, key=skey, saves=1
    )
    mean, se_mean = mean_and_se(extrapolated(lambda x: x, fine[0], coarse[0]))
    var, se_var = mean_and_se(extrapolated(lambda x: (x - mean) ** 2, fine[0], coarse[0]))
    std = jnp.sqrt(var)
    p_mean, p_se_mean, p_var, p_se_var = _moments(sde.prior().sample(key=pkey, n=budget.paths))
    bias = sde.prior_bias()
    gap_m = jnp.abs(mean - p_mean) / std
    se_m = jnp.sqrt(se_mean**2 + p_se_mean**2) / std
    gap_s = jnp.abs(std - jnp.sqrt(p_var)) / std
    se_s = jnp.sqrt(se_var**2 + p_se_var**2) / (2 * var)
    z = jnp.maximum(jnp.maximum(gap_m - bias, 0) / se_m, jnp.maximum(gap_s - bias, 0) / se_s)
    return measured(
        "prior vs law of X_T",
        f"mean and std of prior() against simulated X_T for data N(½·1, I), gaps "
        f"{float(jnp.max(gap_m)):.3g}/{float(jnp.max(gap_s)):.3g} less the declared "
        f"prior_bias {bias:.3g}",
        float(jnp.max(z)),
        Z,
        "SE",
    )


def gaussian_target(sde: AbstractGaussianSDE):
    """N(μ, s² I) data and the exact law N(m_t(μ), (λ_t² s² + σ_t²) I) of p_t, with its score."""
    mu, s = 0.5 * _start(sde.dim), 0.5

    def law(t):
        lam, sigma = sde.kernel(t)
        return sde.marginal_mean(t, mu), jnp.sqrt(lam**2 * s**2 + sigma**2)

    def score(x, t):
        m, std = law(t)
        return -(x - m) / std**2

    return law, score


def reverse_returns_target(sde: AbstractGaussianSDE, budget: Budget, key) -> CheckResult:
    """The reverse SDE (``reverse_drift``/``reverse_diffusion``) with the exact score of a
    Gaussian target, started from the exact p_T, ends in p_ε (ε = 10⁻³ T): mean and variance."""
    law, score = gaussian_target(sde)
    eps = 1e-3 * sde.T
    skey, xkey = jr.split(key)
    m_T, s_T = law(sde.T)
    x_T = m_T + s_T * jr.normal(xkey, (budget.paths, sde.dim))
    fine, coarse = paired_paths(
        sde.reverse_drift(score),
        sde.reverse_diffusion,
        x_T,
        0.0,
        sde.T - eps,
        budget.steps,
        key=skey,
        saves=1,
    )
    m, s = law(eps)
    est, se = mean_and_se(extrapolated(lambda x: x, fine[0], coarse[0]))
    mean_z = _worst_z(est, se, m)
    est, se = mean_and_se(extrapolated(lambda x: (x - m) ** 2, fine[0], coarse[0]))
    return measured(
        "reverse SDE returns the target",
        "mean and variance at ε of the reverse SDE from exact p_T, exact Gaussian score",
        max(mean_z, _worst_z(est, se, s**2)),
        Z,
        "SE",
    )


def pf_ode_returns_target(sde: AbstractGaussianSDE, key) -> CheckResult:
    """The probability-flow ODE with the exact score of a Gaussian target maps each x_T to
    m_ε + (s_ε/s_T)(x_T − m_T) (its flow is affine): Tsit5 at rtol = atol = 10⁻⁶."""
    law, score = gaussian_target(sde)
    eps = 1e-3 * sde.T
    m_T, s_T = law(sde.T)
    x_T = m_T + s_T * jr.normal(key, (256, sde.dim))
    field = jax.vmap(sde.probability_flow(score), in_axes=(None, 0))
    solve = jax.jit(
        lambda y0: diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, args: field(t, y)),
            diffrax.Tsit5(),
            t0=sde.T,
            t1=eps,
            dt0=-1e-2 * sde.T,
            y0=y0,
            stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6),
            max_steps=100_000,
        ).ys[-1]
    )
    m, s = law(eps)
    expected = m + (s / s_T) * (x_T - m_T)
    err = float(jnp.max(jnp.abs(solve(x_T) - expected))) / float(s)
    return measured(
        "PF-ODE returns the target",
        "x_ε of the PF-ODE from exact p_T against the exact affine flow, per sample",
        err,
        1e-2,
        "relative",
    )


def stationary_law(sde: AbstractSDE, budget: Budget, key) -> CheckResult:
    """Started in the declared ``stationary_law()``, the simulated forward SDE stays in it: mean
    and second moment per coordinate at T/4 … T against independent draws of the law."""
    name = "stationary law"
    law = sde.stationary_law()
    if law is None:
        return skipped(name, "no stationary_law() declared")
    skey, akey, bkey = jr.split(key, 3)
    starts = law.sample(key=akey, n=budget.paths)
    fine, coarse = paired_paths(
        sde.drift, sde.diffusion, starts, 0.0, sde.T, budget.steps, key=skey, saves=4
    )
    ref = law.sample(key=bkey, n=budget.paths)
    worst = 0.0
    for f in (lambda x: x, lambda x: x**2):
        ref_mean, ref_se = mean_and_se(f(ref))
        for i in range(4):
            est, se = mean_and_se(extrapolated(f, fine[i], coarse[i]))
            worst = max(worst, _worst_z(est, jnp.sqrt(se**2 + ref_se**2), ref_mean))
    return measured(
        name,
        f"E[X_t], E[X_t²] at t = T/4 … T from X_0 ~ stationary_law() against fresh draws "
        f"({budget.paths} paths)",
        worst,
        Z,
        "SE",
    )


def check_sde(sde: AbstractSDE, *, quick: bool = False, seed: int = 0) -> list[CheckResult]:
    """Every check that applies to ``sde``."""
    budget = Budget.of(quick)
    keys = jr.split(jr.key(seed), 5)
    results = guarded("shapes", shapes, sde)
    if not results[0].passed:
        return results
    if isinstance(sde, AbstractGaussianSDE):
        results += guarded("kernel vs simulation", kernel_vs_simulation, sde, budget, keys[0])
        results += guarded("kernel vs moment ODEs", moment_odes, sde)
        results += guarded("conditional score vs autodiff", conditional_score, sde)
        results += guarded("prior vs law of X_T", prior_vs_law, sde, budget, keys[1])
        results += guarded(
            "reverse SDE returns the target", reverse_returns_target, sde, budget, keys[2]
        )
        results += guarded("PF-ODE returns the target", pf_ode_returns_target, sde, keys[3])
    else:
        results.append(skipped("kernel checks", "no Gaussian kernel (not an AbstractGaussianSDE)"))
    return results + guarded("stationary law", stationary_law, sde, budget, keys[4])
