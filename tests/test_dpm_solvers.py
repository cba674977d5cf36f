"""DPM-Solver, DPM-Solver++ and UniPC (diffsde/_dpm_solvers.py) against theory: exactness where
the papers say the methods are exact (one-point data, polynomial x̂₀ in the log-SNR), fitted
orders with exact scores (Gaussian target: closed-form flow; two-mode mixture: against diffrax's
Tsit5 at tight tolerances), NFE counted exactly, every grid, trajectories, the SDE variant's weak
order, and the field errors."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from mean_ou import MeanOU

import diffsde
from diffsde._conformance._sampler import (
    compiles_once,
    exact_at,
    mixture,
    nfe_counted,
    observed_order,
)
from diffsde._conformance._sde import gaussian_target
from diffsde._dpm_solvers import SAMPLERS, DPMSolver, DPMSolverPP, UniPC
from diffsde._errors import SpecFieldError
from diffsde._grids import KarrasGrid, LogSNRGrid, QuadraticGrid, UniformGrid
from diffsde._sampler import PIDSteps, ProbabilityFlow, Tsit5, sample

SDES = {
    "vp": lambda: diffsde.VP(dim=2),
    "ve": lambda: diffsde.VE(dim=2),
    "mean_ou": lambda: MeanOU(dim=2),
}

slow = pytest.mark.slow


def _id(sampler):
    return repr(sampler).replace(" ", "")


FAST = [
    DPMSolver(stages=1, steps=3),
    DPMSolver(stages=2, steps=3),
    DPMSolver(stages=3, steps=3),
    DPMSolverPP(history=2, steps=5),
    DPMSolverPP(history=3, steps=5),
    UniPC(history=1, steps=5, variant="bh1"),
    UniPC(history=3, steps=5),
]
MORE = [
    DPMSolverPP(history=1, steps=5),
    UniPC(history=1, steps=5),
    UniPC(history=2, steps=5),
    UniPC(history=2, steps=5, variant="bh1"),
    UniPC(history=3, steps=5, variant="bh1"),
]
ONE_POINT = [
    *(pytest.param(name, s, id=f"{name}-{_id(s)}") for name in ("vp", "mean_ou") for s in FAST),
    *(
        pytest.param(name, s, id=f"{name}-{_id(s)}", marks=slow)
        for name in ("vp", "ve", "mean_ou")
        for s in (MORE if name != "ve" else FAST + MORE)
    ),
]


def test_registered_tags_and_samplers_tuple():
    """The module's SAMPLERS tuple is what the registry exposes under the three tags.

    Mutation: a tag renamed (``tag = "dpm"``) makes this fail."""
    registry = diffsde.get_registry()
    for cls, tag in zip(SAMPLERS, ("dpm_solver", "dpm_solver_pp", "unipc"), strict=True):
        assert cls.tag == tag
        assert registry.get("sampler", tag).cls is cls


@pytest.mark.parametrize(("name", "sampler"), ONE_POINT)
def test_exact_on_one_point_data(name, sampler):
    """One-point data x₀ = m: ε̂ and x̂₀ are constant along every path, so DDIM's step (DPM-Solver-1)
    is exact and every higher-order correction vanishes — each solver reproduces the exact flow
    y_ε = α_ε m + (σ_ε/σ_T)(y_T − α_T m) in 3–5 steps, to float32 precision (5e-5 of σ_T).

    Mutation: DDIM's coefficient expm1(h) replaced by h makes DPM-Solver-1/2/3 fail; dropping the
    offset c_t (``x = y_s``) makes every solver fail on mean_ou; DPM-Solver++'s decay
    σ_s/σ_t = (α_s/α_t) e^{−h} given e^{−2h} makes DPM-Solver++ fail."""
    sde = SDES[name]()
    m = jnp.array([0.7, -0.4])

    def score(x, t):
        return sde.conditional_score(t, x, m)

    eps = 1e-3
    alpha_T, sigma_T = sde.kernel(sde.T)
    alpha_e, sigma_e = sde.kernel(eps)
    x_T = sde.marginal_mean(sde.T, m) + sigma_T * jr.normal(jr.key(0), (16, 2))
    y_T = x_T - sde.marginal_mean(sde.T, 0 * m)
    exact = sde.marginal_mean(eps, 0 * m) + alpha_e * m + (sigma_e / sigma_T) * (y_T - alpha_T * m)
    out = sampler.sample_from(sde, score, x_T, key=jr.key(1))
    np.testing.assert_allclose(out.x, exact, atol=5e-5 * float(sigma_T) + 1e-5)


def _quadrature(ell_t, h, poly, rate=1.0, nodes=32):
    """rate ∫₀ʰ e^{−rate (h−τ)} P(ℓ_t + τ) dτ by Gauss–Legendre (float64)."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    tau = (x + 1) * h / 2
    return rate * h / 2 * np.sum(w * np.exp(-rate * (h - tau)) * poly(ell_t + tau))


