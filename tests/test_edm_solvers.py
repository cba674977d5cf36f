"""EDM's Heun, DDIM and DEIS (diffsde/_edm_solvers.py) against theory: exactness where the
method is exact (one-point data, polynomial ε̂), closed-form flows of Gaussian targets, fitted
orders with exact scores, step-for-step identities with the exponential integrator, exact NFE,
churn moments, and the field errors."""

import dataclasses
import functools
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from mean_ou import MeanOU
from scipy import integrate

import diffsde
from diffsde._conformance._sampler import exact_at, mixture
from diffsde._conformance._sde import gaussian_target
from diffsde._edm_solvers import DDIM, DEIS, SAMPLERS, EDMHeun
from diffsde._grids import AbstractTimeGrid, KarrasGrid, LogSNRGrid, QuadraticGrid, UniformGrid
from diffsde._sampler import ExponentialIntegrator, FrozenData, sample
from diffsde._schedule import log_snr, sigma_ratio

SDES = {
    "vp": lambda: diffsde.VP(dim=2),
    "ve": lambda: diffsde.VE(dim=2),
    "mean_ou": lambda: MeanOU(dim=2),
}
EPS = {"vp": 1e-3, "ve": 1e-5, "mean_ou": 1e-3}


def _one_point(sde, point):
    """The exact score of data δ_point and the exact PF-ODE map x_T -> x_ε."""

    def score(x, t):
        alpha, sigma = sde.kernel(t)
        return -(x - sde.marginal_mean(t, point)) / sigma**2

    def flow(x_T, eps):
        s_T, s_e = sde.kernel(sde.T)[1], sde.kernel(eps)[1]
        noise = (x_T - sde.marginal_mean(sde.T, point)) / s_T
        return sde.marginal_mean(eps, point) + s_e * noise

    return score, flow


def _gaussian_flow(sde, eps):
    """Score of data N(½·1, ¼ I) and its exact affine PF-ODE map, x_T drawn from p_T."""
    law, score = gaussian_target(sde)
    (m_T, s_T), (m, s) = law(sde.T), law(eps)
    return score, lambda x_T: m + (s / s_T) * (x_T - m_T), (m_T, s_T), (m, s)


def _fitted(steps, errors) -> float:
    return float(-np.polyfit(np.log(steps), np.log(errors), 1)[0])


# exactness -----------------------------------------------------------------------------------


ONE_POINT_CASES = {
    "ddim-mean_ou-karras": (DDIM(steps=3), "mean_ou", KarrasGrid()),
    "ddim-ve-uniform": (DDIM(steps=3), "ve", UniformGrid()),
    "edm_heun-mean_ou-uniform": (EDMHeun(steps=3), "mean_ou", UniformGrid()),
    "edm_heun-vp-karras": (EDMHeun(steps=3), "vp", KarrasGrid()),
    "deis3-mean_ou-karras": (DEIS(steps=4, history=3), "mean_ou", KarrasGrid()),
    "deis4_t-ve-uniform": (DEIS(steps=4, history=4, space="t"), "ve", UniformGrid()),
    "deis2_log_snr-vp-log_snr": (DEIS(steps=4, history=2, space="log_snr"), "vp", LogSNRGrid()),
}


@pytest.mark.parametrize("case", list(ONE_POINT_CASES))
def test_exact_on_one_point_data(case):
    """One-point data: ε̂ = (y − α_t x₀)/σ_t is constant along the exact PF-ODE path, so DDIM
    (η = 0), every DEIS, and Heun in ρ (the trapezoid of a constant) are exact for any number
    of steps, on any grid (here 3–4 steps; float32 tolerance 2e-5 of max |x_T|); on MeanOU the
    offset c_t must be removed and added back.
    Mutation: dropping ``offset(sde, s, dim)`` in DDIM's update makes ddim-mean_ou fail; a
    Heun correction with weight 1/3 in place of 1/2 makes edm_heun fail."""
    sampler, name, grid = ONE_POINT_CASES[case]
    sde = SDES[name]()
    sampler = dataclasses.replace(sampler, eps=EPS[name], grid=grid)
    point = jnp.array([0.7, -0.4])
    score, flow = _one_point(sde, point)
    x_T = exact_at(mixture(2), sde, sde.T, 64, jr.key(0))
    out = sample(sampler, sde, score, x_T, key=jr.key(1))
    scale = float(jnp.max(jnp.abs(x_T)))
    assert float(jnp.max(jnp.abs(out.x - flow(x_T, sampler.eps)))) < 2e-5 * scale + 1e-5


