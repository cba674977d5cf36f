"""Forward marginals of the Gaussian-kernel SDEs against their closed-form kernels (MATH.md §2).

Euler–Maruyama (``diffrax.Euler`` on ``sde.forward_terms``, driven by a ``VirtualBrownianTree``)
from a fixed x₀; the mean and variance of X_t over N_PATHS paths at several t are compared with
``marginal_mean(t, x₀)`` and ``marginal_std(t)²``.

Batching. Every SDE here has a drift affine in x with a scalar slope, f(t) x + a(t), and
diffusion g(t) I, so its coordinates evolve independently: N_PATHS copies of the DIM-dimensional
SDE are exactly one SDE of dimension N_PATHS·DIM, built by the same class. We simulate that one
with a single Brownian tree: on the 2-core CPU it is ~2x faster than vmapping ``diffeqsolve``
over N_PATHS trees, for the same law.

Discretisation. Uniform power-of-two steps (``StepTo``) and tree tolerance h/2, so every grid
point is a node of the tree and the Brownian increments are exact. Euler–Maruyama on an affine
SDE is then exactly Gaussian, with moments given by the recursions
    m_{k+1} = m_k + h (f_k m_k + a_k),   v_{k+1} = (1 + h f_k)² v_k + h g_k²,
so its weak bias is known exactly (``_euler_moments``, in float64) instead of being bounded.
``test_euler_law_converges_to_kernel`` shows, deterministically and far below Monte Carlo
resolution, that this law tends to the kernel at order 1 (hence the kernel is the law of the SDE
with these coefficients); the Monte Carlo test then allows 4 SE + the exact bias at its step.
"""

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsde

N_PATHS = 4000
DIM = 2
X0 = (1.5, -1.0)
# the checks happen at these fractions of T (all on the power-of-two step grids)
FRACTIONS = (1 / 16, 1 / 4, 1 / 2, 1.0)
# Euler steps on [0, T] for the Monte Carlo test. Its exact weak bias is at most 0.3 (COU) to 4.9
# (sub-VP, at T/16 where σ_t² ≈ 2e-3 is tiny) standard errors; it is added to the tolerance, and
# the samples are also checked against the exact Euler law itself at 4 SE.
MC_STEPS = 256


@functools.cache  # each Affine build solves (and compiles) its kernel ODE: ~1.5 s
def _vp_affine(dim: int) -> diffsde.Affine:
    """The VP SDE (T = 1) written as f(t), g(t) expressions: an ``Affine`` with a solved kernel."""
    params = {"beta_min": 0.1, "beta_max": 20.0}
    beta = "(beta_min + t * (beta_max - beta_min))"
    f = diffsde.compile_expression(f"-0.5 * {beta}", ("t",), params)
    g = diffsde.compile_expression(f"sqrt({beta})", ("t",), params)
    return diffsde.Affine(dim, f, g, T=1.0)


def _plugin(name: str):
    def build(dim: int) -> diffsde.AbstractGaussianSDE:
        registry = diffsde.get_registry()
        if name not in registry.components["sde"]:
            pytest.skip(f"sde plugin component {name!r} is not registered")
        return registry.get("sde", name).config().build(dim=dim)

    return build


SDES = {
    "vp": diffsde.VP,
    "subvp": diffsde.SubVP,
    "ve": lambda dim: diffsde.VE(dim, sigma_min=0.01, sigma_max=5.0),
    "ou": diffsde.OU,
    "affine-vp": _vp_affine,
    "cou": _plugin("cou"),
    "cvp": _plugin("cvp"),
    "csubvp": _plugin("csubvp"),
}


def _sde(name):
    """N_PATHS independent copies of the DIM-dimensional SDE ``name`` (see the module docstring).

    Its drift, diffusion and kernel act coordinatewise, so the same object also serves for
    single DIM-vectors (one build per name: an Affine build compiles its kernel solve).
    """
    return SDES[name](N_PATHS * DIM)


@eqx.filter_jit
def _coefficients(sde, t, x0):
    """a(t), f(t) of the drift f(t) x + a(t) (slope per coordinate), and g(t), on a grid of t."""
    zeros, ones = jnp.zeros_like(x0), jnp.ones_like(x0)
    a = jax.vmap(lambda t: sde.drift(t, zeros))(t)
    f = jax.vmap(lambda t: sde.drift(t, ones))(t) - a
    return a, f, jax.vmap(sde.diffusion)(t)


