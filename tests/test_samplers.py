"""The samplers (docs/math.md §4, §7), checked against theory with the EXACT score of a 2-D Gaussian
mixture under VP, started from EXACT samples of p_T (x₀ ~ p_data, x_T = m_T(x₀) + σ_T z), so
what is left is Monte Carlo error and each solver's discretisation error.

Tolerances:
- moments: 4 SE (from the samples) + |moment(p_ε) − moment(p_0)| (exact, ≤ 1.3e-3) + the
  solver's weak error (stated per sampler, from measurements at 4-10x finer settings);
- sliced W2 (64 fixed random directions) to an independent exact sample of p_0 of the same
  size: at most 2x the Monte Carlo floor, the mean sliced W2 between that sample and 8
  independent exact samples (0.044 at n = 4000; single pairs range 0.024-0.067). Measured over
  3 seeds: euler_maruyama 0.045-0.056, pc 0.022-0.066, exponential 0.036-0.059,
  reverse_sde_adaptive 0.025-0.064, pf_ode 0.028-0.042.
"""

import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jax.experimental import io_callback

import diffsde

EPS = 1e-3
N = 4000
DIM = 2
MIXTURE = diffsde.GaussianMixture([0.3, 0.7], [[-1.5, 0.5], [1.0, -0.5]], [0.4, 0.6])
SDE = diffsde.VP(DIM)
SW2_FACTOR = 2.0


def _score(x, t):
    return MIXTURE.score(x, t, SDE)


def _exact_p_T(key, n, target=MIXTURE, sde=SDE):
    data_key, noise_key = jr.split(key)
    x0 = target.sample(key=data_key, n=n)
    sample = lambda x, k: sde.sample_marginal(sde.T, x, key=k)[0]  # noqa: E731
    return jax.vmap(sample)(x0, jr.split(noise_key, n))


def _moments(t, target=MIXTURE, sde=SDE):
    means, stds = (np.asarray(a, np.float64) for a in target.marginal(sde, t))
    w = np.exp(np.asarray(target.log_weights, np.float64))
    mean = w @ means
    second = np.einsum("k,ki,kj->ij", w, means, means) + np.sum(w * stds**2) * np.eye(DIM)
    return mean, second - np.outer(mean, mean)


def _check_moments(x, solver_error):
    x = np.asarray(x, np.float64)
    n = len(x)
    mean, cov = x.mean(0), np.cov(x.T)
    centred = x - mean
    se_mean = x.std(0, ddof=1) / np.sqrt(n)
    se_cov = np.einsum("ni,nj->nij", centred, centred).std(0, ddof=1) / np.sqrt(n)
    mean_0, cov_0 = _moments(0.0)
    mean_eps, cov_eps = _moments(EPS)
    np.testing.assert_array_less(
        np.abs(mean - mean_0), 4 * se_mean + np.abs(mean_eps - mean_0) + solver_error
    )
    np.testing.assert_array_less(
        np.abs(cov - cov_0), 4 * se_cov + np.abs(cov_eps - cov_0) + solver_error
    )


def sliced_w2(a, b, *, key=jr.key(123), projections=64):
    """Sliced W2: root mean over random unit directions of the squared 1-D W2 of the
    projections (sorted projections matched in order; equal sample sizes)."""
    v = jr.normal(key, (projections, a.shape[1]))
    v = v / jnp.linalg.norm(v, axis=1, keepdims=True)
    pa, pb = jnp.sort(a @ v.T, axis=0), jnp.sort(b @ v.T, axis=0)
    return float(jnp.sqrt(jnp.mean((pa - pb) ** 2)))


@pytest.fixture(scope="module")
def exact_sets():
    """x_T (exact p_T), a reference sample of p_0, and the exact-vs-exact W2 floor."""
    x_T = _exact_p_T(jr.key(0), N)
    reference = MIXTURE.sample(key=jr.key(1), n=N)
    floor = np.mean(
        [sliced_w2(MIXTURE.sample(key=jr.key(100 + i), n=N), reference) for i in range(8)]
    )
    return x_T, reference, floor


