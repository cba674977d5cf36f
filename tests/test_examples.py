"""The example plugins of examples/ (the distribution diffsde-examples), each loaded through its
installed entry point, registered, and checked against theory; and `diffsde run` of the
example specs, which use several of them together.

Tolerances are stated per test; Monte-Carlo comparisons are in standard errors (SE) of the
estimate, with seeds fixed.
"""

import importlib.metadata
import math
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsde
import diffsde.cli
from diffsde import _plugins

EXAMPLES_DIR = pathlib.Path(__file__).resolve().parents[1] / "examples"
DISTRIBUTION = "diffsde-examples"
# entry point -> (kind, tag) it registers
EXAMPLES = {
    "example_sde": ("sde", "cosine_vp"),
    "example_sde_nokernel": ("sde", "quartic_langevin"),
    "example_sampler": ("sampler", "heun_by_hand"),
    "example_objective": ("objective", "noise_prediction"),
    "example_metric": ("metric", "mean_gap"),
    "example_dataset": ("dataset", "correlated_gaussian"),
    "example_model": ("model", "gaussian_score"),
    "example_method": ("method", "moment_fit"),
    "example_transform": ("transform", "clip_score"),
}


def _component(kind: str, tag: str):
    return diffsde.get_registry().get(kind, tag)


def _cls(kind: str, tag: str):
    return _component(kind, tag).cls


def _sde(tag: str, dim: int):
    """The SDE ``tag`` with its defaults, the contractive OU with a kernel mean
    μ + λ_t (x₀ − μ) that is not λ_t x₀ (μ = 0.7)."""
    settings = {"mu": 0.7} if tag == "cou" else {}
    return diffsde.get_registry().get("sde", tag).config(**settings).build(dim=dim)


# loading -------------------------------------------------------------------------------------


def test_every_entry_point_of_the_distribution_is_listed_here():
    """Mutation: adding an entry point to examples/pyproject.toml without an entry here (or
    removing one) makes this fail."""
    dist = importlib.metadata.distribution(DISTRIBUTION)
    names = {ep.name for ep in dist.entry_points if ep.group == _plugins.ENTRY_POINT_GROUP}
    assert names == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_loads_through_its_entry_point(name):
    """Each entry point imports, implements exactly its kind's hook, and its component is in the
    registry under its tag, attributed to that entry point and the distribution, with no error.

    Mutation: renaming the hook in a module (register_sde) or the tag makes this fail."""
    kind, tag = EXAMPLES[name]
    (ep,) = [e for e in importlib.metadata.entry_points(group="diffsde") if e.name == name]
    assert ep.dist.name == DISTRIBUTION
    module = ep.load()
    hook = _plugins.HOOKS[kind]
    assert callable(getattr(module, hook, None)), f"{ep.value} does not implement {hook}"
    registry = diffsde.get_registry()
    assert not [e for e in registry.errors if e.plugin == name], registry.errors
    component = registry.get(kind, tag)
    assert (component.plugin, component.distribution) == (name, DISTRIBUTION)
    assert component.cls.__module__ == ep.value


@pytest.fixture
def plugin_env(monkeypatch):
    """Change DIFFSDE_PLUGINS in a test; reload the default plugins afterwards."""
    yield monkeypatch
    monkeypatch.undo()
    diffsde.reload_plugins()


def test_diffsde_plugins_picks_single_examples(plugin_env):
    """DIFFSDE_PLUGINS=example_sde,example_dataset loads those two examples and no other.

    Mutation: renaming the entry point example_sde in examples/pyproject.toml makes this
    fail."""
    plugin_env.setenv("DIFFSDE_PLUGINS", "example_sde,example_dataset")
    diffsde.reload_plugins()
    loaded = {
        c.plugin
        for kind in _plugins.HOOKS
        for c in diffsde.get_registry().components[kind].values()
    }
    assert loaded & set(EXAMPLES) == {"example_sde", "example_dataset"}


# SDE with a kernel ---------------------------------------------------------------------------