ELL = jnp.array([-5.0, -4.3, -3.5, -2.9, -2.0, -1.1, 0.4])


@functools.cache
def _coefficients():
    """The step coefficients of DPM-Solver++ 2M, 3M, 3M-SDE and UniPC-3 on ELL (numpy)."""

    def make(sampler):
        return [np.asarray(c) for c in jax.jit(sampler.coefficients)(ELL)]

    return {
        "2m": make(DPMSolverPP(history=2, steps=6, lower_order_final=False)),
        "3m": make(DPMSolverPP(history=3, steps=6, lower_order_final=False)),
        "3m_sde": make(DPMSolverPP(history=3, steps=6, lower_order_final=False, noise=True)),
        "unipc": make(UniPC(history=3, steps=6, lower_order_final=False)),
    }


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_multistep_steps_integrate_polynomials_exactly(degree):
    """On a non-uniform log-SNR grid, one step's combination of data predictions equals the exact
    integral α_s ∫ e^{−(ℓ_s−ℓ)} x̂₀(ℓ) dℓ (relative to α_s) when x̂₀ is a polynomial in ℓ of the
    degree the method interpolates: DPM-Solver++ 2M ≤ 1, 3M ≤ 2 (and its SDE variant with
    weights 2e^{−2(ℓ_s−ℓ)}), UniP-3 ≤ 2, UniC-3 ≤ 3 (its new evaluation at ℓ_s included); the
    paper's 2M is exact for constants only beyond that (its D is a midpoint rule).

    Mutation: UniC's new difference at r = 0.9 instead of 1 makes it fail at degrees 1–3; 3M's
    x̂₀'' = d₂ instead of 2 d₂ makes it fail at degree 2."""
    ell = np.asarray(ELL, np.float64)
    i = 3
    h = float(ell[i + 1] - ell[i])

    def poly(v):
        return (np.asarray(v, np.float64) + 1.3) ** degree

    past = np.array([poly(float(ell[i - j])) for j in range(3)])
    new = poly(float(ell[i + 1]))
    ode = _quadrature(float(ell[i]), h, poly)
    sde = _quadrature(float(ell[i]), h, poly, rate=2.0)
    coefficients = _coefficients()
    _, b, _ = coefficients["3m"]
    _, b_sde, _ = coefficients["3m_sde"]
    _, predictor, corrector = coefficients["unipc"]
    tol = 1e-5 * max(1.0, abs(ode))
    if degree <= 2:
        assert abs(float(b[i] @ past) - ode) < tol
        assert abs(float(b_sde[i] @ past) - sde) < tol
        assert abs(float(predictor[i] @ past) - ode) < tol
    else:  # the interpolation is one degree short: the step is not exact
        assert abs(float(b[i] @ past) - ode) > 100 * tol
    unic = float(corrector[i, :3] @ past + corrector[i, 3] * new)
    assert abs(unic - ode) < tol
    _, b2, _ = coefficients["2m"]
    linear = abs(float(b2[i] @ past) - ode)
    assert linear < tol if degree == 0 else linear > 100 * tol


def _resolved(errors, floor=2e-5):
    """The step counts whose error lies above the float32 floor."""
    return [k for k, e in errors.items() if e > floor]


def _slope(errors):
    ks = _resolved(errors)
    return -np.polyfit(np.log(ks), np.log([errors[k] for k in ks]), 1)[0]