# name -> (sampler, weak error allowed on the moments: measured change to a 4-10x finer run)
SOLVERS = {"euler": diffsde.Euler, "heun": diffsde.Heun, "rk4": diffsde.ClassicalRK4}
SAMPLERS = {
    # Euler–Maruyama: O(h) weak error, ≤ 0.01 at 1000 steps (test_reverse: ≤ 0.006 at 256)
    "euler_maruyama": (diffsde.EulerMaruyama(steps=1000), 0.01),
    # ShARK, rtol = atol = 1e-2: moments moved ≤ 0.01 against rtol = atol = 1e-3
    "reverse_sde_adaptive": (
        diffsde.AdaptiveReverseSDE(
            rtol=1e-2, atol=1e-2, dt0=1e-2, brownian_tol=1e-5, max_steps=4096
        ),
        0.02,
    ),
    # Tsit5 at 1e-5: moments move ≤ 1e-4 against 1e-7
    "pf_ode": (
        diffsde.ProbabilityFlow(
            solver=diffsde.Tsit5(), controller=diffsde.PIDSteps(rtol=1e-5, atol=1e-5, dt0=1e-2)
        ),
        1e-3,
    ),
    # PC, 500 steps with one Langevin step (snr 0.16): ≤ 0.02 measured
    "pc": (diffsde.PredictorCorrector(steps=500, corrector_steps=1, snr=0.16), 0.02),
    # exponential integrator, 200 steps: variance error ≈ 0.01 (O(h), see the comparison test)
    "exponential": (diffsde.ExponentialIntegrator(steps=200), 0.02),
}
FAST = {"pf_ode"}


@pytest.mark.parametrize(
    "name",
    [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in SAMPLERS],
)
def test_sampler_returns_target(name, exact_sets):
    x_T, reference, floor = exact_sets
    sampler, weak_error = SAMPLERS[name]
    out = diffsde.sample(sampler, SDE, _score, x_T, key=jr.key(7))
    assert out.x.shape == (N, DIM) and out.nfe.shape == () and out.trajectory is None
    _check_moments(out.x, weak_error)
    w2 = sliced_w2(out.x, reference)
    assert w2 <= SW2_FACTOR * floor, (name, w2, floor, int(out.nfe))


def test_adaptive_pf_ode_uses_far_fewer_nfe(exact_sets):
    """Tsit5 at rtol = atol = 1e-5 (measured NFE 91 on this batch) against Euler–Maruyama's
    1000: at least 5x fewer."""
    x_T, _, _ = exact_sets
    sampler, _ = SAMPLERS["pf_ode"]
    nfe = int(diffsde.sample(sampler, SDE, _score, x_T[:500], key=jr.key(0)).nfe)
    assert 0 < nfe <= 1000 // 5, nfe


# NFE: count the score evaluations that actually run ------------------------------------------

NFE_CASES = {
    "euler": diffsde.ProbabilityFlow(
        solver=diffsde.Euler(), controller=diffsde.FixedSteps(steps=3)
    ),
    "heun": diffsde.ProbabilityFlow(solver=diffsde.Heun(), controller=diffsde.FixedSteps(steps=3)),
    "rk4": diffsde.ProbabilityFlow(
        solver=diffsde.ClassicalRK4(), controller=diffsde.FixedSteps(steps=3)
    ),
    "tsit5": diffsde.ProbabilityFlow(
        solver=diffsde.Tsit5(), controller=diffsde.PIDSteps(rtol=1e-3, atol=1e-3, dt0=1e-2)
    ),
    "dopri5": diffsde.ProbabilityFlow(
        solver=diffsde.Dopri5(), controller=diffsde.PIDSteps(rtol=1e-3, atol=1e-3, dt0=1e-2)
    ),
    "euler_maruyama": diffsde.EulerMaruyama(steps=3),
    "pc": diffsde.PredictorCorrector(steps=3, corrector_steps=2, snr=0.16),
    "exponential": diffsde.ExponentialIntegrator(steps=3),
    "shark": diffsde.AdaptiveReverseSDE(
        rtol=1e-2, atol=1e-2, dt0=1e-2, brownian_tol=1e-4, max_steps=1000
    ),
}


@pytest.mark.parametrize(
    "name",
    [n if n == "tsit5" else pytest.param(n, marks=pytest.mark.slow) for n in NFE_CASES],
)
def test_reported_nfe_is_the_number_of_score_evaluations(name):
    """A host callback in the score counts its executions on the batch (the score is vmapped,
    the callback's argument t is not batched, so it runs once per batched evaluation)."""
    calls = []

    def count(t):
        calls.append(1)
        return np.zeros((), np.float32)

    def score(x, t):
        zero = io_callback(count, jax.ShapeDtypeStruct((), jnp.float32), t)
        return _score(x, t) + zero

    out = diffsde.sample(NFE_CASES[name], SDE, score, _exact_p_T(jr.key(0), 4), key=jr.key(1))
    jax.effects_barrier()
    assert int(out.nfe) == len(calls) > 0, (name, int(out.nfe), len(calls))