def _euler_moments(sde, x0, grid):
    """Exact mean and variance (per coordinate) of Euler–Maruyama from x0 on ``grid``.

    Coefficients are evaluated by the SDE in float32; the recursion is summed in float64 (a
    float32 running sum of 8192 steps drifts by ~1e-4 from systematic rounding).
    """
    grid = np.asarray(grid, np.float64)
    a, f, g = (
        np.asarray(c, np.float64)
        for c in _coefficients(sde, jnp.asarray(grid[:-1], jnp.float32), x0)
    )
    g2 = g[:, None] ** 2
    h = np.diff(grid)[:, None]
    # P_k = Π_{j<k} (1 + h_j f_j); m_k = P_k (x0 + Σ_{j<k} h_j a_j / P_{j+1}),
    # v_k = P_k² Σ_{j<k} h_j g_j² / P_{j+1}²
    P = np.concatenate([np.ones((1, len(x0))), np.cumprod(1 + h * f, axis=0)])
    zero = np.zeros((1, len(x0)))
    m = P * (np.asarray(x0, np.float64) + np.concatenate([zero, np.cumsum(h * a / P[1:], 0)]))
    v = P**2 * np.concatenate([zero, np.cumsum(h * g2 / P[1:] ** 2, 0)])
    return m, v


@eqx.filter_jit
def _kernel(sde, x0, ts):
    return jax.vmap(lambda t: sde.marginal_mean(t, x0))(ts), jax.vmap(sde.marginal_std)(ts)


def _kernel_moments(sde, x0, ts):
    means, stds = _kernel(sde, x0, ts)
    return np.asarray(means, np.float64), np.asarray(stds, np.float64)[:, None]


@pytest.mark.parametrize("name", list(SDES))
def test_euler_law_converges_to_kernel(name):
    """The exact Euler–Maruyama law tends to the kernel at order 1 (deterministic)."""
    sde = _sde(name)
    x0 = jnp.asarray(X0)
    ts = jnp.asarray(FRACTIONS) * sde.T
    kernel_mean, kernel_std = _kernel_moments(sde, x0, ts)
    errors, moments = [], []
    for steps in (4096, 8192):
        m, v = _euler_moments(sde, x0, np.linspace(0.0, sde.T, steps + 1))
        idx = [round(frac * steps) for frac in FRACTIONS]
        moments.append((m[idx], v[idx]))
        errors.append(
            max(
                np.max(np.abs(m[idx] - kernel_mean) / kernel_std),
                np.max(np.abs(v[idx] - kernel_std**2) / kernel_std**2),
            )
        )
    # weak order 1: halving h halves the bias (measured log2 ratios 0.99–1.01; ±0.1 margin)
    order = np.log2(errors[0] / errors[1])
    assert abs(order - 1) <= 0.1, (name, errors, order)
    # Richardson extrapolation 2·(h/2) − (h) cancels the O(h) term; what is left is O(h²)
    # (measured ≤ 5e-6 relative, falling 4x per halving) plus float32 rounding of the
    # coefficients and the kernel (~1e-6). 5e-5 leaves 10x margin; a kernel error of 1e-4
    # relative, 200x below what 4000 Monte Carlo paths resolve, would fail here.
    (m1, v1), (m2, v2) = moments
    np.testing.assert_array_less(np.abs(2 * m2 - m1 - kernel_mean) / kernel_std, 5e-5)
    np.testing.assert_array_less(np.abs(2 * v2 - v1 - kernel_std**2) / kernel_std**2, 5e-5)