def _vp_rho(t):
    """ρ_t of VP (β 0.1 → 20, T = 1) in float64, from its closed form ρ² = e^{B(t)} − 1."""
    return np.sqrt(np.expm1(0.1 * t + 9.95 * t**2))


def _reference_integral(space, lo_t, hi_t, power):
    """∫ v^power dρ from t = lo_t to hi_t on VP, in float64, independently of diffsde."""
    if space == "sigma_ratio":
        a, b = _vp_rho(lo_t), _vp_rho(hi_t)
        return (b ** (power + 1) - a ** (power + 1)) / (power + 1)
    if space == "log_snr":  # ρ = e^{−ℓ}: ∫ ℓ^p d(e^{−ℓ})
        a, b = -np.log(_vp_rho(lo_t)), -np.log(_vp_rho(hi_t))
        return integrate.quad(lambda ell: -(ell**power) * np.exp(-ell), a, b, epsabs=0)[0]

    def d_rho(t):  # ρ' = B'(t) e^{B} / (2ρ)
        return (0.1 + 19.9 * t) * np.exp(0.1 * t + 9.95 * t**2) / (2 * _vp_rho(t))

    return integrate.quad(lambda t: t**power * d_rho(t), lo_t, hi_t, epsabs=0, limit=200)[0]


@pytest.mark.parametrize("space", ["t", "sigma_ratio", "log_snr"])
@pytest.mark.parametrize("history", [1, 2, 3, 4])
def test_deis_coefficients_integrate_polynomials_exactly(space, history):
    """On every step i the weights C_ij through the k_i = min(history, i + 1) last nodes
    integrate every polynomial of degree < k_i in the space's variable v exactly:
    Σ_j C_ij v_{i−j}^p = ∫_{t_i}^{t_{i+1}} v^p dρ (VP, reference in float64 from the closed
    form of ρ by scipy quadrature; relative tolerance 2e-4, float32). So DEIS-k is exact on a
    path whose ε̂ is a polynomial of degree < k in v, once past its warm-up.
    Mutation: a Lagrange basis through history − 1 nodes makes this fail."""
    sde = diffsde.VP(dim=2)
    sampler = DEIS(steps=7, history=history, space=space, grid=QuadraticGrid())
    ts = sampler.times(sde)
    coefficients = np.asarray(jax.jit(lambda ts: sampler.coefficients(sde, ts))(ts), np.float64)
    variable = {
        "t": ts,
        "sigma_ratio": jax.vmap(lambda t: sigma_ratio(sde, t))(ts),
        "log_snr": jax.vmap(lambda t: log_snr(sde, t))(ts),
    }
    v = np.asarray(variable[space], np.float64)
    t64 = np.asarray(ts, np.float64)
    for i in range(sampler.steps):
        k = min(history, i + 1)
        assert np.all(coefficients[i, k:] == 0)
        nodes = v[[i - j for j in range(k)]]
        for power in range(k):
            got = coefficients[i, :k] @ nodes**power
            want = _reference_integral(space, t64[i], t64[i + 1], power)
            assert abs(got - want) <= 2e-4 * max(abs(want), 1e-3), (i, power, got, want)


