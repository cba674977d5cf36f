"""Affine SDE kernels, priors, the Langevin drift and the mixture score against theory.

docs/math.md §2: an Affine SDE given only f(t), g(t) must reproduce the closed-form kernels; the
priors' densities and samples must match their definitions (by formula, by quadrature and by
Monte Carlo); the exact mixture score must be the gradient of the exact marginal log-density.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsde

# a dense grid on [1e-5, 1]: geometric near 0 (where σ_t is small), uniform elsewhere
DENSE_T = np.concatenate([np.geomspace(1e-5, 1e-2, 200, endpoint=False), np.linspace(1e-2, 1, 800)])

VP_PARAMS = {"beta_min": 0.1, "beta_max": 20.0}
BETA = "(beta_min + t * (beta_max - beta_min))"
B = "(beta_min * t + 0.5 * (beta_max - beta_min) * t**2)"
# (closed-form SDE, f(t), g(t), params) for T = 1
AFFINE_FORMS = {
    "vp": (diffsde.VP(1), f"-0.5 * {BETA}", f"sqrt({BETA})", VP_PARAMS),
    "subvp": (
        diffsde.SubVP(1),
        f"-0.5 * {BETA}",
        f"sqrt(-{BETA} * expm1(-2 * {B}))",
        VP_PARAMS,
    ),
    "ve": (
        diffsde.VE(1),
        "0.0 * t",
        "sigma_min * (sigma_max / sigma_min) ** t * sqrt(2 * log(sigma_max / sigma_min))",
        {"sigma_min": 0.01, "sigma_max": 50.0},
    ),
}


def _affine(name):
    _, f, g, params = AFFINE_FORMS[name]
    return diffsde.Affine(
        1,
        diffsde.compile_expression(f, ("t",), params),
        diffsde.compile_expression(g, ("t",), params),
        T=1.0,
    )


@pytest.mark.parametrize("name", list(AFFINE_FORMS))
def test_affine_reproduces_closed_form_kernel(name):
    closed = AFFINE_FORMS[name][0]
    affine = _affine(name)
    t = jnp.asarray(DENSE_T, jnp.float32)
    kernels = eqx.filter_jit(lambda sde, t: jax.vmap(sde.kernel)(t))
    lam, sigma = (np.asarray(a, np.float64) for a in kernels(affine, t))
    lam_ref, sigma_ref = (np.asarray(a, np.float64) for a in kernels(closed, t))
    if name == "ve":
        np.testing.assert_array_equal(lam, 1.0)  # f = 0: log λ stays exactly 0
        # σ_t runs from 1.3e-4 to 50: relative. The kernel ODE is solved at rtol 1e-7 and the
        # closed form is float32 (spacing at σ = 50 is 3.8e-6, i.e. 7.6e-8 relative); the
        # comparison of two float32 results with a few roundings each needs ~1e-6, so 1e-5
        # leaves room for the solver and its interpolant
        np.testing.assert_allclose(sigma, sigma_ref, rtol=1e-5)
    else:
        # λ_t, σ_t ∈ [0, 1]: absolute 1e-5 (float32 spacing near 1 is 6e-8; ODE rtol 1e-7)
        np.testing.assert_allclose(lam, lam_ref, rtol=0, atol=1e-5)
        np.testing.assert_allclose(sigma, sigma_ref, rtol=0, atol=1e-5)
    # the prior is N(0, σ_T² I): the kernel's own variance at T
    np.testing.assert_allclose(float(affine.prior().std[0]), sigma_ref[-1], rtol=1e-5)


def test_gaussian_prior_log_prob_is_the_normal_density():
    mean = np.array([0.5, -1.0, 2.0])
    std = np.array([0.3, 1.0, 2.5])
    prior = diffsde.GaussianPrior(3, mean, std)
    xs = np.array([[0.0, 0.0, 0.0], [0.5, -1.0, 2.0], [1.2, 3.0, -4.0], [-0.7, 0.1, 9.0]])
    for x in xs:
        z = (x - mean) / std
        expected = -0.5 * np.sum(z**2) - np.sum(np.log(std)) - 1.5 * np.log(2 * np.pi)
        # float32 evaluation of terms up to |z|²/2 ≈ 40: relative 1e-6 plus 1e-5 absolute
        got = float(prior.log_prob(jnp.asarray(x, jnp.float32)))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(prior.score(jnp.asarray(x, jnp.float32))), -z / std, rtol=1e-6, atol=1e-5
        )
    # scalar std broadcasts
    iso = diffsde.GaussianPrior(2, 0.0, 2.0)
    expected = -0.5 * (1.0 + 4.0) / 4.0 - 2 * np.log(2.0) - np.log(2 * np.pi)
    np.testing.assert_allclose(float(iso.log_prob(jnp.array([1.0, 2.0]))), expected, rtol=1e-6)


# GibbsPrior.sample(n) draws its resampling indices with jr.categorical(shape=(n,)) over 16 n
# logits, which materialises n × 16 n Gumbel variates: O(n²) time and memory (n = 4000: 256M
# draws, ~14 s on this CPU). 1000 samples keep the tests quick; the 4 SE bands widen to match.
GIBBS_SAMPLES = 1000


def _sample(prior, key, n):
    return jax.jit(lambda key: prior.sample(key=key, n=n))(key)


def test_gibbs_prior_quadratic_potential_is_standard_normal():
    dim = 2
    potential = diffsde.compile_expression("0.5 * sum(x**2)", ("x",))
    prior = diffsde.GibbsPrior(dim, potential)
    # log Z = log ∫ e^{−|x|²/2} = (d/2) log 2π. The importance-sampling estimate from M = 2^18
    # draws of the N(0, s² I) proposal (s = 3) has relative variance (ρ^d − 1)/M with
    # ρ = ∫ p²/q = s²/√(2s² − 1), so SE(log Ẑ) ≈ √((ρ^d − 1)/M) ≈ 3.8e-3; allow 4 SE
    s, M = 3.0, 2**18
    se = np.sqrt(((s**2 / np.sqrt(2 * s**2 - 1)) ** dim - 1) / M)
    assert abs(float(prior.log_normaliser) - 0.5 * dim * np.log(2 * np.pi)) <= 4 * se
    n = GIBBS_SAMPLES
    x = np.asarray(_sample(prior, jr.key(0), n), np.float64)
    assert x.shape == (n, dim)
    # independent chains after 200 MALA steps (10 units of Langevin time, correlation ~e^{−10}):
    # SE of the mean 1/√n, of the variance √(2/(n−1)); 4 SE
    np.testing.assert_array_less(np.abs(x.mean(0)), 4 / np.sqrt(n))
    np.testing.assert_array_less(np.abs(x.var(0, ddof=1) - 1), 4 * np.sqrt(2 / (n - 1)))


def test_gibbs_prior_double_well_matches_quadrature():
    potential = diffsde.compile_expression("sum((x**2 - 1)**2)", ("x",))
    prior = diffsde.GibbsPrior(1, potential)
    # quadrature of e^{−U} on [−4, 4] (the density there is ≤ e^{−225} at the ends), float64
    grid = np.linspace(-4.0, 4.0, 16001)
    density = np.exp(-((grid**2 - 1) ** 2))
    Z = np.trapezoid(density, grid)
    p = density / Z
    ex2 = np.trapezoid(grid**2 * p, grid)
    ex4 = np.trapezoid(grid**4 * p, grid)

    # exp(log_prob) integrates to 1: only the IS estimate of log Z can be off (SE 2.7e-3 here:
    # ρ = ∫ p²/q = 2.86 for the N(0, 9) proposal, SE = √((ρ − 1)/2^18); the trapezoid rule is
    # exact to ~1e-12 for this smooth, decaying integrand); 1e-2 is ~4 SE
    log_p = jax.vmap(prior.log_prob)(jnp.asarray(grid[:, None], jnp.float32))
    assert abs(np.trapezoid(np.exp(np.asarray(log_p, np.float64)), grid) - 1) <= 1e-2

    n = GIBBS_SAMPLES
    x = np.asarray(_sample(prior, jr.key(1), n), np.float64)[:, 0]
    # moments: 4 SE (E x = 0 by symmetry, SE √(E x²/n); E x² with SE √(Var x²/n)). The chains
    # are close to independent: over 80 seeds the z-score of E x² had mean −0.09 and std 1.12

    assert abs(x.mean()) <= 4 * np.sqrt(ex2 / n)
    assert abs(np.mean(x**2) - ex2) <= 4 * np.sqrt((ex4 - ex2**2) / n)
    # mass in each well: P(x > 0) = 1/2, SE 1/(2√n)
    assert abs(np.mean(x > 0) - 0.5) <= 4 * 0.5 / np.sqrt(n)
    # histogram: each bin's frequency within 4 binomial SE of its quadrature probability
    edges = np.linspace(-2.0, 2.0, 11)
    freq = np.histogram(x, bins=edges)[0] / n
    cdf = np.concatenate([[0.0], np.cumsum((p[1:] + p[:-1]) / 2 * np.diff(grid))])
    prob = np.diff(np.interp(edges, grid, cdf))
    np.testing.assert_array_less(np.abs(freq - prob), 4 * np.sqrt(prob * (1 - prob) / n))


def test_langevin_drift_is_minus_grad_potential():
    dim = 3
    U = diffsde.compile_expression("sum((x**2 - 1)**2) + 0.5 * x[0] * x[1]", ("x",))
    sde = diffsde.Langevin(dim, U)
    for x in np.array([[0.3, -1.2, 2.0], [1.0, 1.0, -1.0], [-0.5, 0.0, 0.7]]):
        grad = 4 * x * (x**2 - 1) + 0.5 * np.array([x[1], x[0], 0.0])
        # float32 evaluation of terms up to |4x³| ≈ 32: relative 1e-6 plus 1e-5 absolute
        np.testing.assert_allclose(
            np.asarray(sde.drift(0.3, jnp.asarray(x, jnp.float32))), -grad, rtol=1e-6, atol=1e-5
        )
    np.testing.assert_allclose(float(sde.diffusion(0.0)), np.sqrt(2.0), rtol=1e-7)
    assert isinstance(sde.prior(), diffsde.GibbsPrior)


MIXTURE = diffsde.GaussianMixture(
    [0.2, 0.5, 0.3], [[-1.0, 0.5], [1.5, 0.0], [0.0, -2.0]], [0.3, 0.5, 0.8]
)
POINTS = jnp.array([[0.0, 0.0], [-1.1, 0.4], [2.0, 1.0], [0.3, -2.5], [3.0, -3.0]])


@pytest.mark.parametrize(
    "sde",
    [diffsde.VP(2), diffsde.SubVP(2), diffsde.VE(2), diffsde.OU(2)],
    ids=["vp", "subvp", "ve", "ou"],
)
def test_mixture_score_is_grad_of_marginal_log_prob(sde):
    log_p = lambda x, t, sde: MIXTURE.marginal_log_prob(x, t, sde)  # noqa: E731
    score_fn = lambda x, t, sde: MIXTURE.score(x, t, sde)  # noqa: E731
    grad = eqx.filter_jit(jax.vmap(jax.grad(log_p), in_axes=(0, None, None)))
    score = eqx.filter_jit(jax.vmap(score_fn, in_axes=(0, None, None)))
    for t in np.array([1e-3, 0.05, 0.3, 1.0]) * sde.T:
        # two float32 evaluations of the same posterior-weighted sum, |score| ≤ 4.9 here:
        # 1e-5 absolute plus 1e-5 relative (~20 float32 ulps)
        np.testing.assert_allclose(
            np.asarray(score(POINTS, t, sde)),
            np.asarray(grad(POINTS, t, sde)),
            rtol=1e-5,
            atol=1e-5,
            err_msg=f"t={t}",
        )


@pytest.mark.parametrize("sde", [diffsde.VP(2), diffsde.VE(2)], ids=["vp", "ve"])
def test_mixture_score_at_small_t_is_data_score(sde):
    data_score = eqx.filter_jit(jax.vmap(jax.grad(lambda x: MIXTURE.log_prob(x))))(POINTS)
    score_fn = lambda x, sde: MIXTURE.score(x, 1e-5, sde)  # noqa: E731
    score = eqx.filter_jit(jax.vmap(score_fn, in_axes=(0, None)))(POINTS, sde)
    # at t = 1e-5 the component means shrink by 1 − λ_t ≤ B(t)/2 ≈ 5e-7 (VP; 0 for VE) and the
    # variances grow by σ_t² ≈ 1e-6 (VP; 1.7e-8 for VE) against s_k² ≥ 0.09: a relative change
    # ≤ 1.1e-5 of scores ≤ 4.7 plus |μ| (1 − λ_t)/s² ≤ 1e-5, i.e. ≤ 7e-5 in all (measured
    # 2.7e-5 for VP, 6e-7 for VE); 2e-4
    np.testing.assert_allclose(np.asarray(score), np.asarray(data_score), rtol=0, atol=2e-4)