# chunking --------------------------------------------------------------------------------------


def test_chunks_match_one_chunk_and_compile_once():
    """A fixed-step ODE sampler gives the same samples in 3 chunks (the last one padded) as in
    one; the chunked call traces the sampler once (a trace-time counter in the score)."""
    sampler = diffsde.ProbabilityFlow(
        solver=diffsde.Heun(), controller=diffsde.FixedSteps(steps=20)
    )
    x_T = _exact_p_T(jr.key(0), 1000)
    traces = {"chunked": 0, "whole": 0}

    def counting(label, x, t):
        traces[label] += 1  # runs while tracing only
        return _score(x, t)

    chunked_score = functools.partial(counting, "chunked")
    chunked = diffsde.sample(sampler, SDE, chunked_score, x_T, key=jr.key(0), chunk_size=400)
    whole = diffsde.sample(
        sampler, SDE, functools.partial(counting, "whole"), x_T, key=jr.key(0), chunk_size=1000
    )
    np.testing.assert_allclose(chunked.x, whole.x, rtol=0, atol=1e-6)
    assert int(chunked.nfe) == int(whole.nfe) == 40
    # 3 chunks, one trace: as many score traces as the single chunk needed
    assert traces["chunked"] == traces["whole"] > 0, traces
    # calling again with the same sampler and score compiles nothing
    before = traces["chunked"]
    diffsde.sample(sampler, SDE, chunked_score, x_T, key=jr.key(1), chunk_size=400)
    assert traces["chunked"] == before


@pytest.mark.slow
def test_trajectory_is_saved_at_requested_times():
    sampler = diffsde.ProbabilityFlow(
        solver=diffsde.Heun(), controller=diffsde.FixedSteps(steps=20)
    )
    x_T = _exact_p_T(jr.key(0), 300)
    save_ts = jnp.array([SDE.T, 0.5, EPS])
    out = diffsde.sample(sampler, SDE, _score, x_T, key=jr.key(0), chunk_size=128, save_ts=save_ts)
    assert out.trajectory.shape == (3, 300, DIM)
    np.testing.assert_allclose(out.trajectory[0], x_T, atol=1e-6)
    np.testing.assert_allclose(out.trajectory[-1], out.x, atol=1e-6)
    with pytest.raises(ValueError, match="strictly decreasing"):
        diffsde.sample(sampler, SDE, _score, x_T, key=jr.key(0), save_ts=jnp.array([0.1, 0.5]))


# PF-ODE convergence orders -------------------------------------------------------------------


@pytest.mark.slow
def test_pf_ode_fixed_step_convergence_orders():
    """Fixed-step Euler, Heun and RK4 on the PF-ODE converge at orders 1, 2, 4 (±0.3, fitted
    slope of log RMS error against log h). One fixed batch of 256 exact p_T samples; reference
    Tsit5 at rtol = atol = 1e-7 (float32: good to ~1e-6, below the smallest error used, 8e-6
    for RK4 at 32 steps; the local RK4 slope still rises there, 3.6 → 3.8, so no floor).
    Measured errors: RK4 3.2e-4, 1.1e-4, 2.4e-5, 8.0e-6 at 12, 16, 24, 32 steps."""
    x_T = _exact_p_T(jr.key(3), 256)
    ref = diffsde.ProbabilityFlow(
        solver=diffsde.Tsit5(),
        controller=diffsde.PIDSteps(rtol=1e-7, atol=1e-7, dt0=1e-3, max_steps=100_000),
    )
    x_ref = diffsde.sample(ref, SDE, _score, x_T, key=jr.key(0)).x
    slopes = {}
    for solver, order, step_counts in [
        ("euler", 1, (32, 64, 128, 256)),
        ("heun", 2, (16, 32, 64, 128)),
        ("rk4", 4, (12, 16, 24, 32)),
    ]:
        errors = []
        for steps in step_counts:
            sampler = diffsde.ProbabilityFlow(
                solver=SOLVERS[solver](), controller=diffsde.FixedSteps(steps=steps)
            )
            x = diffsde.sample(sampler, SDE, _score, x_T, key=jr.key(0)).x
            errors.append(float(jnp.sqrt(jnp.mean(jnp.sum((x - x_ref) ** 2, -1)))))
        h = (SDE.T - EPS) / np.asarray(step_counts)
        slopes[solver] = np.polyfit(np.log(h), np.log(errors), 1)[0]
        assert min(errors) > 4e-6, (solver, errors)  # above the reference's own error
        assert abs(slopes[solver] - order) <= 0.3, (solver, errors, slopes[solver])
    print("slopes", slopes)


