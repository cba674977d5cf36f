"""Forward marginals of the Gaussian-kernel SDEs against their kernels (docs/math.md §2).

Euler–Maruyama (``diffrax.Euler`` on ``sde.forward_terms``) from a fixed x₀; the mean and
variance of X_t over N_PATHS paths at several t are compared with the kernel's
``marginal_mean(t, x₀)`` and ``marginal_std(t)²`` directly, at a tolerance stated in standard
errors of the Monte-Carlo estimates (``TOL_SE``).

Batching. Every SDE here has a drift affine in x with a scalar slope, f(t) x + a(t), and
diffusion g(t) I, so its coordinates evolve independently: N_PATHS copies of the DIM-dimensional
SDE are exactly one SDE of dimension N_PATHS·DIM, built by the same class, simulated in one
solve (fixed steps, so diffrax's ``UnsafeBrownianPath`` gives exact independent increments).

Discretisation. Euler–Maruyama on an affine SDE is exactly Gaussian, with moments given by the
recursions
    m_{k+1} = m_k + h (f_k m_k + a_k),   v_{k+1} = (1 + h f_k)² v_k + h g_k²,
computed from the SDE's own coefficients in float64 (``_euler_moments``). They give two things
that do not involve the kernel under test: the law the simulation must follow, and an estimate
of its weak bias at step h, law(2h) − law(h) (first order, so this is the bias up to O(h²);
``test_euler_law_converges_to_kernel`` shows that order). At MC_STEPS the bias is at most
~0.7 SE (sub-VP at T/16, where σ_t² ≈ 2e-3 is tiny); the Monte-Carlo test asserts it stays below
the BIAS_SE it budgets for, so the tolerance never silently widens.
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

N_PATHS = 10_000
DIM = 2
X0 = (1.5, -1.0)
# the checks happen at these fractions of T (all on the power-of-two step grids)
FRACTIONS = (1 / 16, 1 / 4, 1 / 2, 1.0)
# Euler steps on [0, T] for the Monte Carlo test (see the module docstring)
MC_STEPS = 4096
# Monte-Carlo tolerance in standard errors: 4 SE for the sampling noise (two-sided false-alarm
# rate 6e-5 per check: the statistics are Gaussian or scaled chi-squared, as the Euler law is
# exactly Gaussian) plus BIAS_SE for the Euler bias, which the test checks is smaller
BIAS_SE = 1.0
TOL_SE = 4.0 + BIAS_SE


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
    """The exact Euler–Maruyama law tends to the kernel at order 1 (deterministic).

    Mutation: a 10 % error in the VP kernel variance (order 0.02 instead of 1) or a 1 % error in
    VP's λ_t (order −0.005) makes ``[vp]`` fail.
    """
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


# The Monte Carlo run costs ~1.5–2 s per SDE on the 2-core CPU (compilation, 4096 steps of a
# 20 000-dimensional state, and the float64 Euler recursions), so every SDE runs it by default.


def _simulate(sde, x0, grid, ts, n, key):
    """X_{ts} of ``n`` Euler–Maruyama paths from x0 on ``grid``: (len(ts), n, DIM)."""
    steps = len(grid) - 1
    brownian = diffrax.UnsafeBrownianPath(shape=(sde.dim,), key=key)
    sol = diffrax.diffeqsolve(
        sde.forward_terms(brownian),
        diffrax.Euler(),
        t0=0.0,
        t1=sde.T,
        dt0=None,
        y0=jnp.tile(x0, n),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.StepTo(grid),
        max_steps=steps,
        adjoint=diffrax.ForwardMode(),  # UnsafeBrownianPath: no reverse-mode adjoint
    )
    return sol.ys.reshape(len(ts), n, DIM)


@pytest.mark.parametrize("name", list(SDES))
def test_forward_marginals_match_kernel(name):
    """Monte-Carlo mean and variance of X_t | X_0 = x₀ equal the kernel's λ_t, σ_t directly.

    Each of E X_t (per coordinate) and Var X_t (pooled over the DIM independent coordinates)
    must lie within TOL_SE = 5 standard errors of the kernel's m_t(x₀) and σ_t², the SE
    estimated from the samples themselves (sample std/√n; sample variance·√(2/(DIM(n − 1))),
    Gaussian), so nothing in the tolerance comes from the kernel under test. Of the 5, 1 SE is
    the budget for the Euler bias, estimated without the kernel (law(2h) − law(h)) and asserted
    below it. With 10 000 paths in 2 dimensions one SE of the variance is 1 % relative.

    Measured without mutation: mean errors ≤ 2.1 SE, variance errors ≤ 2.5 SE, bias estimates
    ≤ 0.7 SE over all eight SDEs and four times.

    Mutation: a 10 % error in the VP kernel variance (``VP.kernel`` returning
    √(1.1·(1 − e^{−B}))) makes ``[vp]`` fail at every t (measured 8.5–12.4 SE, against 5; the
    test before this rewrite passed it), and a 1 % error in VP's λ_t makes it fail at t = T/16
    (6.4 SE).
    """
    sde = _sde(name)
    x0 = jnp.asarray(X0)
    T, steps, n = sde.T, MC_STEPS, N_PATHS
    grid = jnp.linspace(0.0, T, steps + 1)
    idx = [round(frac * steps) for frac in FRACTIONS]
    ts = grid[jnp.asarray(idx)]
    xs = np.asarray(eqx.filter_jit(_simulate)(sde, x0, grid, ts, n, jr.key(0)), np.float64)

    kernel_mean, kernel_std = _kernel_moments(sde, x0, ts)
    em_mean, em_var = (moment[idx] for moment in _euler_moments(sde, x0, grid))
    # the law at step 2h on every other grid point, for the bias estimate law(2h) − law(h)
    coarse_mean, coarse_var = (
        moment[[i // 2 for i in idx]] for moment in _euler_moments(sde, x0, grid[::2])
    )
    for i, t in enumerate(np.asarray(ts)):
        x = xs[i]
        mean, var = x.mean(0), x.var(0, ddof=1)
        pooled = var.mean()  # the coordinates are independent with one variance
        se_mean = np.sqrt(var / n)
        se_var = pooled * np.sqrt(2 / (DIM * (n - 1)))
        where = f"{name} t={t:.4g}"

        # the Euler bias is within its budget (kernel-free estimate)
        mean_bias = np.abs(coarse_mean[i] - em_mean[i]) / se_mean
        var_bias = np.abs(coarse_var[i] - em_var[i]).mean() / se_var
        assert max(mean_bias.max(), var_bias) <= BIAS_SE, (where, mean_bias, var_bias)

        # the kernel, directly
        mean_err = np.abs(mean - kernel_mean[i]) / se_mean
        var_err = abs(pooled - kernel_std[i, 0] ** 2) / se_var
        assert mean_err.max() <= TOL_SE, (where, "mean error in SE", mean_err)
        assert var_err <= TOL_SE, (where, "variance error in SE", var_err, pooled)

        # the simulation is the Euler–Maruyama law of the SDE's own coefficients (4 SE): what
        # tells a broken simulation (forward_terms) from a broken kernel
        assert np.max(np.abs(mean - em_mean[i]) / se_mean) <= 4, (where, mean, em_mean[i])
        assert abs(pooled - em_var[i].mean()) / se_var <= 4, (where, pooled, em_var[i])

        # independent coordinates: the SE of their sample covariance is σ₁σ₂/√n
        cov = np.cov(x.T)[0, 1]
        assert abs(cov) <= 4 * np.sqrt(var[0] * var[1] / n), (where, cov)


def _config(name: str) -> dict | None:
    """The plugin SDE's default config (its parameters), None for the core SDEs."""
    if name not in ("cou", "cvp", "csubvp"):
        return None
    return diffsde.get_registry().get("sde", name).config().model_dump()