def test_cosine_vp_kernel_solves_the_moment_odes_of_its_drift_and_diffusion():
    """For the linear SDE dX = f(t) X dt + g(t) dB the kernel's λ_t and v_t = σ_t² solve
    dλ/dt = f λ and dv/dt = 2 f v + g² from λ_0 = 1, v_0 = 0; with f = −½β (the drift's
    coefficient, read off drift(t, 1)) and g = diffusion(t). Compared by autodiff at 7 times,
    to 1e-4 relative; λ_T² + σ_T² = 1 (the prior N(0, I) is the law of X_T for N(0, I) data).

    Mutation: σ_t = 2 sin φ_t, or a drift −β x instead of −½β x, makes this fail."""
    sde = _cls("sde", "cosine_vp")(dim=1, angle=1.4, T=2.0)
    lam0, sigma0 = sde.kernel(0.0)
    assert float(lam0) == 1.0 and float(sigma0) == 0.0
    for t in np.linspace(0.05, 1.95, 7):
        t = jnp.float32(t)
        lam, sigma = sde.kernel(t)
        dlam = jax.grad(lambda s: sde.kernel(s)[0])(t)
        dvar = jax.grad(lambda s: sde.kernel(s)[1] ** 2)(t)
        f = sde.drift(t, jnp.ones(1))[0]
        g2 = sde.diffusion(t) ** 2
        np.testing.assert_allclose(dlam, f * lam, rtol=1e-4)
        np.testing.assert_allclose(dvar, 2 * f * sigma**2 + g2, rtol=1e-4)
    lam_T, sigma_T = sde.kernel(sde.T)
    np.testing.assert_allclose(lam_T**2 + sigma_T**2, 1.0, rtol=1e-6)