# exponential integrator ----------------------------------------------------------------------


FROZEN = {
    "noise": diffsde.FrozenNoise(),
    "score": diffsde.FrozenScore(),
    "data": diffsde.FrozenData(),
}


def _constant_case(frozen):
    """A score for which what ``frozen`` holds fixed is truly constant, and the exact law of
    x_ε given x_T = 0: N(mean, std² I) from the closed forms of VP."""
    lam, sig = (lambda t: SDE.kernel(t)[0]), (lambda t: SDE.kernel(t)[1])
    a = float(lam(EPS) / lam(SDE.T))
    var = a**2 * float(sig(SDE.T)) ** 2 - float(sig(EPS)) ** 2  # linear part, exact
    if frozen == "noise":  # s = −c/σ_t: κ_total = 2σ_T(aσ_T − σ_ε) per unit of σ_T s = −c
        c = jnp.array([0.3, -0.2])
        score = lambda x, t: -c / SDE.marginal_std(t)  # noqa: E731
        mean = -2 * (a * float(sig(SDE.T)) - float(sig(EPS))) * np.asarray(c)
    elif frozen == "score":  # constant s: on VP κ_total = 2(a − 1)
        c = jnp.array([0.3, -0.2])
        score = lambda x, t: c  # noqa: E731
        mean = 2 * (a - 1) * np.asarray(c)
    else:  # one-point data at μ: the steps are exact posteriors, x_ε ~ N(λ_ε μ, σ_ε²)
        mu = jnp.array([0.5, -1.0])
        score = lambda x, t: -(x - SDE.marginal_mean(t, mu)) / SDE.marginal_std(t) ** 2  # noqa: E731
        mean, var = np.asarray(SDE.marginal_mean(EPS, mu)), float(sig(EPS)) ** 2
    return score, mean, np.sqrt(var)


@pytest.mark.parametrize(
    "frozen",
    [
        "data",
        pytest.param("noise", marks=pytest.mark.slow),
        pytest.param("score", marks=pytest.mark.slow),
    ],
)
def test_exponential_is_exact_when_the_frozen_quantity_is_constant(frozen):
    """2 steps and 50 steps both give the exact law (mean to 4 SE + 1e-4 relative, std to 4 SE)
    from x_T = 0 (for "data", from exact p_T samples of the one-point law)."""
    score, mean, std = _constant_case(frozen)
    n = 20_000
    if frozen == "data":
        target = diffsde.GaussianMixture([1.0], [[0.5, -1.0]], [1e-6])
        x_T = _exact_p_T(jr.key(0), n, target)
    else:
        x_T = jnp.zeros((n, DIM))
    for steps in (2, 50):
        sampler = diffsde.ExponentialIntegrator(steps=steps, frozen=FROZEN[frozen])
        x = np.asarray(diffsde.sample(sampler, SDE, score, x_T, key=jr.key(steps)).x, np.float64)
        se = std / np.sqrt(n)
        np.testing.assert_array_less(np.abs(x.mean(0) - mean), 4 * se + 1e-4 * np.abs(mean))
        np.testing.assert_array_less(np.abs(x.std(0) - std), 4 * std / np.sqrt(2 * n))


def test_exponential_score_quadrature_matches_vp_closed_form():
    """κ for frozen="score" by Gauss–Legendre equals 2(a − 1) on VP (to 1e-5 relative)."""
    sampler = diffsde.ExponentialIntegrator(steps=1, frozen=diffsde.FrozenScore())
    for t, s in [(1.0, 0.5), (0.3, 0.2), (1.0, EPS)]:
        a, kappa, _ = sampler.coefficients(SDE, jnp.asarray(t), jnp.asarray(s))
        np.testing.assert_allclose(kappa, 2 * (a - 1), rtol=1e-5)