def _table(name: str, sde, config: dict | None, t: float):
    """(λ_t, σ_t², prior mean, prior variance) from the closed forms of docs/math.md §2, written
    here independently of the library, in float64."""
    T = sde.T
    if name in ("vp", "subvp", "affine-vp", "cvp", "csubvp"):
        # (the Affine prior is N(0, σ_T² I), its solved kernel variance)
        lo, hi = (0.1, 20.0) if config is None else (config["beta_min"], config["beta_max"])
        B = lo * t + (hi - lo) * t**2 / (2 * T)
        B_T = lo * T + (hi - lo) * T / 2
        if name in ("cvp", "csubvp"):
            power = 1 if name == "cvp" else 2
            var, var_T = np.expm1(B) ** power, np.expm1(B_T) ** power
            return np.exp(B / 2), var, 0.0, var_T
        var = -np.expm1(-B) if name != "subvp" else np.expm1(-B) ** 2
        return np.exp(-B / 2), var, 0.0, -np.expm1(-B_T) if name == "affine-vp" else 1.0
    if name == "ve":
        lo, hi = sde.sigma_min, sde.sigma_max
        return 1.0, lo**2 * ((hi / lo) ** (2 * t / T) - 1), 0.0, hi**2
    if name == "ou":
        theta, sigma = sde.theta, sde.sigma
        var = -(sigma**2) / (2 * theta) * np.expm1(-2 * theta * t)
        return np.exp(-theta * t), var, 0.0, sigma**2 / (2 * theta)
    if name == "cou":
        theta, sigma, mu = config["theta"], config["sigma"], config["mu"]
        var = sigma**2 / (2 * theta) * np.expm1(2 * theta * t)
        var_T = sigma**2 / (2 * theta) * np.expm1(2 * theta * T)
        return np.exp(theta * t), var, mu, var_T
    raise AssertionError(name)