_GAUSSIAN_ORDERS = [
    (DPMSolver(stages=1), (32, 64, 128), 1.0),
    (DPMSolver(stages=2), (16, 32, 64), 2.0),
    (DPMSolver(stages=3), (16, 32, 64), 3.0),
    (DPMSolverPP(history=1), (32, 64, 128), 1.0),
    (DPMSolverPP(history=2), (16, 32, 64), 2.0),
    (UniPC(history=1), (16, 32, 64), 2.0),
    (UniPC(history=2), (16, 32, 64), 3.0),
]
# DPM-Solver++ 3M and UniPC-3 are fitted on the mixture only: on this Gaussian target 3M
# converges like h⁴ (3.9–4.0 measured at 16–64 steps) and UniPC-3 is erratic before the floor.
_FAST_ORDERS = {("vp", "DPMSolver(stages=3)"), ("vp", "UniPC()"), ("ve", "DPMSolverPP()")}
GAUSSIAN_ORDERS = [
    pytest.param(
        name,
        sampler,
        counts,
        order,
        id=f"{name}-{_id(sampler)}",
        marks=() if (name, _id(sampler)) in _FAST_ORDERS else slow,
    )
    for name in ("vp", "ve")
    for sampler, counts, order in _GAUSSIAN_ORDERS
]


@pytest.mark.parametrize(("name", "sampler", "counts", "order"), GAUSSIAN_ORDERS)
def test_fitted_order_on_a_gaussian_target(name, sampler, counts, order):
    """Path error against the closed-form flow of N(μ, s² I) data (x̂₀ affine in y), log-log
    slope over steps where the error is above the float32 floor: the declared order within 0.3.

    Mutation: DPM-Solver-2's weight 1/(2r₁) replaced by 1/r₁ drops its slope to 1; DPM-Solver-3's
    r₂ = 0.7 in place of 2/3 (nodes and weights) drops it to 2; UniC's new difference at
    r = 0.9 instead of 1 makes UniPC-2 fail."""
    sde = SDES[name]()
    law, score = gaussian_target(sde)
    m_T, s_T = law(sde.T)
    m, s = law(sampler.eps)
    x_T = m_T + s_T * jr.normal(jr.key(0), (64, sde.dim))
    exact = m + (s / s_T) * (x_T - m_T)
    errors = {}
    for k in counts:
        x = sampler.with_steps(k).sample_from(sde, score, x_T, key=jr.key(1)).x
        errors[k] = float(jnp.sqrt(jnp.mean((x - exact) ** 2)) / s)
    assert len(_resolved(errors)) >= 2, errors
    assert sampler.order == order
    assert abs(_slope(errors) - order) < 0.3, errors


def _mixture_problem(name):
    sde = SDES[name]()
    data = mixture(sde.dim)

    def score(x, t):
        return data.score(x, t, sde)

    x_T = exact_at(data, sde, sde.T, 128, jr.key(0))
    reference = ProbabilityFlow(solver=Tsit5(), controller=PIDSteps(rtol=1e-7, atol=1e-7))
    ref = sample(reference, sde, score, x_T, key=jr.key(0)).x
    return sde, score, x_T, ref


@pytest.mark.parametrize("sampler", [DPMSolverPP(history=3), UniPC(history=3)], ids=_id)
def test_a_long_last_step_does_not_destabilise_the_multistep_solvers(sampler):
    """On a grid uniform in t the last step on VP is 3–5× as long in ℓ as the one before it;
    extrapolating x̂₀ across it from the old nodes was unstable (3M at 12 uniform steps: sliced
    W2² 44× the floor, against 1.4× at 9). With ``lower_order_final`` that step is first order,
    so the path error to diffrax's Tsit5 at 1e-7 (the two-mode mixture, exact score, VP) keeps
    falling from 9 to 16 steps, within 1.5× of the error at 9 (where the papers' below-10-steps
    rule lowers the last orders anyway).

    Mutation: MAX_STEP_GROWTH = inf (no step-growth rule) makes the error at 10–16 steps 9–14×
    the error at 9, and this fail."""
    sde, score, x_T, ref = _mixture_problem("vp")
    uniform = dataclasses.replace(sampler, grid=UniformGrid())
    errors = {}
    for k in (9, 10, 12, 16):
        x = uniform.with_steps(k).sample_from(sde, score, x_T, key=jr.key(1)).x
        errors[k] = float(jnp.sqrt(jnp.mean((x - ref) ** 2)))
    assert all(errors[k] <= 1.5 * errors[9] for k in (10, 12, 16)), errors