def test_cosine_vp_kernel_against_a_simulation():
    """The forward SDE simulated by Euler–Maruyama (2000 steps) from x₀ = 2: the mean and
    variance of 20 000 paths at t = T/2 and T are λ_t x₀ and σ_t² within 4 SE (the Euler bias,
    O(h), is below 0.1 SE here).

    Mutation: σ_t = 2 sin φ_t, or cos → cos² in λ_t, makes this fail."""
    sde = _cls("sde", "cosine_vp")(dim=1)
    n, steps = 20_000, 2000
    h = sde.T / steps
    x0 = 2.0

    def step(x, inputs):
        t, z = inputs
        x = x + h * jax.vmap(lambda y: sde.drift(t, y))(x) + jnp.sqrt(h) * sde.diffusion(t) * z
        return x, x

    ts = jnp.arange(steps) * h
    noise = jr.normal(jr.key(0), (steps, n, 1))
    _, path = jax.jit(lambda x: jax.lax.scan(step, x, (ts, noise)))(jnp.full((n, 1), x0))
    for i in (steps // 2 - 1, steps - 1):
        t = (i + 1) * h
        lam, sigma = sde.kernel(t)
        x = np.asarray(path[i, :, 0], np.float64)
        mean_se = x.std() / math.sqrt(n)
        var_se = x.var() * math.sqrt(2 / (n - 1))
        assert abs(x.mean() - float(lam) * x0) < 4 * mean_se, (t, x.mean(), float(lam) * x0)
        assert abs(x.var() - float(sigma) ** 2) < 4 * var_se, (t, x.var(), float(sigma) ** 2)


# SDE without a kernel ------------------------------------------------------------------------


def _quartic_moments(a: float) -> tuple[float, float]:
    """E[x²], E[x⁴] of p ∝ e^{−(x⁴/4 − a x²/2)} in 1-D, by the trapezoid rule on 200 001
    points of [−8, 8] (in float64, independently of the example's own table)."""
    y = np.linspace(-8, 8, 200_001)
    w = np.exp(-(y**4 / 4 - a * y**2 / 2))
    z = np.trapezoid(w, y)
    return np.trapezoid(y**2 * w, y) / z, np.trapezoid(y**4 * w, y) / z


def test_quartic_gibbs_prior_is_normalised_and_samples_its_density():
    """The prior's log-density integrates to 1 (quadrature on an independent grid, to 1e-5),
    its score is the autodiff gradient of its log-density, and 100 000 of its samples have
    E[x²] and E[x⁴] within 4 SE of the quadrature moments.

    Mutation: the table's density with +a x²/2, or samples drawn by interpolating the grid
    against the CDF the wrong way round, makes this fail."""
    a = 1.0
    prior = _cls("sde", "quartic_langevin")(dim=2, a=a).prior()
    y = np.linspace(-8, 8, 40_001)
    grid = jnp.stack(jnp.meshgrid(jnp.asarray(y[::40]), jnp.asarray(y[::40])), -1).reshape(-1, 2)
    density = np.exp(np.asarray(jax.vmap(prior.log_prob)(grid), np.float64)).reshape(1001, 1001)
    step = y[40] - y[0]
    assert abs(density.sum() * step**2 - 1.0) < 1e-5
    x = jnp.array([0.7, -1.3])
    np.testing.assert_allclose(prior.score(x), jax.grad(prior.log_prob)(x), rtol=1e-5)
    samples = np.asarray(prior.sample(key=jr.key(0), n=50_000), np.float64).ravel()
    m2, m4 = _quartic_moments(a)
    for power, exact in ((2, m2), (4, m4)):
        values = samples**power
        assert abs(values.mean() - exact) < 4 * values.std() / math.sqrt(values.size)


def _law_moments(law) -> tuple[float, float]:
    """E[x²], E[x⁴] of one coordinate of a separable law on R², by the trapezoid rule on its
    own log-density along the line (y, 0)."""
    y = np.linspace(-8, 8, 20_001)
    points = jnp.stack([jnp.asarray(y, jnp.float32), jnp.zeros(y.size)], -1)
    w = np.exp(np.asarray(jax.vmap(law.log_prob)(points), np.float64))
    z = np.trapezoid(w, y)
    return np.trapezoid(y**2 * w, y) / z, np.trapezoid(y**4 * w, y) / z


@pytest.mark.parametrize("a", [0.0, 1.0, 2.0])
def test_quartic_langevin_leaves_its_stationary_law_invariant(a):
    """Started in ``stationary_law()``, the forward SDE simulated by Euler–Maruyama
    (h = 1e-3, for t = 1: a relaxation time at a = 2, where the wells are at ±√2) keeps
    E[x²] and E[x⁴] of the declared law (by quadrature of its log-density) within 4 SE + 2 %
    (the Euler bias, O(h)).

    Mutation: the drift +∇U, the stationary law with 2a, or a diffusion of 1 instead of √2,
    makes this fail."""
    sde = _cls("sde", "quartic_langevin")(dim=2, a=a)
    n, steps, h = 20_000, 1000, 1e-3
    law = sde.stationary_law()
    x = law.sample(key=jr.key(1), n=n)

    def step(x, z):
        drift = jax.vmap(lambda y: sde.drift(0.0, y))(x)
        return x + h * drift + math.sqrt(h) * sde.diffusion(0.0) * z, None

    x, _ = jax.jit(lambda x: jax.lax.scan(step, x, jr.normal(jr.key(2), (steps, n, 2))))(x)
    samples = np.asarray(x, np.float64).ravel()
    m2, m4 = _law_moments(law)
    for power, exact in ((2, m2), (4, m4)):
        values = samples**power
        tolerance = 4 * values.std() / math.sqrt(values.size) + 0.02 * exact
        assert abs(values.mean() - exact) < tolerance, (power, values.mean(), exact)


# sampler -------------------------------------------------------------------------------------


def test_heun_by_hand_converges_at_its_declared_order():
    """On 1-D data N(μ, v) with its exact score, the PF-ODE maps x_T to
    x_ε = m_ε + (s_ε/s_T)(x_T − m_T), m_t = λ_t μ, s_t² = λ_t² v + σ_t² (a linear flow). The
    largest error of 64 points after 20, 40, 80, 160 steps (by ``with_steps``) falls with a
    fitted slope in log–log within 0.25 of the declared ``order`` 2, and NFE = 2·steps.

    Mutation: the Euler step x + h·k1 instead of the Heun average gives slope 1 and fails."""
    sampler_cls = _cls("sampler", "heun_by_hand")
    sde = _cls("sde", "cosine_vp")(dim=1)
    data = _cls("dataset", "correlated_gaussian")(mean=[1.5], covariance=[[0.25]])
    score = diffsde.exact_score(data, sde)
    eps = 1e-3
    x_T = jr.normal(jr.key(0), (64, 1)) * 1.5

    def spread(t):
        lam, sigma = sde.kernel(t)
        return lam, jnp.sqrt(lam**2 * 0.25 + sigma**2)

    (lam_e, s_e), (lam_T, s_T) = spread(eps), spread(sde.T)
    exact = lam_e * 1.5 + (s_e / s_T) * (x_T - lam_T * 1.5)
    base = sampler_cls(eps=eps)
    assert base.order == 2.0
    steps = [20, 40, 80, 160]
    errors = []
    for n in steps:
        sampler = base.with_steps(n)
        out = diffsde.sample(sampler, sde, score, x_T, key=jr.key(1))
        assert int(out.nfe) == 2 * n
        errors.append(float(jnp.max(jnp.abs(out.x - exact))))
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - base.order) < 0.25, (slope, errors)