def test_deis_on_polynomial_noise_is_exact_after_warm_up():
    """An x-independent score whose ε̂ = e₀ + e₁ρ + e₂ρ² (a polynomial of degree 2 in ρ):
    started at t_2 of the grid (where DEIS-3 has its 3 nodes only after warm-up), the
    history-3 steps are exact; DEIS-3 from T differs from the exact ∫ε̂ dρ only by its two
    warm-up steps, computed here in closed form (tolerance 1e-4 of the result, float32);
    DEIS-2 is off by over 10 times that.
    Mutation: extrapolating with one node fewer (history − 1) makes this fail."""
    sde = diffsde.VP(dim=2)
    e = jnp.array([[0.3, -0.2], [0.05, 0.1], [-0.002, 0.001]])

    def eps_of(rho):
        return e[0] + e[1] * rho + e[2] * rho**2

    def score(x, t):
        del x
        return -eps_of(sigma_ratio(sde, t)) / sde.kernel(t)[1]

    def antiderivative(rho):
        return e[0] * rho + e[1] * rho**2 / 2 + e[2] * rho**3 / 3

    sampler = DEIS(steps=8, history=3, space="sigma_ratio", grid=UniformGrid())
    ts = sampler.times(sde)
    rho = jax.vmap(lambda t: sigma_ratio(sde, t))(ts)
    x_T = jnp.zeros((1, 2))
    out = sample(sampler, sde, score, x_T, key=jr.key(0))
    alpha_e = sde.kernel(sampler.eps)[0]
    exact_u = antiderivative(rho[-1]) - antiderivative(rho[0])
    # warm-up: step 0 holds ε̂(ρ_0), step 1 the line through ρ_0, ρ_1
    line = eps_of(rho[1]) + (eps_of(rho[1]) - eps_of(rho[0])) / (rho[1] - rho[0]) * (
        (rho[2] + rho[1]) / 2 - rho[1]
    )
    warm = (rho[1] - rho[0]) * eps_of(rho[0]) + (rho[2] - rho[1]) * line
    warm_exact = antiderivative(rho[2]) - antiderivative(rho[0])
    want = alpha_e * (exact_u + warm - warm_exact)
    scale = float(jnp.max(jnp.abs(alpha_e * exact_u)))
    assert float(jnp.max(jnp.abs(out.x[0] - want))) < 1e-4 * scale
    two = DEIS(steps=8, history=2, space="sigma_ratio", grid=UniformGrid())
    two = sample(two, sde, score, x_T, key=jr.key(0))
    assert float(jnp.max(jnp.abs(two.x[0] - want))) > 10 * 1e-4 * scale


@pytest.mark.parametrize(
    "name, grid",
    [("mean_ou", UniformGrid()), pytest.param("vp", KarrasGrid(), marks=pytest.mark.slow)],
)
def test_ddim_eta1_is_the_ddpm_ancestral_step(name, grid):
    """DDIM at η = 1 is the forward posterior q(y_s | y_t, x̂₀): the same step as
    ExponentialIntegrator(frozen=FrozenData()), draw for draw with the same key (both split it
    into one key per step): equal to float32 rounding (1e-4) on MeanOU (uniform grid; offsets
    c_t) and VP (Karras grid).
    Mutation: σ_η with σ_t in place of σ_s makes this fail."""
    sde, data = SDES[name](), mixture(2)
    x_T = exact_at(data, sde, sde.T, 128, jr.key(0))
    score = lambda x, t: data.score(x, t, sde)  # noqa: E731
    ddim = sample(DDIM(steps=12, eta=1.0, grid=grid), sde, score, x_T, key=jr.key(3))
    ddpm = ExponentialIntegrator(steps=12, frozen=FrozenData(), grid=grid)
    ref = sample(ddpm, sde, score, x_T, key=jr.key(3))
    assert float(jnp.max(jnp.abs(ddim.x - ref.x))) < 1e-4