@pytest.mark.slow
def test_exponential_against_euler_maruyama_with_few_steps():
    """Same steps, same exact x_T (n = 20000), sliced W2 to an exact sample of p_0.

    Measured (uniform grid in t on VP, this mixture, components of std 0.4/0.6):
        steps   Euler–Maruyama   exponential ("noise")   floor
          10        0.085             0.076              0.016
          20        0.036             0.042
          50        0.020             0.020
    Both are weakly first order; on this narrow-mode target neither wins uniformly (the
    Gaussian-data variance recursion predicts the same: the exponential step wins for data
    std > 1, loses below). Asserted: at most 1.3x Euler–Maruyama's W2 at 10 and 20 steps. On a
    wide target N(0, 2² I) the exponential integrator is clearly more accurate (predicted
    variance errors at 20 steps: Euler–Maruyama +0.16, exponential −0.02): asserted there.
    """
    n = 20_000
    x_T = _exact_p_T(jr.key(0), n)
    reference = MIXTURE.sample(key=jr.key(1), n=n)
    for steps in (10, 20):
        em = diffsde.sample(diffsde.EulerMaruyama(steps=steps), SDE, _score, x_T, key=jr.key(2))
        ei = diffsde.sample(
            diffsde.ExponentialIntegrator(steps=steps), SDE, _score, x_T, key=jr.key(2)
        )
        w_em, w_ei = sliced_w2(em.x, reference), sliced_w2(ei.x, reference)
        assert w_ei <= 1.3 * w_em, (steps, w_em, w_ei)
    wide = diffsde.GaussianMixture([1.0], [[0.0, 0.0]], [2.0])
    score = lambda x, t: wide.score(x, t, SDE)  # noqa: E731
    x_T = _exact_p_T(jr.key(3), n, wide)
    exact_var = float(wide.marginal(SDE, EPS)[1][0]) ** 2
    errors = {}
    for name, sampler in [
        ("em", diffsde.EulerMaruyama(steps=20)),
        ("exponential", diffsde.ExponentialIntegrator(steps=20)),
    ]:
        x = diffsde.sample(sampler, SDE, score, x_T, key=jr.key(4)).x
        errors[name] = abs(float(jnp.mean(jnp.var(x, axis=0))) - exact_var)
    assert errors["exponential"] < 0.5 * errors["em"], errors


# registry and spec -----------------------------------------------------------------------------


BUILT_IN_SAMPLERS = {
    "euler_maruyama",
    "reverse_sde_adaptive",
    "pf_ode",
    "pc",
    "exponential",
    "dpm_solver",
    "dpm_solver_pp",
    "unipc",
    "edm_heun",
    "ddim",
    "deis",
}
FIXED_STEP = BUILT_IN_SAMPLERS - {"reverse_sde_adaptive", "pf_ode"}


def test_registry_lists_the_built_in_samplers():
    """Every built-in sampler is registered with a docstring and ``eps``; every fixed-step one
    has ``steps`` and ``grid`` (pf_ode has them in its fixed controller)."""
    names = diffsde.get_registry().names("sampler")
    assert BUILT_IN_SAMPLERS <= set(names)
    for name in names:
        component = diffsde.get_registry().get("sampler", name)
        assert component.doc and "eps" in component.config.model_fields
    for name in FIXED_STEP:
        fields = diffsde.get_registry().get("sampler", name).config.model_fields
        assert {"steps", "grid"} <= set(fields), name


def test_pf_ode_spec_validates_and_prints_its_defaults():
    """The PF-ODE section is a solver × a step-size controller, both parts with their defaults;
    the resolved spec reads back to the same sampler.

    Mutation: making tsit5's default controller `fixed` fails the PID assertion."""
    setup = diffsde.validate_text(
        "sde: {type: vp}\ndata: {type: toy, name: moons}\nsampler: {type: pf_ode, solver: tsit5}\n"
    )
    config = setup.spec.sampler
    assert config.solver.type == "tsit5" and config.controller.type == "pid"
    assert (config.controller.rtol, config.controller.atol) == (1e-5, 1e-5)
    resolved = setup.resolved_yaml()
    assert "solver: tsit5" in resolved and "rtol: 1.0e-05" in resolved and "eps: 0.001" in resolved
    sampler = config.build(sde=setup.sde)
    assert sampler == diffsde.ProbabilityFlow(solver=diffsde.Tsit5(), controller=diffsde.PIDSteps())
    model = type(config)
    assert model.model_validate(config.model_dump()) == config
    euler = model.model_validate({"solver": "euler"})
    assert euler.controller.type == "fixed" and euler.controller.steps == 100


