"""GaussianMixture's exact score and log-density in matrix-product form (issue 12, item 3).

The score of p_t = Σ_k w_k N(c_t + λ_t m_k, s_k(t)² I) is computed with ‖y − λm‖² expanded into
matrix products and, above ``COMPONENT_BLOCK`` components, a scan over blocks of components
with a running log-sum-exp. It is compared with the direct formula it replaced (kept below as
the reference: it builds the (components, dim) differences per point) and with the autodiff
gradient of ``marginal_log_prob``, at d = 2, 32, 64 and N = 1, 5, 1797 components (1797 runs
the blocked scan), float32, on points drawn exactly from p_t at small, middle and large t.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsde
import diffsde_cdpm
from diffsde import _data

RTOL = 1e-5
"""Relative error allowed, in the norm over the batch (‖a − b‖ / ‖b‖), float32."""

TIMES = (0.01, 0.1, 0.5, 1.0)


def direct_log_prob(mix, x, t, sde):
    """The formula replaced: log Σ_k w_k N(x; m_k(t), s_k(t)² I) from (k, dim) differences."""
    means, stds = mix.marginal(sde, t)
    sq = jnp.sum((x - means) ** 2, axis=-1)
    log_comp = -0.5 * sq / stds**2 - mix.dim * (jnp.log(stds) + 0.5 * jnp.log(2 * jnp.pi))
    return jax.scipy.special.logsumexp(mix.log_weights + log_comp)


def direct_score(mix, x, t, sde):
    """The formula replaced: Σ_k r_k (m_k(t) − x)/s_k(t)² from (k, dim) differences."""
    means, stds = mix.marginal(sde, t)
    sq = jnp.sum((x - means) ** 2, axis=-1)
    log_comp = -0.5 * sq / stds**2 - mix.dim * jnp.log(stds)
    resp = jax.nn.softmax(mix.log_weights + log_comp)
    return jnp.sum(resp[:, None] * (means - x) / stds[:, None] ** 2, axis=0)


def mixture(dim, k, key, std_range=(0.02, 0.5)):
    """k components, means N(0, I) scaled to radius ~2, random weights and stds."""
    mkey, skey, wkey = jr.split(key, 3)
    means = 2.0 * jr.normal(mkey, (k, dim)) / jnp.sqrt(dim)
    stds = jr.uniform(skey, (k,), minval=std_range[0], maxval=std_range[1])
    weights = jr.uniform(wkey, (k,), minval=0.5, maxval=1.5)
    return diffsde.GaussianMixture(weights, means, stds)


def exact_points(mix, sde, t, n, key):
    dkey, zkey = jr.split(key)
    x0 = mix.sample(key=dkey, n=n)
    mean = jax.vmap(lambda x: sde.marginal_mean(t, x))(x0)
    return mean + sde.marginal_std(t) * jr.normal(zkey, x0.shape)


def relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def check_against_direct(mix, sde, n=256, key=jr.key(3)):
    new = jax.jit(jax.vmap(lambda x, t: mix.score(x, t, sde), in_axes=(0, None)))
    old = jax.jit(jax.vmap(lambda x, t: direct_score(mix, x, t, sde), in_axes=(0, None)))
    grad = jax.jit(
        jax.vmap(jax.grad(lambda x, t: mix.marginal_log_prob(x, t, sde)), in_axes=(0, None))
    )
    new_lp = jax.jit(jax.vmap(lambda x, t: mix.marginal_log_prob(x, t, sde), in_axes=(0, None)))
    old_lp = jax.jit(jax.vmap(lambda x, t: direct_log_prob(mix, x, t, sde), in_axes=(0, None)))
    for i, t in enumerate(TIMES):
        x = exact_points(mix, sde, t, n, jr.fold_in(key, i))
        reference = old(x, t)
        assert relative(new(x, t), reference) <= RTOL, ("direct", t)
        assert relative(grad(x, t), reference) <= RTOL, ("autodiff", t)
        assert relative(new_lp(x, t), old_lp(x, t)) <= RTOL, ("log_prob", t)


@pytest.mark.parametrize("dim", [2, 32, 64])
@pytest.mark.parametrize("components", [1, 5, 1797])
def test_score_equals_direct_formula_and_autodiff(dim, components):
    """The score equals the direct formula and the gradient of marginal_log_prob, to 1e-5.

    Mutation: dropping the factor λ_t in front of ``weighted`` in ``_log_sum_exp`` (or the
    ``rescale`` of the running sums in the blocked scan, which only N = 1797 reaches) makes
    this fail; so does a sign flip of the cross term ``2 λ y·m``, and so does the expanded
    form in d = 2 (``DIRECT_DIM = 0``: 3.4e-5 at d = 2, N = 1797, t = 0.01).
    """
    mix = mixture(dim, components, jr.fold_in(jr.key(0), 100 * dim + components))
    check_against_direct(mix, diffsde.VP(dim))


def test_components_of_std_zero():
    """An empirical distribution (the 1797 digits, d = 64, std 0): p_t has components of std
    σ_t only; the score is finite and equals the direct formula for t > 0.

    Mutation: computing s_k(t)² as λ_t² s_k² (σ_t² dropped) makes this fail (division by 0);
    so does skipping the largest term's re-evaluation from its differences (``change = 0``:
    log p off by 1.3e-5 relative at t = 0.01, the expanded form's cancellation).
    """
    digits = diffsde.load_digits()
    rows = jnp.concatenate([digits.train, digits.test])
    mix = diffsde.GaussianMixture(1.0, rows, 0.0)
    assert mix.means.shape == (1797, 64)
    check_against_direct(mix, diffsde.VP(64), n=128)


def test_sde_with_an_offset():
    """A kernel mean μ + λ_t (x₀ − μ) (the cdpm plugin's COU, μ = 1.5): c_t = m_t(0) enters the
    score as it does in the direct formula.

    Mutation: leaving the offset c_t out of y = x − c_t makes this fail.
    """
    sde = diffsde_cdpm.COU(8, theta=0.5, mu=1.5)
    for components in (5, 1797):
        check_against_direct(mix := mixture(8, components, jr.key(components)), sde)
        del mix


def test_log_prob_at_time_zero_and_conditions():
    """log p_data (t = 0, no kernel) in the blocked form equals the direct formula; the
    conditional score and log-density (one component) are that component's.

    Mutation: adding 0.5 d log 2π instead of subtracting it in ``_log_sum_exp`` makes this
    fail.
    """
    mix = mixture(16, 1797, jr.key(5))
    x = mix.sample(key=jr.key(6), n=64)
    means, stds = mix.means, mix.stds
    new = jax.vmap(mix.log_prob)(x)
    sq = jnp.sum((x[:, None] - means) ** 2, axis=-1)
    log_comp = -0.5 * sq / stds**2 - 16 * (jnp.log(stds) + 0.5 * jnp.log(2 * jnp.pi))
    old = jax.scipy.special.logsumexp(mix.log_weights + log_comp, axis=-1)
    assert relative(new, old) <= RTOL
    sde = diffsde.VP(16)
    lam, sigma = sde.kernel(0.3)
    var = lam**2 * stds[7] ** 2 + sigma**2
    expected = (lam * means[7] - x[0]) / var
    np.testing.assert_allclose(mix.score(x[0], 0.3, sde, 7), expected, rtol=1e-6)
    expected_lp = -0.5 * jnp.sum((x[0] - lam * means[7]) ** 2) / var - 8 * jnp.log(2 * jnp.pi * var)
    np.testing.assert_allclose(mix.marginal_log_prob(x[0], 0.3, sde, 7), expected_lp, rtol=1e-6)


def test_blocked_and_unblocked_agree(monkeypatch):
    """The same 1797-component mixture with the scan (blocks of 512, the last padded) and in
    one block gives the same score and log-density.

    Mutation: padding the last block with log-weight 0 instead of −inf makes this fail.
    """
    mix = mixture(32, 1797, jr.key(8))
    sde = diffsde.VP(32)
    x = exact_points(mix, sde, 0.2, 128, jr.key(9))

    def both():
        score = jax.vmap(lambda x: mix.score(x, 0.2, sde))(x)
        return score, jax.vmap(lambda x: mix.marginal_log_prob(x, 0.2, sde))(x)

    blocked = both()
    monkeypatch.setattr(_data, "COMPONENT_BLOCK", 4096)
    single = both()
    for a, b in zip(blocked, single, strict=True):
        assert relative(a, b) <= RTOL