def test_deis_history_one_is_ddim():
    """DEIS with history 1 holds ε̂ fixed over each step: its coefficient is ρ_s − ρ_t exactly
    (the quadrature of a constant), i.e. DDIM at η = 0, in every space (to 1e-4, float32).
    Mutation: a DEIS weight α_t in place of α_s makes this fail."""
    sde, data = diffsde.VP(dim=2), mixture(2)
    x_T = exact_at(data, sde, sde.T, 128, jr.key(0))
    score = lambda x, t: data.score(x, t, sde)  # noqa: E731
    b = sample(DDIM(steps=9, grid=KarrasGrid()), sde, score, x_T, key=jr.key(1))
    for space in ("t", "sigma_ratio", "log_snr"):
        deis = DEIS(steps=9, history=1, space=space, grid=KarrasGrid())
        a = sample(deis, sde, score, x_T, key=jr.key(1))
        assert float(jnp.max(jnp.abs(a.x - b.x))) < 1e-4, space


# orders --------------------------------------------------------------------------------------


def test_edm_heun_second_order_on_gaussian_target():
    """EDM Heun on data N(½·1, ¼ I), whose PF-ODE map x_T -> x_ε is affine in closed form:
    the RMS error relative to the std of p_ε falls as steps⁻² (fitted 2 ± 0.3 at 16, 32, 64
    steps) on VP (uniform grid) and VE (Karras grid).
    Mutation: dropping Heun's correction (x̂ + h d) makes the fitted order 1 and this fail."""
    for sde, eps, grid in (
        (diffsde.VP(dim=2), 1e-3, UniformGrid()),
        (diffsde.VE(dim=2), 1e-5, KarrasGrid()),
    ):
        score, flow, (m_T, s_T), (_, s) = _gaussian_flow(sde, eps)
        x_T = m_T + s_T * jr.normal(jr.key(0), (256, 2))
        steps = [16, 32, 64]
        errors = []
        for k in steps:
            out = sample(EDMHeun(steps=k, grid=grid, eps=eps), sde, score, x_T, key=jr.key(1))
            errors.append(float(jnp.sqrt(jnp.mean((out.x - flow(x_T)) ** 2)) / s))
        assert abs(_fitted(steps, errors) - 2) < 0.3, errors


@functools.cache
def _mixture_reference(name):
    """The conformance mixture on SDES[name], its exact score, x_T, and the end points of a
    fine solve (RK4 on the PF-ODE, 2048 Karras steps) with their spread."""
    sde, eps, data = SDES[name](), EPS[name], mixture(2)
    score = jax.tree_util.Partial(lambda d, x, t: d.score(x, t, sde), data)
    x_T = exact_at(data, sde, sde.T, 128, jr.key(0))
    fine = diffsde.ProbabilityFlow(
        solver=diffsde.ClassicalRK4(),
        controller=diffsde.FixedSteps(steps=2048, grid=KarrasGrid()),
        eps=eps,
    )
    ref = sample(fine, sde, score, x_T, key=jr.key(1)).x
    return sde, score, x_T, ref, float(jnp.sqrt(jnp.mean((ref - ref.mean(0)) ** 2)))


def _mixture_errors(name, make, steps):
    """RMS distance (relative to the spread of p_ε) of ``make(k)`` with the exact mixture
    score to the fine reference of :func:`_mixture_reference`, for each k in ``steps``."""
    sde, score, x_T, ref, scale = _mixture_reference(name)
    errors = []
    for k in steps:
        x = sample(make(k), sde, score, x_T, key=jr.key(1)).x
        errors.append(float(jnp.sqrt(jnp.mean((x - ref) ** 2))) / scale)
    return errors


ORDER_CASES = {  # name: (sampler from (steps, grid, eps), declared order, step counts)
    "edm_heun": (lambda k, g, e: EDMHeun(steps=k, grid=g, eps=e), 2, [16, 32, 64]),
    "ddim": (lambda k, g, e: DDIM(steps=k, grid=g, eps=e), 1, [32, 64, 128]),
    "deis2": (
        lambda k, g, e: DEIS(steps=k, grid=g, eps=e, history=2, space="sigma_ratio"),
        2,
        [64, 128, 256],
    ),
    "deis3": (
        lambda k, g, e: DEIS(steps=k, grid=g, eps=e, history=3, space="sigma_ratio"),
        3,
        [64, 128, 256],
    ),
    "deis3_t": (
        lambda k, g, e: DEIS(steps=k, grid=g, eps=e, history=3, space="t"),
        3,
        [64, 128, 256],
    ),
    "deis3_log_snr": (
        lambda k, g, e: DEIS(steps=k, grid=g, eps=e, history=3, space="log_snr"),
        3,
        [64, 128, 256],
    ),
}