MIXTURE_ORDERS = [
    (DPMSolver(stages=2), (20, 40, 80)),
    (DPMSolver(stages=3), (20, 40, 80)),
    (DPMSolverPP(history=2), (40, 80, 160)),
    (DPMSolverPP(history=3), (40, 80, 160)),
    (UniPC(history=2), (40, 80, 160)),
    (UniPC(history=3), (16, 32, 64)),
]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vp", "ve"])
@pytest.mark.parametrize(("sampler", "counts"), MIXTURE_ORDERS, ids=_id)
def test_fitted_order_with_the_mixture_score(name, sampler, counts):
    """The exact score of the conformance two-mode mixture: path error against diffrax's Tsit5
    at rtol = atol = 1e-7, slope within 0.45 of the declared order (the mixture's x̂₀ turns
    sharply between the modes, so the asymptotic range starts late).

    Mutation: 3M's x̂₀'' without its factor 2 drops DPM-Solver++ 3M's slope to 2."""
    sde, score, x_T, ref = _mixture_problem(name)
    errors = {}
    for k in counts:
        x = sampler.with_steps(k).sample_from(sde, score, x_T, key=jr.key(1)).x
        errors[k] = float(jnp.sqrt(jnp.mean((x - ref) ** 2)))
    assert len(_resolved(errors)) >= 2, errors
    assert abs(_slope(errors) - sampler.order) < 0.45, errors


@pytest.mark.parametrize(
    "sampler",
    [
        DPMSolver(stages=3, steps=3),
        DPMSolverPP(history=3, steps=4),
        UniPC(history=3, steps=1),
        UniPC(history=3, steps=11),
        pytest.param(DPMSolver(stages=1, steps=3), marks=slow),
        pytest.param(DPMSolver(stages=2, steps=3), marks=slow),
        pytest.param(DPMSolverPP(history=3, steps=1), marks=slow),
        pytest.param(DPMSolverPP(history=2, steps=12, noise=True), marks=slow),
        pytest.param(UniPC(history=3, steps=2), marks=slow),
    ],
    ids=_id,
)
def test_nfe_equals_score_calls(sampler):
    """The reported NFE (stages × steps for DPM-Solver, steps for the multistep solvers: UniPC's
    corrector reuses the next step's evaluation and skips the last step's) against the score
    evaluations counted with a callback.

    Mutation: UniPC correcting after the last step too (one more evaluation) makes this fail."""
    result = nfe_counted(sampler, diffsde.VP(dim=2), jr.key(0))
    assert result.passed, result


GRIDS = [
    pytest.param(LogSNRGrid(), 1.0, 1e-2, id="log_snr"),
    pytest.param(KarrasGrid(), 1.5, 1e-2, id="karras"),
    pytest.param(UniformGrid(), 4.0, 5e-2, id="uniform", marks=slow),
    pytest.param(QuadraticGrid(), 1.0, 2e-2, id="quadratic", marks=slow),
]


@pytest.mark.parametrize(("grid", "more", "tol"), GRIDS)
@pytest.mark.parametrize(
    "make",
    [
        lambda grid, k: DPMSolver(stages=3, steps=k, grid=grid),
        lambda grid, k: DPMSolverPP(history=3, steps=3 * k, grid=grid),
        lambda grid, k: UniPC(history=3, steps=3 * k, grid=grid),
    ],
    ids=["dpm_solver", "dpm_solver_pp", "unipc"],
)
def test_every_grid_converges(make, grid, more, tol):
    """On each grid, 24 NFE (36 on the Karras grid, 96 on the uniform grid) give the Gaussian
    target's exact flow to 1 % of its std at ε (VP: ℓ spans [−5, 6.6]); 2 % on the quadratic and
    5 % on the uniform grid, whose last step spans a log-SNR interval that shrinks only like
    log(1/N) (the multistep solvers extrapolate over it from much shorter steps).

    Mutation: DPM-Solver's intermediate times taken at t_k + r (t_{k+1} − t_k) instead of the
    log-SNR fraction makes dpm_solver fail on the uniform and karras grids."""
    sampler = make(grid, int(8 * more))
    sde = diffsde.VP(dim=2)
    law, score = gaussian_target(sde)
    m_T, s_T = law(sde.T)
    m, s = law(sampler.eps)
    x_T = m_T + s_T * jr.normal(jr.key(0), (64, 2))
    x = sampler.sample_from(sde, score, x_T, key=jr.key(1)).x
    assert float(jnp.sqrt(jnp.mean((x - (m + (s / s_T) * (x_T - m_T))) ** 2)) / s) < tol


