"""Score models and score-matching objectives, checked against theory (docs/math.md §3)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import diffsde

SDE = diffsde.VP(2)
MIXTURE = diffsde.GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.5]], [0.3, 0.5])


WEIGHTING = {
    "sigma2": diffsde.Sigma2Weighting(),
    "g2": diffsde.G2Weighting(),
    "uniform": diffsde.UniformWeighting(),
}


def exact_score(x, t):
    return MIXTURE.score(x, t, SDE)


def scaled_score(a):
    """s_a(x, t) = a ∇ log p_t(x): the exact score at a = 1."""
    return lambda x, t: a * exact_score(x, t)


def _mc(estimates):
    """Mean and standard error of independent estimates."""
    return jnp.mean(estimates), jnp.std(estimates) / jnp.sqrt(estimates.shape[0])


REPEATS, BATCH = 100, 64
# independent data batches, drawn once: the tests jit only the objectives
X0 = MIXTURE.sample(key=jr.key(100), n=REPEATS * BATCH).reshape(REPEATS, BATCH, 2)


def _repeat(fn, key):
    """fn(x0, key) on each of the ``REPEATS`` data batches, with independent keys."""
    return jax.jit(jax.vmap(fn))(X0, jr.split(key, REPEATS))


def test_dsm_gradient_matches_esm_gradient_in_expectation():
    weighting = "sigma2"  # g2 is covered by the importance-sampling test
    dsm = diffsde.DenoisingScoreMatching(SDE, weighting=WEIGHTING[weighting])
    esm = diffsde.ExplicitScoreMatching(SDE, MIXTURE, weighting=WEIGHTING[weighting])

    def estimates(x0, lkey):
        # the same key: the same t and x_t in both, so the difference has a small variance
        dsm_loss, g_dsm = jax.value_and_grad(lambda a: dsm.loss(scaled_score(a), x0, key=lkey))(0.8)
        g_esm = jax.grad(lambda a: esm.loss(scaled_score(a), x0, key=lkey))(0.8)
        others = [dsm.loss(scaled_score(a), x0, key=lkey) for a in (1.0, 1.2)]
        losses = jnp.stack([others[0], dsm_loss, others[1]])
        return g_dsm, g_esm, losses

    g_dsm, g_esm, losses = _repeat(estimates, jr.key(0))
    diff, se = _mc(g_dsm - g_esm)
    mean_esm, se_esm = _mc(g_esm)
    # DSM − ESM is θ-independent, so d/da agree in expectation: within 4 standard errors
    assert abs(diff) < 4 * se, (diff, se)
    # and the gradient is informative: at a = 0.8 < 1 it points towards a = 1 (negative)
    assert mean_esm < -10 * se_esm, (mean_esm, se_esm)
    # the DSM loss is lowest at the exact score (a = 1), by more than 4 standard errors
    for perturbed in (1, 2):
        gap, se = _mc(losses[:, perturbed] - losses[:, 0])
        assert gap > 4 * se, (perturbed, gap, se)


@pytest.mark.parametrize(
    "sde, weighting, eps",
    [
        # with λ = g², the uniform estimator's variance grows like 1/eps (g²|∇log p(x_t|x_0)|²
        # ~ 1/t): eps = 1e-2 keeps its standard error honest with 6400 samples
        (SDE, "g2", 1e-2),
        (diffsde.VE(2, sigma_max=5.0), "sigma2", 1e-3),
    ],
)
def test_importance_time_sampling_estimates_the_same_loss(sde, weighting, eps):
    uniform = diffsde.DenoisingScoreMatching(sde, weighting=WEIGHTING[weighting], eps=eps)
    importance = diffsde.DenoisingScoreMatching(
        sde, weighting=WEIGHTING[weighting], time_sampling=diffsde.ImportanceTimes(), eps=eps
    )
    model = lambda x, t: 0.8 * MIXTURE.score(x, t, sde)  # noqa: E731

    def losses(x0, lkey):
        return uniform.loss(model, x0, key=lkey), importance.loss(model, x0, key=lkey)

    lu, li = _repeat(losses, jr.key(2))
    (mu, su), (mi, si) = _mc(lu), _mc(li)
    assert abs(mu - mi) < 4 * jnp.hypot(su, si), (mu, su, mi, si)


def test_importance_times_follow_one_over_sigma_squared():
    sde = diffsde.VE(1, sigma_max=5.0)
    objective = diffsde.DenoisingScoreMatching(
        sde, time_sampling=diffsde.ImportanceTimes(), eps=1e-3
    )
    n = 20_000
    t, _ = jax.jit(lambda key: objective.sample_times(n, key=key))(jr.key(3))
    t = np.asarray(t)
    assert np.all((t >= 1e-3) & (t <= sde.T))
    # the CDF of π ∝ 1/σ_t², by the trapezoid rule on a fine geometric grid
    fine = np.geomspace(1e-3, sde.T, 20_000)
    density = 1 / np.asarray(jax.jit(jax.vmap(sde.marginal_std))(fine), np.float64) ** 2
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(fine))])
    cdf /= cdf[-1]
    for tau in (0.003, 0.03, 0.3):
        expected = np.interp(tau, fine, cdf)
        se = np.sqrt(expected * (1 - expected) / n)
        # 4 standard errors, plus 0.01 for the trapezoid rule on the 1024-point uniform grid
        assert abs(np.mean(t < tau) - expected) < 4 * se + 0.01, (tau, expected)


OUTPUT = {
    "score": diffsde.ScoreOutput(),
    "noise": diffsde.NoiseOutput(),
    "shortcut": diffsde.ShortcutOutput(),
}


def test_mlp_score_shapes_under_jit_and_vmap_for_each_parameterisation():
    choices = ("score", "noise", "shortcut")

    @jax.jit
    def outputs(key, x, t):
        # the same key: the same weights, read three ways
        models = {
            p: diffsde.MLPScore(
                SDE, width=16, depth=2, n_frequencies=4, parameterisation=OUTPUT[p], key=key
            )
            for p in choices
        }
        out = {p: jax.vmap(m)(x, t) for p, m in models.items()}
        mlp, embed = models["score"].mlp, models["score"].embed_time
        net = jax.vmap(lambda x, t: mlp(jnp.concatenate([x, embed(t)])))(x, t)
        return out, net

    x = jr.normal(jr.key(5), (7, 2))
    t = jnp.linspace(0.1, 1.0, 7)
    out, net = outputs(jr.key(4), x, t)
    sigma = jax.vmap(SDE.marginal_std)(t)[:, None]
    expected = {"score": net, "noise": -net / sigma, "shortcut": -x / sigma**2 + net}
    for p in choices:
        assert out[p].shape == (7, 2) and out[p].dtype == jnp.float32
        assert jnp.allclose(out[p], expected[p], rtol=1e-5, atol=1e-5), p
    # the time-embedding frequencies are static fields, not parameters an optimiser could move
    model = diffsde.MLPScore(
        SDE,
        width=4,
        depth=1,
        n_frequencies=3,
        parameterisation=diffsde.ScoreOutput(),
        key=jr.key(0),
    )
    assert isinstance(model.frequencies, tuple) and len(model.frequencies) == 3


def test_mlp_rejects_kernel_parameterisations_without_a_gaussian_kernel():
    compile_ = diffsde.compile_expression
    general = diffsde.General(2, compile_("-x", ("t", "x")), compile_("1.0", ("t",)))
    with pytest.raises(
        ValueError, match="'noise' divides by the kernel's σ_t.*parameterisation: score"
    ):
        eqx.filter_eval_shape(  # traces the constructor, compiles nothing
            diffsde.MLPScore,
            general,
            width=8,
            depth=1,
            n_frequencies=2,
            parameterisation=diffsde.NoiseOutput(),
            key=jr.key(0),
        )
    # the annotation `sde: AbstractGaussianSDE` (checked by the spec layer, and by jaxtyping
    # under pytest), and the objective's own check of its kernel source
    with pytest.raises(Exception, match="AbstractGaussianSDE|Gaussian transition kernel"):
        diffsde.DenoisingScoreMatching(general)
    with pytest.raises(diffsde.SpecFieldError, match=r"eps: must lie in \(0, T\)"):
        diffsde.DenoisingScoreMatching(SDE, eps=2.0)


def test_registry_lists_mlp_and_dsm_and_dsm_needs_a_gaussian_kernel():
    registry = diffsde.get_registry()
    assert "mlp" in registry.names("model") and "dsm" in registry.names("objective")
    setup = diffsde.validate_text(
        "sde: {type: vp}\ndata: {type: toy, name: moons}\n"
        "objective: {type: dsm, time_sampling: importance}\nmodel: {type: mlp, width: 8}\n"
    )
    objective = setup.spec.objective.build(sde=setup.sde, data=setup.data)
    assert isinstance(objective, diffsde.DenoisingScoreMatching)
    assert objective.time_sampling == diffsde.ImportanceTimes()

    def loss(key):
        mkey, dkey, lkey = jr.split(key, 3)
        model = setup.spec.model.build(sde=setup.sde, key=mkey)
        assert (
            isinstance(model, diffsde.MLPScore) and model.parameterisation == diffsde.NoiseOutput()
        )
        return objective.loss(model, setup.data.sample(key=dkey, n=8), key=lkey)

    # traced, not compiled: the other tests run these numerically
    out = jax.eval_shape(loss, jr.key(0))
    assert out.shape == () and out.dtype == jnp.float32
    general = (
        'sde: {type: general, drift: "-x", diffusion: "1.0"}\nprior: {type: gaussian}\n'
        "data: {type: toy, name: moons}\nobjective: {type: dsm}\n"
    )
    with pytest.raises(diffsde.SpecError, match="needs an SDE with a Gaussian transition kernel"):
        diffsde.validate_text(general, "s.yaml")


SAMPLE_ONLY = {  # objectives that need only samples of p_t, with the same weighting as ESM
    "ism": diffsde.ImplicitScoreMatching(SDE, weighting=WEIGHTING["sigma2"]),
    "ssm-rademacher-vr": diffsde.SlicedScoreMatching(SDE, weighting=WEIGHTING["sigma2"]),
    "ssm-gaussian-vr": diffsde.SlicedScoreMatching(
        SDE, weighting=WEIGHTING["sigma2"], projection="gaussian"
    ),
    "ssm-rademacher": diffsde.SlicedScoreMatching(
        SDE, weighting=WEIGHTING["sigma2"], variance_reduction=False, n_projections=2
    ),
}


@pytest.mark.parametrize("name", list(SAMPLE_ONLY))
def test_ism_and_ssm_gradients_match_esm_in_expectation(name):
    objective = SAMPLE_ONLY[name]
    esm = diffsde.ExplicitScoreMatching(SDE, MIXTURE, weighting=WEIGHTING["sigma2"])

    def estimates(x0, lkey):
        # the same key draws the same (t, x_t): ISM/SSM − ESM is then a θ-independent term
        # whose derivative has mean 0 (integration by parts), not 0 per draw
        g = jax.grad(lambda a: objective.loss(scaled_score(a), x0, key=lkey))(0.8)
        g_esm = jax.grad(lambda a: esm.loss(scaled_score(a), x0, key=lkey))(0.8)
        return g, g_esm

    g, g_esm = _repeat(estimates, jr.key(1))
    diff, se = _mc(g - g_esm)
    assert abs(diff) < 4 * se, (diff, se)  # 4 standard errors over 100 batches of 64
    mean, se_mean = _mc(g)
    assert mean < -5 * se_mean, (mean, se_mean)  # it points to the exact score (a = 1)


def test_sliced_projections_estimate_the_exact_divergence():
    # One point, many projections: E_v[vᵀJv] = tr J for Rademacher and Gaussian v.
    x, t = jnp.array([0.3, -0.7]), jnp.asarray(0.2)
    ism = diffsde.ImplicitScoreMatching(SDE, weighting=WEIGHTING["uniform"])
    exact = ism.pointwise(exact_score, t, x, x, jr.key(0))
    for projection in ("rademacher", "gaussian"):
        for vr in (True, False):
            ssm = diffsde.SlicedScoreMatching(
                SDE,
                weighting=WEIGHTING["uniform"],
                projection=projection,
                n_projections=20_000,
                variance_reduction=vr,
            )
            estimate = ssm.pointwise(exact_score, t, x, x, jr.key(1))
            # the per-projection spread is O(|J|) ≈ 10 here: 20 000 projections leave ~0.1
            assert abs(estimate - exact) < 0.05 * abs(exact) + 0.5, (projection, vr)


OU_AS_LANGEVIN = diffsde.Langevin(2, diffsde.compile_expression("sum(x**2) / 2", ("x",)), T=2.0)


def test_forward_simulation_matches_the_ou_marginals():
    # Langevin with U = |x|²/2 is OU: X_t | x₀ ~ N(x₀ e^{−t}, (1 − e^{−2t}) I). The objective
    # simulates it (no Gaussian kernel is declared), Euler–Maruyama with dt = T/100.
    ssm = diffsde.SlicedScoreMatching(
        OU_AS_LANGEVIN, weighting=WEIGHTING["uniform"], source=diffsde.AutoSource(times_per_path=8)
    )
    x0 = jnp.tile(jnp.array([[2.0, -1.0]]), (20_000, 1))
    t, w, xt, x0s = jax.jit(lambda x, k: ssm.draw(x, key=k))(x0, jr.key(3))
    assert t.shape == (160_000,) and xt.shape == (160_000, 2) and jnp.all(t >= ssm.eps)
    assert jnp.all(w == 1.0) and jnp.all(x0s == x0[0])
    z = (xt - x0s * jnp.exp(-t)[:, None]) / jnp.sqrt(1 - jnp.exp(-2 * t))[:, None]
    late = t > 0.1  # early times: the relative EM bias of the variance is O(dt / t)
    # standardised residuals: mean 0 and variance 1 up to Monte-Carlo error (~0.005) and the
    # Euler–Maruyama bias O(dt) = 0.02
    assert jnp.all(jnp.abs(jnp.mean(z[late], axis=0)) < 0.03)
    assert jnp.all(jnp.abs(jnp.var(z[late], axis=0) - 1) < 0.05)
    spread = jnp.histogram(t, bins=4, range=(0.0, 2.0))[0] / t.size
    assert jnp.all(jnp.abs(spread - 0.25) < 0.01)  # times cover [ε, T] uniformly


def _train_score_error(objective, sde, target, score, steps=300):
    """Exact-score error E|s_θ − score|² (t ~ U[0.05, T], x_t from the SDE's kernel or its
    simulation) of a small MLP before and after ``steps`` Adam steps on ``objective``."""
    points = diffsde.ImplicitScoreMatching(sde, weighting=WEIGHTING["uniform"], eps=0.05)

    def score_error(model, x0, *, key):
        t, _, xt, _ = points.draw(x0, key=key)
        return jnp.mean(jnp.sum((jax.vmap(model)(xt, t) - jax.vmap(score)(xt, t)) ** 2, -1))

    optimiser = optax.adam(3e-3)

    @jax.jit
    def train(key):
        mkey, tkey, ekey = jr.split(key, 3)
        model = diffsde.MLPScore(
            sde,
            width=32,
            depth=2,
            n_frequencies=4,
            parameterisation=diffsde.ScoreOutput(),
            key=mkey,
        )
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def step(carry, key):
            params, state = carry
            dkey, lkey = jr.split(key)
            x0 = target.sample(key=dkey, n=128)
            loss_fn = lambda p: objective.loss(eqx.combine(p, static), x0, key=lkey)  # noqa: E731
            updates, state = optimiser.update(jax.grad(loss_fn)(params), state)
            return (optax.apply_updates(params, updates), state), None

        def error(params):
            dkey, lkey = jr.split(ekey)
            x0 = target.sample(key=dkey, n=2048)
            return score_error(eqx.combine(params, static), x0, key=lkey)

        (trained, _), _ = jax.lax.scan(
            step, (params, optimiser.init(params)), jr.split(tkey, steps)
        )
        return error(params), error(trained)

    return train(jr.key(11))


@pytest.mark.parametrize("name", ["dsm", "esm", "ism", "ssm"])
def test_each_objective_trains_a_score(name):
    # A Gaussian target under VP: the exact score is known. Bound: the trained model's exact
    # score error (uniform in t on [0.05, 1]) is below 25 % of the untrained one's.
    target = diffsde.GaussianMixture(1.0, [[1.0, -1.0]], 0.5)
    score = lambda x, t: target.score(x, t, SDE)  # noqa: E731
    objective = {
        "dsm": diffsde.DenoisingScoreMatching(SDE, weighting=WEIGHTING["g2"], eps=0.05),
        "esm": diffsde.ExplicitScoreMatching(SDE, target, weighting=WEIGHTING["g2"], eps=0.05),
        "ism": diffsde.ImplicitScoreMatching(SDE, eps=0.05),
        "ssm": diffsde.SlicedScoreMatching(SDE, eps=0.05),
    }[name]
    before, after = _train_score_error(objective, SDE, target, score)
    assert after < 0.25 * before, (before, after)


def test_ssm_trains_on_simulated_paths():
    # No Gaussian kernel declared: (t, x_t) come from simulated forward paths. For Gaussian data
    # N(μ, s²I) under OU-as-Langevin, p_t = N(μ e^{−t}, (s² e^{−2t} + 1 − e^{−2t}) I).
    mu, s = jnp.array([1.0, -1.0]), 0.5
    target = diffsde.GaussianMixture(1.0, [mu.tolist()], s)

    def score(x, t):
        var = s**2 * jnp.exp(-2 * t) + 1 - jnp.exp(-2 * t)
        return -(x - mu * jnp.exp(-t)) / var

    objective = diffsde.SlicedScoreMatching(
        OU_AS_LANGEVIN, eps=0.05, source=diffsde.AutoSource(steps=50)
    )
    before, after = _train_score_error(objective, OU_AS_LANGEVIN, target, score)
    assert after < 0.25 * before, (before, after)