@pytest.mark.parametrize(
    "case, grid",
    [
        ("deis3", UniformGrid()),
        pytest.param("edm_heun", UniformGrid(), marks=pytest.mark.slow),
        pytest.param("ddim", KarrasGrid(), marks=pytest.mark.slow),
    ],
)
def test_order_on_mixture_vp(case, grid):
    """The fitted order (log-log slope of the error against a fine RK4 reference, exact score of
    the conformance kit's two-mode mixture, VP) is the declared one within 0.35, at step counts
    in the asymptotic range (measured: DEIS-3 slopes 2.2, 2.8, 2.9, 2.9, 3.3 from 8 to 256
    steps, uniform grid).
    Mutation: DEIS extrapolating through history − 1 nodes makes deis3 fit ~2 and fail."""
    make, declared, steps = ORDER_CASES[case]
    errors = _mixture_errors("vp", lambda k: make(k, grid, 1e-3), steps)
    assert make(4, grid, 1e-3).order == declared
    assert abs(_fitted(steps, errors) - declared) < 0.35, errors


ORDER_GRIDS = {  # DEIS in t with the quadratic grid, as its authors pair them
    "deis3_t": (QuadraticGrid(), KarrasGrid()),
    "deis3_log_snr": (LogSNRGrid(), KarrasGrid()),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(ORDER_CASES))
@pytest.mark.parametrize("name", ["vp", "ve"])
def test_order_on_mixture(case, name):
    """As test_order_on_mixture_vp, on VP and VE, every case, uniform and Karras grids (DEIS in
    t on the quadratic and Karras grids: on a uniform grid ε̂ ∝ √t near ε on VP and its
    order shows only far below the 256 steps tried).
    Mutation: DDIM's ε̂ weight σ_t in place of σ_s makes ddim fail."""
    make, declared, steps = ORDER_CASES[case]
    eps = EPS[name]
    for grid in ORDER_GRIDS.get(case, (UniformGrid(), KarrasGrid())):
        errors = _mixture_errors(name, lambda k: make(k, grid, eps), steps)
        assert abs(_fitted(steps, errors) - declared) < 0.35, (grid, errors)


# NFE, trajectories, churn ----------------------------------------------------------------------


class _Counter:
    calls = 0

    def __call__(self, *args):
        del args
        self.calls += 1


@pytest.mark.parametrize(
    "sampler, nfe",
    [
        (EDMHeun(steps=5, churn=3.0, churn_tmin=0.05, churn_tmax=20.0), 10),
        (DDIM(steps=7, eta=0.5), 7),
        (DEIS(steps=6, history=4), 6),
    ],
    ids=["heun_churn", "ddim_eta", "deis4"],
)
def test_nfe_is_the_score_calls_counted(sampler, nfe):
    """The reported NFE (2·steps for EDM Heun, corrected on every step since ρ_ε > 0; steps for
    DDIM and DEIS) equals the batched score evaluations counted by a callback.
    Mutation: reporting 2·steps − 1 for EDM Heun (as if the last step were Euler) fails."""
    sde, data = diffsde.VP(dim=2), mixture(2)
    counter, rows = _Counter(), 8

    def score(x, t):
        jax.debug.callback(counter, x)
        return data.score(x, t, sde)

    out = sample(sampler, sde, score, exact_at(data, sde, sde.T, rows, jr.key(0)), key=jr.key(1))
    jax.block_until_ready(out.x)
    jax.effects_barrier()
    assert int(out.nfe) == nfe == counter.calls / rows