# The Monte Carlo run costs ~3–4 s per SDE on the 2-core CPU (mostly compilation). The plugin
# SDEs run it only with the slow tests: their kernels are already pinned by the deterministic
# test_euler_law_converges_to_kernel (to 5e-5 relative, against ~9% for 4 SE of 4000 paths), and
# the simulation path (AbstractSDE.forward_terms) is the same code for every SDE.
MC_SLOW = {"cou", "cvp", "csubvp"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in MC_SLOW else n for n in SDES]
)
def test_forward_marginals_match_kernel(name):
    sde = _sde(name)
    x0 = jnp.asarray(X0)
    T, steps, n = sde.T, MC_STEPS, N_PATHS
    grid = jnp.linspace(0.0, T, steps + 1)
    idx = [round(frac * steps) for frac in FRACTIONS]
    ts = grid[jnp.asarray(idx)]

    @jax.jit
    def simulate(key):
        brownian = diffrax.VirtualBrownianTree(0.0, T, tol=T / steps / 2, shape=(sde.dim,), key=key)
        sol = diffrax.diffeqsolve(
            sde.forward_terms(brownian),
            diffrax.Euler(),
            t0=0.0,
            t1=T,
            dt0=None,
            y0=jnp.tile(x0, n),
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.StepTo(grid),
            max_steps=steps,
        )
        return sol.ys.reshape(len(ts), n, DIM)

    xs = np.asarray(simulate(jr.key(0)), np.float64)
    kernel_mean, kernel_std = _kernel_moments(sde, x0, ts)
    em_mean, em_var = (moment[idx] for moment in _euler_moments(sde, x0, grid))
    for i, t in enumerate(np.asarray(ts)):
        x, std = xs[i], kernel_std[i]
        se_mean = std / np.sqrt(n)  # SE of a sample mean
        se_var = std**2 * np.sqrt(2 / (n - 1))  # SE of a Gaussian sample variance
        # the simulation is the Euler–Maruyama law it should be (4 SE: false alarm ~6e-5 per
        # check, and these statistics are Gaussian / scaled chi-squared)
        em_se_mean, em_se_var = np.sqrt(em_var[i] / n), em_var[i] * np.sqrt(2 / (n - 1))
        np.testing.assert_array_less(np.abs(x.mean(0) - em_mean[i]), 4 * em_se_mean)
        np.testing.assert_array_less(np.abs(x.var(0, ddof=1) - em_var[i]), 4 * em_se_var)
        # ... and the kernel, up to 4 SE plus that law's exact bias
        mean_bias = np.abs(em_mean[i] - kernel_mean[i])
        var_bias = np.abs(em_var[i] - std**2)
        np.testing.assert_array_less(
            np.abs(x.mean(0) - kernel_mean[i]), 4 * se_mean + mean_bias, err_msg=f"{name} t={t}"
        )
        np.testing.assert_array_less(
            np.abs(x.var(0, ddof=1) - std**2), 4 * se_var + var_bias, err_msg=f"{name} t={t}"
        )
        # independent coordinates: the SE of their sample covariance is σ²/√n
        cov = np.cov(x.T)[0, 1]
        assert abs(cov) < 4 * std[0] ** 2 / np.sqrt(n), (name, t, cov)

    # at T the simulated law is the prior up to the documented noise-approximation bias:
    # E X_T − prior mean = m_T(x0) − prior mean, Var X_T − prior var = σ_T² − prior var
    # (plus the Euler bias at T, as above)
    prior = sde.prior()
    x_T, std_T = xs[-1], kernel_std[-1]
    mean_bias, var_bias = np.abs(em_mean[-1] - kernel_mean[-1]), np.abs(em_var[-1] - std_T**2)
    prior_mean, prior_var = np.asarray(prior.mean[:DIM]), np.asarray(prior.std[:DIM]) ** 2
    allowed_mean = 4 * std_T / np.sqrt(n) + np.abs(kernel_mean[-1] - prior_mean) + mean_bias
    allowed_var = 4 * std_T**2 * np.sqrt(2 / (n - 1)) + np.abs(std_T**2 - prior_var) + var_bias
    np.testing.assert_array_less(np.abs(x_T.mean(0) - prior_mean), allowed_mean, err_msg=name)
    np.testing.assert_array_less(np.abs(x_T.var(0, ddof=1) - prior_var), allowed_var, err_msg=name)