@pytest.mark.parametrize(
    "section, expected",
    [
        # the flat spelling of 0.1 still reads, as the controller it meant
        ("{solver: heun, steps: 20}", diffsde.FixedSteps(steps=20)),
        ("{solver: tsit5, rtol: 1.0e-4, atol: 1.0e-4}", diffsde.PIDSteps(rtol=1e-4, atol=1e-4)),
        # new combinations: an adaptive heun, a fixed grid for tsit5
        ("{solver: heun, controller: pid}", diffsde.PIDSteps()),
        ("{solver: tsit5, controller: {type: fixed, steps: 7}}", diffsde.FixedSteps(steps=7)),
        # a flat key updates a given controller (what `--set sampler.steps=20` does)
        ("{solver: heun, controller: pid, steps: 20}", diffsde.FixedSteps(steps=20)),
    ],
)
def test_pf_ode_controller_from_spec(section, expected):
    """Mutation: dropping the flat-key translation (spec_aliases) fails the first two cases."""
    head = "sde: {type: vp}\ndata: {type: toy, name: moons}\n"
    text = f"{head}sampler: {{type: pf_ode, {section[1:]}\n"
    setup = diffsde.validate_text(text)
    assert setup.spec.sampler.build(sde=setup.sde).controller == expected


def test_adaptive_heun_counts_its_evaluations():
    """Heun under PID: NFE = 2 × steps attempted, and the result matches a tight reference.

    Mutation: per_step = 1 for Heun fails the NFE count."""
    calls = []

    def score(x, t):
        io_callback(lambda: calls.append(1), None, ordered=True)
        return MIXTURE.score(x, t, SDE)

    x_T = _exact_p_T(jr.key(5), 64)
    sampler = diffsde.ProbabilityFlow(
        solver=diffsde.Heun(), controller=diffsde.PIDSteps(rtol=1e-4, atol=1e-4)
    )
    out = diffsde.sample(sampler, SDE, score, x_T, key=jr.key(0))
    jax.effects_barrier()
    assert int(out.nfe) == len(calls) and len(calls) % 2 == 0
    tight = diffsde.ProbabilityFlow(controller=diffsde.PIDSteps(rtol=1e-7, atol=1e-7))
    ref = diffsde.sample(tight, SDE, _score, x_T, key=jr.key(0)).x
    assert float(jnp.max(jnp.abs(out.x - ref))) < 5e-3


@pytest.mark.parametrize(
    "sampler, message",
    [
        ("{type: pf_ode, solver: euler, controller: pid}", "has no embedded error estimate"),
        ("{type: pf_ode, solver: euler, rtol: 1.0}", "rtol' does not apply to controller"),
        (
            "{type: pf_ode, solver: rk5}",
            "valid choices: euler, heun, rk4, tsit5, dopri5; did you mean 'rk4'",
        ),
        ("{type: pf_ode, eps: 2.0}", "must lie in (0, T)"),
    ],
)
def test_bad_pf_ode_combination_is_a_located_error(sampler, message):
    text = f"sde: {{type: vp}}\ndata: {{type: toy, name: moons}}\nsampler: {sampler}\n"
    with pytest.raises(diffsde.SpecError) as info:
        diffsde.validate_text(text, file="spec.yaml")
    assert "spec.yaml:3:" in str(info.value) and message in str(info.value), str(info.value)


def test_exponential_rejects_sdes_without_gaussian_kernel():
    text = "sde: {type: langevin}\ndata: {type: toy, name: moons}\n"
    sde = diffsde.validate_text(text).sde
    with pytest.raises(
        diffsde.SpecError, match=r"s\.yaml:3:17 sampler\.type: .*no Gaussian transition"
    ):
        diffsde.validate_text(text + "sampler: {type: exponential}\n", "s.yaml")
    config = diffsde.get_registry().get("sampler", "exponential").config()
    with pytest.raises(diffsde.SpecFieldError, match="no Gaussian transition kernel"):
        config.build(sde=sde)
    with pytest.raises(ValueError, match="no Gaussian transition kernel"):
        diffsde.ExponentialIntegrator(steps=2).sample_from(
            sde, lambda x, t: -x, jnp.zeros((3, DIM)), key=jr.key(0)
        )