def test_heun_by_hand_refuses_a_trajectory_request():
    """It records no trajectory, and says so rather than returning none.

    Mutation: ignoring save_ts makes this fail."""
    sde = _cls("sde", "cosine_vp")(dim=1)
    sampler = _cls("sampler", "heun_by_hand")(steps=4)
    with pytest.raises(ValueError, match="records no trajectory"):
        sampler.sample_from(sde, lambda x, t: -x, jnp.zeros((2, 1)), key=jr.key(0), save_ts=[0.5])


# objective -----------------------------------------------------------------------------------


def test_noise_prediction_at_the_exact_score_has_its_closed_form_value():
    """For data N(μ, Σ) the loss at the exact score is E_t [d − σ_t² tr C_t⁻¹],
    C_t = λ_t² Σ + σ_t² I (the DSM identity), t ~ U[ε, T]: computed from Σ's eigenvalues by
    the trapezoid rule in t, it matches the mean of 20 loss estimates of 4096 points within
    4 SE; the zero score has loss d (E|z|²).

    Mutation: σ_t s − z instead of σ_t s + z, or t drawn on [0, T/2], makes this fail."""
    sde = _cls("sde", "cosine_vp")(dim=2)
    data = _cls("dataset", "correlated_gaussian")()
    objective = _cls("objective", "noise_prediction")(sde=sde)
    score = diffsde.exact_score(data, sde)
    x0 = data.sample(key=jr.key(0), n=20 * 4096).reshape(20, 4096, 2)
    losses = np.array([float(objective.loss(score, x0[i], key=jr.key(i + 1))) for i in range(20)])
    eig = np.linalg.eigvalsh(np.asarray(data.covariance(), np.float64))
    t = np.linspace(objective.eps, sde.T, 20_001)
    phi = sde.angle * t / sde.T
    lam2, sig2 = np.cos(phi) ** 2, np.sin(phi) ** 2
    inner = 2 - sig2 * sum(1 / (lam2 * e + sig2) for e in eig)
    exact = np.trapezoid(inner, t) / (sde.T - objective.eps)
    se = losses.std(ddof=1) / math.sqrt(losses.size)
    assert abs(losses.mean() - exact) < 4 * se, (losses.mean(), exact, se)
    zero = float(objective.loss(lambda x, t: 0 * x, x0[0], key=jr.key(0)))
    assert abs(zero - 2.0) < 0.05


# metric --------------------------------------------------------------------------------------


