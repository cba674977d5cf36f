"""The reverse SDE and the probability-flow ODE return the data law (docs/math.md §1, §4, §7).

Both are driven by the EXACT score of a Gaussian mixture (``GaussianMixture.score``) and started
from EXACT samples of p_T (x₀ ~ p_data, x_T = m_T(x₀) + σ_T z), so what is left is Monte Carlo
error and the solver's own discretisation error; the sample mean and covariance at t = ε are
compared with the mixture's exact moments.

Tolerance of every moment: 4 SE (standard errors estimated from the samples themselves)
+ |moment(p_ε) − moment(p_0)| (exact, from the kernel; ≤ 1.3e-3 here)
+ the solver's weak error (stated where it is used).

Batching: the reverse SDE of N copies of a DIM-dimensional SDE is one SDE of dimension N·DIM
(affine drift with a scalar slope, diffusion g(t) I, and a score acting pointwise), simulated as
one diffrax solve, as in test_marginals.py. Its Brownian motion is an ``UnsafeBrownianPath``:
with fixed steps each increment is queried exactly once, so its law is exact, and on this 2-core
CPU it saves ~2.4 s of compile and tree descent per test against a ``VirtualBrownianTree``
(test_marginals.py exercises the tree).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsde

EPS = 1e-3
N = 4000
DIM = 2
MIXTURE = diffsde.GaussianMixture([0.3, 0.7], [[-1.5, 0.5], [1.0, -0.5]], [0.4, 0.6])
GAUSSIAN = diffsde.GaussianMixture([1.0], [[0.5, -1.0]], [0.7])


def _ve(dim):
    # σ_max = 5 exceeds the largest pairwise distance of the mixture's data (2.7 between the
    # means, ~4 with their spread), the usual rule for choosing σ_max
    return diffsde.VE(dim, sigma_min=0.01, sigma_max=5.0)


# name -> (SDE factory, target, Euler–Maruyama steps for the reverse SDE). The step counts keep
# the weak error below ~1 SE: the moments moved by ≤ 0.006 when rerun with 4x the steps on the
# same Brownian path (a VirtualBrownianTree, during development; OU has T = 5, hence twice the
# steps).
CASES = {
    "vp": (diffsde.VP, MIXTURE, 256),
    "subvp": (diffsde.SubVP, MIXTURE, 256),
    "ve": (_ve, MIXTURE, 256),
    "ou": (diffsde.OU, MIXTURE, 512),
    "vp-gaussian": (diffsde.VP, GAUSSIAN, 256),
}


def _moments(target, sde, t):
    """Exact mean and covariance of p_t = Σ w_k N(m_t(μ_k), (λ_t² s_k² + σ_t²) I)."""
    means, stds = (np.asarray(a, np.float64) for a in target.marginal(sde, t))
    w = np.exp(np.asarray(target.log_weights, np.float64))
    mean = w @ means
    second = np.einsum("k,ki,kj->ij", w, means, means) + np.sum(w * stds**2) * np.eye(DIM)
    return mean, second - np.outer(mean, mean)


@eqx.filter_jit
def _exact_p_T(target, sde, key, n):
    """Exact samples of p_T: data through the Gaussian kernel."""
    data_key, noise_key = jr.split(key)
    x0 = target.sample(key=data_key, n=n)
    sample = lambda x, k: sde.sample_marginal(sde.T, x, key=k)[0]  # noqa: E731
    return jax.vmap(sample)(x0, jr.split(noise_key, n))


def _check_returns_target(x, target, sde, solver_error):
    """Sample mean and covariance of ``x`` against p_0, with the tolerance of the docstring."""
    x = np.asarray(x, np.float64)
    n = len(x)
    mean, cov = x.mean(0), np.cov(x.T)
    centred = x - mean
    se_mean = x.std(0, ddof=1) / np.sqrt(n)
    products = np.einsum("ni,nj->nij", centred, centred)
    se_cov = products.std(0, ddof=1) / np.sqrt(n)
    mean_0, cov_0 = _moments(target, sde, 0.0)
    mean_eps, cov_eps = _moments(target, sde, EPS)
    np.testing.assert_array_less(
        np.abs(mean - mean_0), 4 * se_mean + np.abs(mean_eps - mean_0) + solver_error
    )
    np.testing.assert_array_less(
        np.abs(cov - cov_0), 4 * se_cov + np.abs(cov_eps - cov_0) + solver_error
    )


@pytest.mark.parametrize("name", list(CASES))
def test_reverse_sde_returns_target(name):
    factory, target, steps = CASES[name]
    sde = factory(DIM)
    big = factory(N * DIM)  # N independent copies
    U = sde.T - EPS  # integrate u = T − t from 0 to T − ε

    def score(x, t):  # the exact score of p_t, pointwise over the N copies
        points = x.reshape(N, DIM)
        return jax.vmap(lambda y: target.score(y, t, sde))(points).reshape(-1)

    grid = jnp.linspace(0.0, U, steps + 1)

    @jax.jit
    def sample(key):
        start_key, brownian_key = jr.split(key)
        x_T = _exact_p_T(target, sde, start_key, N)
        brownian = diffrax.UnsafeBrownianPath(shape=(big.dim,), key=brownian_key)
        sol = diffrax.diffeqsolve(
            big.reverse_terms(score, brownian),
            diffrax.Euler(),
            t0=0.0,
            t1=U,
            dt0=None,
            y0=x_T.reshape(-1),
            stepsize_controller=diffrax.StepTo(grid),
            max_steps=steps,
            adjoint=diffrax.ForwardMode(),  # what diffrax requires of an UnsafeBrownianPath
        )
        return sol.ys[-1].reshape(N, DIM)

    # Euler–Maruyama weak error: ≤ 0.006 measured against 4x the steps on the same Brownian path
    # (see CASES); it is O(h), so the full error is ≈ 4/3 of that; 0.01 covers it
    _check_returns_target(sample(jr.key(0)), target, sde, solver_error=0.01)


# the 1-component Gaussian case of the PF-ODE is test_probability_flow_carries_the_prior_error
@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "ou"])
def test_probability_flow_returns_target(name):
    factory, target, _ = CASES[name]
    sde = factory(DIM)
    term = sde.probability_flow_term(lambda x, t: target.score(x, t, sde))

    @jax.jit
    def sample(key):
        def solve(x_T):
            sol = diffrax.diffeqsolve(
                term,
                diffrax.Tsit5(),
                t0=sde.T,
                t1=EPS,
                dt0=-0.01 * sde.T,
                y0=x_T,
                stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-5),
                max_steps=4096,
            )
            return sol.ys[-1]

        return jax.vmap(solve)(_exact_p_T(target, sde, key, N))

    # solver error: the moments moved by ≤ 1e-4 between rtol 1e-5 and 1e-7; allow 1e-3
    _check_returns_target(sample(jr.key(0)), target, sde, solver_error=1e-3)


@pytest.mark.parametrize("name", ["vp", pytest.param("ve", marks=pytest.mark.slow)])
def test_probability_flow_convergence_order(name):
    """Fixed-step Euler and Heun on the PF-ODE with the exact score converge at orders 1 and 2.

    One fixed batch of exact p_T samples; the error at t = ε is the RMS distance to a Tsit5
    solution at rtol = atol = 1e-6 (float32: that reference is within 3e-6 RMS of Heun with 4096
    steps, 60x below the smallest Heun error used, ~2e-4 for VP and ~4e-4 for VE).
    """
    factory, target, _ = CASES[name]
    sde = factory(DIM)
    term = sde.probability_flow_term(lambda x, t: target.score(x, t, sde))
    x_T = _exact_p_T(target, sde, jr.key(3), 256)

    @jax.jit
    def reference(x_T):
        controller = diffrax.PIDController(rtol=1e-6, atol=1e-6)
        solve = lambda x: diffrax.diffeqsolve(  # noqa: E731
            term,
            diffrax.Tsit5(),
            sde.T,
            EPS,
            -0.01,
            x,
            stepsize_controller=controller,
            max_steps=100_000,
        ).ys[-1]
        return jax.vmap(solve)(x_T)

    def fixed_step(solver):
        @jax.jit
        def solve_all(x_T, steps):
            dt = (EPS - sde.T) / steps
            solve = lambda x: diffrax.diffeqsolve(  # noqa: E731
                term, solver, sde.T, EPS, dt, x, max_steps=1024
            ).ys[-1]
            return jax.vmap(solve)(x_T)

        return solve_all

    x_ref = reference(x_T)
    for solver, order, step_counts in [
        (diffrax.Euler(), 1, (32, 64, 128, 256)),
        (diffrax.Heun(), 2, (16, 32, 64, 128)),
    ]:
        solve_all = fixed_step(solver)
        errors = [
            float(jnp.sqrt(jnp.mean(jnp.sum((solve_all(x_T, s) - x_ref) ** 2, -1))))
            for s in step_counts
        ]
        h = (sde.T - EPS) / np.asarray(step_counts)
        slope = np.polyfit(np.log(h), np.log(errors), 1)[0]
        # measured slopes: Euler 0.99 (VP) / 0.98 (VE), Heun 1.94 / 2.08; ±0.3 as in diffrax's tests
        assert abs(slope - order) <= 0.3, (name, type(solver).__name__, errors, slope)


def test_probability_flow_carries_the_prior_error():
    """A 1-component Gaussian target: from exact p_T the PF-ODE returns it; from the noise
    prior it keeps the prior's error (docs/math.md §7).

    OU with T = 0.5 forgets little: p_T = N(e^{−1/2} μ, (e^{−1} s² + 1 − e^{−1}) I) while the
    prior is N(0, I) (the noise-approximation bias, here e^{−1/2}|μ| ≈ 0.68 in the mean).
    """
    target = GAUSSIAN
    sde = diffsde.OU(DIM, T=0.5)
    term = sde.probability_flow_term(lambda x, t: target.score(x, t, sde))

    @jax.jit
    def solve_all(x_T):
        def solve(x):
            sol = diffrax.diffeqsolve(
                term,
                diffrax.Tsit5(),
                t0=sde.T,
                t1=EPS,
                dt0=-0.01,
                y0=x,
                stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-5),
                max_steps=4096,
            )
            return sol.ys[-1]

        return jax.vmap(solve)(x_T)

    exact_key, prior_key = jr.split(jr.key(4))
    # solver error as in test_probability_flow_returns_target
    _check_returns_target(solve_all(_exact_p_T(target, sde, exact_key, N)), target, sde, 1e-3)
    x_prior = eqx.filter_jit(lambda prior, key: prior.sample(key=key, n=N))(sde.prior(), prior_key)
    x = np.asarray(solve_all(x_prior), np.float64)
    mean_0, cov_0 = _moments(target, sde, 0.0)
    # prior start: the mean and covariance are off by many standard errors (measured: 40 SE in
    # a mean, 8.6 SE in a variance); 5 SE is far outside sampling noise
    centred = x - x.mean(0)
    se_mean = x.std(0, ddof=1) / np.sqrt(N)
    se_cov = np.einsum("ni,nj->nij", centred, centred).std(0, ddof=1) / np.sqrt(N)
    z_mean = np.abs(x.mean(0) - mean_0) / se_mean
    z_cov = np.abs(np.cov(x.T) - cov_0) / se_cov
    assert z_mean.max() > 5 and z_cov.max() > 5, (z_mean, z_cov)