# float32: relative rounding ~6e-8 per operation, a few operations, and the Affine kernel is an
# ODE solve at rtol 1e-7: 1e-5 relative covers all of it
RTOL = 1e-5


@pytest.mark.parametrize("name", list(SDES))
def test_kernel_matches_closed_form(name):
    """``kernel(t)`` = (λ_t, σ_t) of the closed forms at T/16 … T, and ``marginal_mean`` is
    c + λ_t (x₀ − c) (c = μ for COU, else 0).

    The two tests above compare the kernel with the SDE's own drift and diffusion, so a bug
    that moves all three consistently passes them; this one pins the kernel to formulas
    written independently.

    Mutation: a linear β schedule twice as steep in both ``LinearBeta.beta`` and
    ``LinearBeta.integral`` (drift, diffusion and kernel consistent) passes the two tests
    above and makes this fail; so does a 10 % error in VP's σ_t².
    """
    sde = _sde(name)
    config = _config(name)
    x0 = jnp.asarray(X0)
    for frac in FRACTIONS:
        t = frac * sde.T
        lam, var, centre, _ = _table(name, sde, config, t)
        kernel_lam, kernel_std = (float(v) for v in sde.kernel(t))
        np.testing.assert_allclose(kernel_lam, lam, rtol=RTOL, err_msg=f"{name} t={t}")
        np.testing.assert_allclose(kernel_std**2, var, rtol=RTOL, err_msg=f"{name} t={t}")
        np.testing.assert_allclose(
            np.asarray(sde.marginal_mean(t, x0)),
            centre + lam * (np.asarray(X0) - centre),
            rtol=RTOL,
            atol=1e-6,
            err_msg=f"{name} t={t}",
        )


@pytest.mark.parametrize("name", list(SDES))
def test_prior_noise_approximation_bias(name):
    """p_noise = N(c, s² I) vs p_T = N(c + λ_T (x0 − c), σ_T² I) for data with |x0 − c| ≤ R.

    The prior's variance is the table's, and the mean it ignores is exactly λ_T (x0 − c), so at
    most λ_T · R: 0.02 for VP/sub-VP/OU (R = 3), R itself for VE (λ_T = 1, against
    σ_T = σ_max), and more than R for the CDPM SDEs (λ_T = e^{θT} ≈ 2.7 for COU, e^{B(T)/2} ≈ 9.5
    for CVP/CsubVP: their documented noise-approximation bias).

    Mutation: VP's prior std 1.01 instead of 1 (which the three tests above pass) makes this
    fail.
    """
    sde = _sde(name)
    lam_T, var_T, prior_centre, prior_var = _table(name, sde, _config(name), sde.T)
    prior = sde.prior()
    np.testing.assert_allclose(float(sde.marginal_std(sde.T)) ** 2, var_T, rtol=RTOL)
    prior_mean, prior_std = np.asarray(prior.mean[:DIM]), np.asarray(prior.std[:DIM])
    np.testing.assert_allclose(prior_std**2, prior_var, rtol=RTOL)
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
        # the ignored mean is exactly λ_T (x0 − c)
        np.testing.assert_allclose(
            bias, lam_T * (np.asarray(x0) - prior_centre), rtol=RTOL, atol=1e-6
        )