def _table(name: str, sde, config: dict | None):
    """(λ_T, σ_T², prior mean, prior variance) from the MATH.md §2 table, in float64."""
    T = sde.T
    if name in ("vp", "subvp", "affine-vp", "cvp", "csubvp"):
        # (the Affine prior is N(0, σ_T² I), its solved kernel variance)
        lo, hi = (0.1, 20.0) if config is None else (config["beta_min"], config["beta_max"])
        B = lo * T + (hi - lo) * T / 2
        if name in ("cvp", "csubvp"):
            var = np.expm1(B) if name == "cvp" else np.expm1(B) ** 2
            return np.exp(B / 2), var, 0.0, var
        var = -np.expm1(-B) if name != "subvp" else np.expm1(-B) ** 2
        return np.exp(-B / 2), var, 0.0, var if name == "affine-vp" else 1.0
    if name == "ve":
        return 1.0, sde.sigma_max**2 - sde.sigma_min**2, 0.0, sde.sigma_max**2
    if name == "ou":
        theta, sigma = sde.theta, sde.sigma
        return (
            np.exp(-theta * T),
            -(sigma**2) / (2 * theta) * np.expm1(-2 * theta * T),
            0.0,
            sigma**2 / (2 * theta),
        )
    if name == "cou":
        theta, sigma, mu = config["theta"], config["sigma"], config["mu"]
        var = sigma**2 / (2 * theta) * np.expm1(2 * theta * T)
        return np.exp(theta * T), var, mu, var
    raise AssertionError(name)


@pytest.mark.parametrize("name", list(SDES))
def test_prior_noise_approximation_bias(name):
    """p_noise = N(c, s² I) vs p_T = N(c + λ_T (x0 − c), σ_T² I) for data with |x0 − c| ≤ R.

    The prior's variance is the table's, and the mean it ignores, λ_T (x0 − c), is bounded by
    the table's λ_T · R: 0.02 for VP/sub-VP/OU (R = 3), R itself for VE (λ_T = 1, against
    σ_T = σ_max), and more than R for the CDPM SDEs (λ_T = e^{θT} ≈ 2.7 for COU, e^{B(T)/2} ≈ 9.5
    for CVP/CsubVP: their documented noise-approximation bias).
    """
    sde = _sde(name)
    registry = diffsde.get_registry()
    config = (
        registry.get("sde", name).config().model_dump()
        if name in ("cou", "cvp", "csubvp")
        else None
    )
    lam_T, var_T, prior_centre, prior_var = _table(name, sde, config)
    prior = sde.prior()
    # float32: relative rounding ~6e-8 per operation, a few operations, and the Affine kernel is
    # an ODE solve at rtol 1e-7: 1e-5 relative covers all of it
    rtol = 1e-5
    np.testing.assert_allclose(float(sde.marginal_std(sde.T)) ** 2, var_T, rtol=rtol)
    prior_mean, prior_std = np.asarray(prior.mean[:DIM]), np.asarray(prior.std[:DIM])
    np.testing.assert_allclose(prior_std**2, prior_var, rtol=rtol)
    np.testing.assert_allclose(prior_mean, prior_centre, atol=1e-7)
    # the prior's std is σ_T up to the table's gap, relative: VP e^{−B(T)}/2 ≈ 2e-5, sub-VP
    # e^{−B(T)} ≈ 4e-5, VE σ_min²/(2σ_max²) = 2e-6, OU e^{−2θT}/2 ≈ 2e-5, none for the Affine
    # and the CDPM SDEs (their prior std is σ_T): below 1e-4
    gap = abs(float(prior.std[0]) / float(sde.marginal_std(sde.T)) - 1)
    assert gap <= 1e-4, (name, gap)

    R = 3.0  # data radius around the prior centre (a standardised data set)
    x0s = prior_centre + R * jnp.array([[1.0, 0.0], [0.0, -1.0], [0.6, 0.8], [-0.6, -0.8]])
    for x0 in x0s:
        bias = np.asarray(sde.marginal_mean(sde.T, x0)) - prior_mean
        # the ignored mean is exactly λ_T (x0 − c) ...
        np.testing.assert_allclose(
            bias, lam_T * (np.asarray(x0) - prior_centre), rtol=rtol, atol=1e-6
        )
        # ... so it stays within the table's bound λ_T R (float32 slack 1e-5 relative)
        assert np.linalg.norm(bias) <= lam_T * R * (1 + rtol), (name, bias)