@pytest.mark.parametrize(
    "sampler", [DEIS(steps=6), pytest.param(EDMHeun(steps=6, churn=2.0), marks=pytest.mark.slow)]
)
def test_trajectory_on_the_grid(sampler):
    """save_ts at T, at an inner grid time and at ε gives x_T, the state there (the sampler
    run to that node from the same start, for deterministic ones) and the final x.
    Mutation: interpolating on a uniform grid while the sampler runs on Karras fails."""
    sampler = dataclasses.replace(sampler, grid=KarrasGrid())
    sde, data = diffsde.VP(dim=2), mixture(2)
    score = lambda x, t: data.score(x, t, sde)  # noqa: E731
    x_T = exact_at(data, sde, sde.T, 16, jr.key(0))
    ts = np.asarray(sampler.times(sde))
    save = jnp.asarray([ts[0], ts[3], ts[-1]])
    out = sample(sampler, sde, score, x_T, key=jr.key(2), save_ts=save)
    assert out.trajectory.shape == (3, 16, 2)
    np.testing.assert_allclose(out.trajectory[0], x_T, atol=1e-6)
    np.testing.assert_allclose(out.trajectory[-1], out.x, atol=1e-6)
    if isinstance(sampler, DEIS):  # deterministic: a run to ts[3] on the same three steps
        head = sample(
            DEIS(steps=3, grid=_Prefix(tuple(float(t) for t in ts[:4]))),
            sde,
            score,
            x_T,
            key=jr.key(2),
        )
        np.testing.assert_allclose(out.trajectory[1], head.x, atol=1e-5)


class _Prefix(AbstractTimeGrid):
    """A fixed list of times (the first nodes of another grid)."""

    tag: ClassVar[str] = "prefix"
    ts: tuple[float, ...] = eqx.field(static=True)

    def times(self, sde, eps, steps):
        del sde, eps, steps
        return jnp.asarray(self.ts, jnp.float32)


def test_churn_is_void_on_the_first_step():
    """ρ̂ is clamped to ρ_T (the score is defined on [0, T] only), so from t_0 = T the churn
    adds nothing: one step with churn is the deterministic step.
    Mutation: dropping the clamp min(ρ_i (1 + γ_i), ρ_T) adds noise and fails."""
    sde, data = diffsde.VP(dim=2), mixture(2)
    score = lambda x, t: data.score(x, t, sde)  # noqa: E731
    x_T = exact_at(data, sde, sde.T, 32, jr.key(0))
    a = sample(EDMHeun(steps=1, churn=5.0), sde, score, x_T, key=jr.key(1))
    b = sample(EDMHeun(steps=1), sde, score, x_T, key=jr.key(1))
    assert float(jnp.max(jnp.abs(a.x - b.x))) < 1e-5 * float(jnp.max(jnp.abs(b.x)))


def _churn_second_moment(sde, eps, sampler, n, key):
    """(E|X − m|²/(d s²) − 1, its standard error) of ``sampler`` on the Gaussian target."""
    score, _, (m_T, s_T), (m, s) = _gaussian_flow(sde, eps)
    x_T = m_T + s_T * jr.normal(jr.key(0), (n, 2))
    x = sample(sampler, sde, score, x_T, key=key).x
    second = jnp.mean((x - m) ** 2, -1) / s**2
    return float(jnp.mean(second)) - 1, float(jnp.std(second)) / np.sqrt(n), x, (m, s)


def test_churn_keeps_the_target_moments():
    """With churn (S_churn = 5, S_noise = 1, 128 uniform steps) EDM Heun samples p_ε of a
    Gaussian target (VP): mean per coordinate within 4 standard errors of 40 000 samples, the
    second moment within 4 SE + 0.01 (the discretisation error measured at 128 steps: 2e-3);
    and the samples are random (another key moves them by over 10 % of the std).
    Mutation: adding the churn noise with std ρ̂ − ρ_i in place of √(ρ̂² − ρ_i²) fails."""
    sde = diffsde.VP(dim=2)
    sampler = EDMHeun(steps=128, churn=5.0)
    error, se, x, (m, s) = _churn_second_moment(sde, 1e-3, sampler, 40_000, jr.key(1))
    assert abs(error) < 4 * se + 0.01, (error, se)
    assert float(jnp.max(jnp.abs(x.mean(0) - m))) < 4 * float(s) / np.sqrt(40_000)
    _, _, other, _ = _churn_second_moment(sde, 1e-3, sampler, 40_000, jr.key(2))
    assert float(jnp.sqrt(jnp.mean((x - other) ** 2))) > 0.1 * float(s)