@pytest.mark.parametrize(
    "sampler",
    [DPMSolver(stages=3, steps=4), UniPC(steps=4), pytest.param(UniPC(steps=1), marks=slow)],
    ids=_id,
)
def test_trajectory_at_the_grid_nodes(sampler):
    """``save_ts`` at the grid's own nodes returns the states there: x_T first, the samples last,
    and the same samples as without a trajectory.

    Mutation: UniPC's trajectory without its last (uncorrected) state makes this fail."""
    sde = diffsde.VP(dim=2)
    law, score = gaussian_target(sde)
    m_T, s_T = law(sde.T)
    x_T = m_T + s_T * jr.normal(jr.key(0), (8, 2))
    ts = sampler.times(sde)
    out = sample(sampler, sde, score, x_T, key=jr.key(1), save_ts=ts)
    plain = sample(sampler, sde, score, x_T, key=jr.key(1))
    assert out.trajectory.shape == (ts.shape[0], 8, 2)
    np.testing.assert_allclose(out.trajectory[0], x_T, atol=1e-6)
    np.testing.assert_allclose(out.trajectory[-1], out.x, atol=1e-6)
    np.testing.assert_allclose(out.x, plain.x, atol=1e-6)


@slow
def test_dpm_solver_pp_sde_weak_order():
    """The SDE variant (2M-SDE) on the Gaussian target: the conformance fit of the weak error of
    E|X − m|² (50 000 samples, 8–256 steps) matches its declared weak order 1.

    Mutation: the noise term dropped (its e^{−2h} drift kept) makes this fail; a noise std
    √(1 − e^{−h}) in place of √(1 − e^{−2h}) is not caught by this fit (measured)."""
    sampler = DPMSolverPP(history=2, noise=True)
    result = observed_order(sampler, diffsde.VP(dim=2), True, jr.key(3))
    assert result.passed, result


def test_compiles_once():
    """A second call with another key, the sampler built again, compiles nothing."""
    sde = diffsde.VP(dim=2)

    def make():
        return UniPC(history=3, steps=6)

    assert compiles_once(make(), sde, jr.key(0), make).passed


def test_needs_a_gaussian_kernel():
    """A located error at the SDE's ``type``, naming the sampler and the fix."""
    sde = diffsde.Langevin(dim=2)
    for sampler in (DPMSolver(), DPMSolverPP(), UniPC()):
        with pytest.raises(SpecFieldError, match=sampler.tag) as info:
            sampler.check_sde(sde)
        assert info.value.field == "type"


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: DPMSolver(stages=4), "stages"),
        (lambda: DPMSolverPP(history=0), "history"),
        (lambda: UniPC(history=4), "history"),
    ],
)
def test_bad_fields(make, field):
    """Out-of-range orders are refused at construction, naming the field; an unknown B(h)
    variant too (under pytest the annotation's type check refuses it first)."""
    with pytest.raises(SpecFieldError) as info:
        make()
    assert info.value.field == field
    with pytest.raises((SpecFieldError, TypeError), match="variant"):
        UniPC(variant="bh3")


def test_defaults_and_declared_orders():
    """Declared orders: DPM-Solver-k k, DPM-Solver++ its history (ODE) or 1 (SDE, weak),
    UniPC history + 1; the defaults are the papers' (log-SNR grid)."""
    assert DPMSolver(stages=3).order == 3.0
    assert DPMSolverPP(history=3).order == 3.0
    assert DPMSolverPP(history=3, noise=True).order == 1.0
    assert UniPC(history=2).order == 3.0
    for cls in SAMPLERS:
        assert isinstance(cls().grid, LogSNRGrid)