def test_mean_gap_is_the_distance_between_means():
    """A reference shifted by v gives |v| exactly (to float32 rounding); the value is a Python
    float, its direction "min", and the same context gives the same value.

    Mutation: the sum of the coordinates' gaps instead of the norm makes this fail."""
    metric = _cls("metric", "mean_gap")()
    x = jr.normal(jr.key(0), (1000, 3))
    v = jnp.array([0.3, -0.4, 1.2])
    data = _cls("dataset", "correlated_gaussian")(
        mean=[0.0, 0.0, 0.0], covariance=np.eye(3).tolist()
    )
    ctx = diffsde.EvalContext(x, x + v, data, diffsde.VP(dim=3), None, jr.key(1))
    value = metric(ctx)["mean_gap"]
    assert isinstance(value, float) and abs(value - 1.3) < 1e-5
    assert metric(ctx)["mean_gap"] == value
    assert type(metric).directions == {"mean_gap": "min"}


# dataset -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sde_tag", ["cosine_vp", "vp", "ve", "cou"])
def test_correlated_gaussian_exact_score_is_the_gradient_of_its_log_density(sde_tag):
    """``score`` equals autodiff of ``marginal_log_prob`` at 5 random points and 4 times
    (to 1e-4 relative), under SDEs with λ_t x₀ means and the contractive OU's μ + λ(x₀ − μ);
    and the dataset implements ``diffsde.ExactScore`` and ``ExactMoments``.

    Mutation: a score with + instead of − makes this fail."""
    data = _cls("dataset", "correlated_gaussian")(
        mean=[1.0, -1.0, 0.5], covariance=[[1.0, 0.6, 0.0], [0.6, 0.5, 0.1], [0.0, 0.1, 0.3]]
    )
    sde = _sde(sde_tag, 3)
    assert isinstance(data, diffsde.ExactScore) and isinstance(data, diffsde.ExactMoments)
    assert data.knows_score(sde)
    xs = jr.normal(jr.key(0), (5, 3)) * 2
    for t in np.linspace(0.1, 0.9, 4) * sde.T:
        for x in xs:
            autodiff = jax.grad(lambda y: data.marginal_log_prob(y, t, sde))(x)
            np.testing.assert_allclose(data.score(x, t, sde), autodiff, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sde_tag", ["cosine_vp", "cou"])
def test_correlated_gaussian_marginal_against_kernel_draws(sde_tag):
    """x_t = m_t(x₀) + σ_t z of 200 000 data points x₀ has the mean m_t(μ) (within 4 SE) and
    covariance λ_t² Σ + σ_t² I (within 4 SE per entry) that the exact score is built from; at
    t = 0 the log-density is the N(μ, Σ) density by numpy's formula; data samples have mean μ
    and covariance Σ within 4 SE; the SDE without a kernel has no exact score.

    Mutation: λ_t Σ instead of λ_t² Σ in the marginal, samples z Lᵀ drawn as z L, or the
    mean λ_t μ instead of marginal_mean(t, μ) (under cou) makes this fail."""
    data = _cls("dataset", "correlated_gaussian")()
    sde = _sde(sde_tag, 2)
    n, t = 200_000, 0.6
    x0 = data.sample(key=jr.key(0), n=n)
    xt, _ = jax.vmap(lambda x, k: sde.sample_marginal(t, x, key=k))(x0, jr.split(jr.key(1), n))
    mean, cov = data.marginal(sde, t)
    for sample, (m, c) in ((x0, (data.mean(), data.covariance())), (xt, (mean, cov))):
        s = np.asarray(sample, np.float64)
        m, c = np.asarray(m, np.float64), np.asarray(c, np.float64)
        assert np.all(np.abs(s.mean(0) - m) < 4 * np.sqrt(np.diag(c) / n))
        centred = s - m
        products = centred[:, :, None] * centred[:, None, :]
        se = products.std(0) / math.sqrt(n)
        assert np.all(np.abs(products.mean(0) - c) < 4 * se), (products.mean(0), c)
    x = np.array([0.2, 0.4])
    sigma = np.asarray(data.covariance(), np.float64)
    d = x - np.asarray(data.mean(), np.float64)
    expected = -0.5 * (d @ np.linalg.solve(sigma, d) + np.log(np.linalg.det(2 * np.pi * sigma)))
    assert abs(float(data.marginal_log_prob(jnp.asarray(x), 0.0, sde)) - expected) < 1e-4
    assert diffsde.exact_score(data, _cls("sde", "quartic_langevin")(dim=2)) is None


def test_correlated_gaussian_refuses_a_bad_covariance():
    """Not positive definite, not symmetric, or of the wrong shape: one located spec error at
    data.covariance naming the fix.

    Mutation: dropping the Cholesky check lets the first validate."""
    for cov, message in (
        ("[[1, 2], [2, 1]]", "is not positive definite"),
        ("[[1, 0.5], [0.4, 1]]", "is not symmetric"),
        ("[[1]]", "give a 2×2 matrix"),
    ):
        data = f"{{type: correlated_gaussian, mean: [0, 0], covariance: {cov}}}"
        text = f"sde: {{type: vp}}\ndata: {data}\n"
        with pytest.raises(diffsde.SpecError, match=f"data.covariance: .*{message}"):
            diffsde.validate_text(text)


# model and training method -------------------------------------------------------------------


@pytest.mark.parametrize("sde_tag", ["cosine_vp", "cou"])
def test_gaussian_score_with_the_datas_parameters_is_its_exact_score(sde_tag):
    """The model with μ and L of the data equals the dataset's exact score at random points and
    times (to 1e-5), including under the contractive OU's shifted kernel mean; its trainable
    leaves are μ and L only (the SDE it holds is not trained).

    Mutation: λ_t μ instead of marginal_mean(t, μ) fails under cou."""
    data = _cls("dataset", "correlated_gaussian")()
    sde = _sde(sde_tag, 2)
    model = _cls("model", "gaussian_score")(sde, key=jr.key(0))
    model = eqx.tree_at(lambda m: (m.mu, m.cholesky), model, (data.mu, data.cholesky))
    for i, t in enumerate(np.linspace(0.05, 0.95, 5) * sde.T):
        x = jr.normal(jr.key(i), (2,))
        np.testing.assert_allclose(model(x, t), data.score(x, t, sde), rtol=1e-4, atol=1e-5)
    leaves = jax.tree.leaves(eqx.filter(model, diffsde.training.trainable(model)))
    assert [leaf.shape for leaf in leaves] == [(2,), (2, 2)]


def test_moment_fit_reports_the_gaussian_nll_and_fits_the_data():
    """At the data's own parameters the reported loss is the NLL E[½ zᵀz] + log|det L| =
    d/2 + ½ log det Σ within 4 SE (one batch of 8192 points); 300 steps of Adam from the
    model's initialisation fit μ within 0.05 and Σ within 0.05 per entry.

    Mutation: log|det L| with a factor 2, or ½ dropped from the quadratic term, makes this
    fail."""
    setup = diffsde.validate_text(
        "sde: {type: cosine_vp}\ndata: {type: correlated_gaussian}\nmodel: {type: gaussian_score}\n"
        "method: {type: moment_fit}\ntraining: {steps: 300, batch_size: 256, learning_rate: 0.05}\n"
    )
    data = setup.data
    model = setup.spec.model.build(sde=setup.sde, key=jr.key(0), prior=setup.prior)
    method = diffsde.spec.build_method(
        setup.spec, model, None, sde=setup.sde, data=data, prior=setup.prior
    )
    truth = (data.mu, data.cholesky)
    batch = data.sample(key=jr.key(1), n=8192)
    _, metrics = method.step(
        (truth, method.optimizer.init(truth)), batch, step=jnp.int32(0), key=jr.key(2)
    )
    z = jnp.linalg.solve(data.cholesky, (batch - data.mu).T)
    per_point = np.asarray(0.5 * jnp.sum(z**2, 0), np.float64)
    exact = 1.0 + 0.5 * math.log(np.linalg.det(np.asarray(data.covariance(), np.float64)))
    assert abs(float(metrics["loss"]) - exact) < 4 * per_point.std() / math.sqrt(8192)

    from diffsde.training import Trainer

    trainer = Trainer(method, data, jr.key(0), steps=300, batch_size=256, steps_per_dispatch=100)
    state = trainer.init(key=jr.key(1))
    while int(state.step) < trainer.steps:
        state, _ = trainer.run_chunk(state, trainer.chunk_length(state))
    fitted = trainer.sampling_model(state)
    assert jnp.abs(fitted.mu - data.mean()).max() < 0.05
    assert jnp.abs(fitted.covariance() - data.covariance()).max() < 0.05


# score transform -----------------------------------------------------------------------------


def test_clip_score_clips_the_norm_and_keeps_the_direction():
    """Above max_norm the clipped score has norm max_norm and the score's direction; below it
    the score is unchanged; the same under jit.

    Mutation: jnp.maximum instead of jnp.minimum makes this fail."""
    transform = _cls("transform", "clip_score")(max_norm=2.0)
    score = diffsde.apply_transforms(lambda x, t: 10 * x, [transform])
    x = jnp.array([0.3, -0.4])  # |10x| = 5
    out = jax.jit(score)(x, 0.5)
    np.testing.assert_allclose(jnp.linalg.norm(out), 2.0, rtol=1e-6)
    np.testing.assert_allclose(out / 2.0, 10 * x / 5.0, rtol=1e-6)
    small = jnp.array([0.03, -0.04])
    np.testing.assert_allclose(score(small, 0.5), 10 * small, rtol=1e-6)


# the example specs, run ----------------------------------------------------------------------


def _run(spec: str, tmp_path) -> diffsde.runs.RunRecord:
    runs = tmp_path / "runs"
    assert (
        diffsde.cli.main(["run", str(EXAMPLES_DIR / "specs" / spec), "--runs-dir", str(runs), "-q"])
        == 0
    )
    (record,) = diffsde.runs.list_runs(runs)
    assert record.status == "completed", record.message
    return record


def test_examples_spec_runs_five_examples_together(tmp_path):
    """examples/specs/examples.yaml: the cosine VP, the correlated Gaussian, the Gaussian score
    model trained by noise prediction for 100 steps, Heun by hand with clip_score. The run
    completes with NFE 40, the exact-score error (esm, from the dataset's ExactScore) below
    0.01, the samples' mean within 0.1 and covariance within 0.1 (Frobenius) of the data's exact
    moments, and mean_gap reported.

    Mutation: an objective that ignores z (E|σ s|²) trains the score to 0 and fails this."""
    record = _run("examples.yaml", tmp_path)
    assert record.nfe == {"heun_by_hand": 40}
    assert record.eval["esm"] < 0.01, record.eval
    assert record.eval["mean_error"] < 0.1 and record.eval["cov_error"] < 0.1, record.eval
    assert record.eval["mean_gap"] < 0.15, record.eval


def test_moment_fit_spec_runs_and_samples_the_fitted_gaussian(tmp_path):
    """examples/specs/moment_fit.yaml: the example method (no objective), 200 steps, then the
    built-in PF-ODE: esm below 0.005, mean and covariance within 0.08 of the data's."""
    record = _run("moment_fit.yaml", tmp_path)
    assert record.metrics["variance"].shape == (200,)
    assert record.eval["esm"] < 0.005, record.eval
    assert record.eval["mean_error"] < 0.08 and record.eval["cov_error"] < 0.08, record.eval


@pytest.mark.slow
def test_quartic_langevin_spec_runs(tmp_path):
    """examples/specs/quartic_langevin.yaml: the SDE without a kernel, trained by ssm on
    simulated paths and sampled by Heun by hand from its Gibbs prior: the run completes with
    finite metrics and no esm (the dataset knows no exact score without a kernel)."""
    record = _run("quartic_langevin.yaml", tmp_path)
    assert "esm" not in record.eval
    assert all(math.isfinite(v) for v in record.eval.values()), record.eval