@pytest.mark.slow
def test_churn_weak_order_two_and_no_order_with_excess_noise():
    """Churn with S_noise = 1 adds noise that maps p at ρ_i exactly to p at ρ̂, so only the
    Heun steps err: the weak error of the second moment (Gaussian target, VP, S_churn = 2,
    200 000 samples) falls as steps⁻² (fitted 2 ± 0.35 at 16, 32, 64 steps; measured 4.1e-1,
    8.9e-2, 2.2e-2, 4.7e-3 at 8–64). With S_noise = 1.1 it stalls near 0.2 (no order: the excess
    noise does not vanish with the step).
    Mutation: a churn noise of std ρ̂ − ρ_i in place of √(ρ̂² − ρ_i²) makes this fail."""
    sde = diffsde.VP(dim=2)
    steps = [16, 32, 64]
    errors = [
        _churn_second_moment(sde, 1e-3, EDMHeun(steps=k, churn=2.0), 200_000, jr.key(k))[0]
        for k in steps
    ]
    assert abs(_fitted(steps, np.abs(errors)) - 2) < 0.35, errors
    stalled = [
        _churn_second_moment(
            sde, 1e-3, EDMHeun(steps=k, churn=2.0, churn_noise=1.1), 50_000, jr.key(k)
        )[0]
        for k in (64, 128)
    ]
    assert min(stalled) > 0.15, stalled


# fields and SDEs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: DDIM(eta=1.5), "eta"),
        (lambda: DEIS(history=5), "history"),
        (lambda: EDMHeun(churn=-1.0), "churn"),
        (lambda: EDMHeun(churn_noise=0.0), "churn_noise"),
        (lambda: EDMHeun(churn_tmin=2.0, churn_tmax=1.0), "churn_tmax"),
        (lambda: DDIM(steps=0), "steps"),
    ],
)
def test_bad_fields_name_the_field(make, field):
    """Each invalid value raises SpecFieldError at its field, with the value in the message.
    Mutation: accepting eta > 1 fails."""
    with pytest.raises(diffsde.SpecFieldError) as err:
        make()
    assert err.value.field == field


@pytest.mark.parametrize("cls", SAMPLERS)
def test_needs_a_gaussian_kernel(cls):
    """An SDE without a Gaussian kernel (Langevin) is refused at its ``type`` naming the
    sampler; ε outside (0, T) at ``eps``.
    Mutation: dropping require_gaussian from check_sde fails."""
    langevin = diffsde.Langevin(dim=2, potential="0.5 * sum(x**2)")
    with pytest.raises(diffsde.SpecFieldError) as err:
        cls().check_sde(langevin)
    assert err.value.field == "type" and cls.tag in str(err.value)
    with pytest.raises(diffsde.SpecFieldError) as err:
        cls(eps=2.0).check_sde(diffsde.VP(dim=2))
    assert err.value.field == "eps"


def test_declared_orders():
    """Orders: EDM Heun 2 (also with churn at S_noise = 1), None with S_noise ≠ 1; DDIM 1;
    DEIS its history. Mutation: declaring 1 for churned Heun fails."""
    assert EDMHeun().order == 2 and EDMHeun(churn=5.0).order == 2
    assert EDMHeun(churn=5.0, churn_noise=1.007).order is None
    assert DDIM().order == 1 and DDIM(eta=1.0).order == 1
    assert [DEIS(history=k).order for k in (1, 2, 3, 4)] == [1, 2, 3, 4]
