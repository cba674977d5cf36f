"""The exact-score protocol (`diffsde.ExactScore`): a dataset that is not a Gaussian mixture but
knows its score gets the `esm` metric and trains with the `esm` objective, checked against
closed forms.

The dataset: N(μ, Σ) with a full covariance in R², whose marginal under an SDE with kernel
X_t | x₀ ~ N(m_t(x₀), σ_t² I), m_t affine with slope λ_t, is N(m_t(μ), λ_t² Σ + σ_t² I).
"""

import math
from typing import Annotated, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pydantic
import pytest

import diffsde
from diffsde._run import run

MEAN = (1.0, -0.5)
STDS = (1.0, 0.5)


class CorrelatedGaussian(diffsde.AbstractDataset):
    """N(μ, Σ) in R², μ = (1, −0.5), Σ = [[1, ρ/2], [ρ/2, 1/4]]: not a Gaussian mixture of the
    isotropic kind, and its exact score under a Gaussian-kernel SDE is known."""

    tag: ClassVar[str] = "corr_gauss"
    rho: Annotated[float, pydantic.Field(gt=-1, lt=1)] = 0.8
    dim: int = eqx.field(static=True, default=2)

    def mean(self):
        return jnp.asarray(MEAN)

    def covariance(self):
        s = jnp.asarray(STDS)
        corr = jnp.array([[1.0, self.rho], [self.rho, 1.0]])
        return s[:, None] * corr * s[None, :]

    def sample(self, *, key, n):
        chol = jnp.linalg.cholesky(self.covariance())
        return self.mean() + jr.normal(key, (n, 2)) @ chol.T

    def knows_score(self, sde):
        return isinstance(sde, diffsde.AbstractGaussianSDE)

    def marginal_covariance(self, sde, t):
        lam, sigma = sde.kernel(t)
        return lam**2 * self.covariance() + sigma**2 * jnp.eye(2)

    def score(self, x, t, sde, condition=None):
        del condition
        centred = x - sde.marginal_mean(t, self.mean())
        return -jnp.linalg.solve(self.marginal_covariance(sde, t), centred)


class Unknowing(diffsde.AbstractDataset):
    """Has a `score` method but knows it under no SDE (knows_score is False)."""

    tag: ClassVar[str] = "unknowing"
    dim: int = eqx.field(static=True, default=2)

    def sample(self, *, key, n):
        return jr.normal(key, (n, 2))

    def knows_score(self, sde):
        del sde
        return False

    def score(self, x, t, sde, condition=None):
        del t, sde, condition
        return -x


DATA = CorrelatedGaussian()
SDE = diffsde.VP(2)


def _shifted(data, sde, c, x, t):
    return data.score(x, t, sde) + c


def _scaled(data, sde, a, x, t):
    return (1 + a) * data.score(x, t, sde)


def _context(score, *, dataset=DATA, sde=SDE, samples=None, reference=None):
    x = jnp.zeros((4, 2)) if samples is None else samples
    y = x if reference is None else reference
    return diffsde.EvalContext(x, y, dataset, sde, score, jr.key(0))


def test_the_protocol_is_what_is_checked_not_the_class():
    """Mutation: exact_score testing isinstance(GaussianMixture) (or ignoring knows_score)
    makes this fail."""
    assert not isinstance(DATA, diffsde.GaussianMixture)
    assert isinstance(DATA, diffsde.ExactScore)
    assert isinstance(diffsde.GaussianMixture(1.0, [[0.0, 0.0]], 1.0), diffsde.ExactScore)
    assert diffsde.exact_score(DATA, SDE) is not None
    assert diffsde.exact_score(Unknowing(), SDE) is None  # it says it does not know
    assert diffsde.exact_score(diffsde.TwoDToy("moons"), SDE) is None  # no protocol
    langevin = diffsde.get_registry().get("sde", "langevin").config().build(dim=2)
    assert diffsde.exact_score(DATA, langevin) is None  # no Gaussian kernel
    x, t = jnp.array([0.3, -0.2]), 0.4
    assert jnp.allclose(diffsde.exact_score(DATA, SDE)(x, t), DATA.score(x, t, SDE))


def test_exact_score_is_the_gradient_of_the_marginal_log_density():
    """The test dataset's score is right (autodiff of N(m_t(μ), λ²Σ + σ²I)'s log-density), so
    the closed forms below test the metric and objective, not the fixture. Mutation: λ_t
    instead of λ_t² in marginal_covariance makes this fail."""
    t = 0.3
    cov = DATA.marginal_covariance(SDE, t)
    mean = SDE.marginal_mean(t, DATA.mean())
    log_p = lambda x: jax.scipy.stats.multivariate_normal.logpdf(x, mean, cov)  # noqa: E731
    lam, sigma = SDE.kernel(t)
    x0 = DATA.sample(key=jr.key(1), n=64)
    samples = jax.vmap(lambda x, k: lam * x + sigma * jr.normal(k, (2,)))(
        x0, jr.split(jr.key(2), 64)
    )
    expected = jax.vmap(jax.grad(log_p))(samples)
    got = jax.vmap(lambda x: DATA.score(x, t, SDE))(samples)
    assert jnp.allclose(got, expected, atol=1e-4)
    # and the empirical covariance of those draws is λ²Σ + σ²I (the kernel's)
    more = DATA.sample(key=jr.key(3), n=50_000)
    xt = lam * more + sigma * jr.normal(jr.key(4), more.shape)
    assert jnp.allclose(jnp.cov(xt.T), cov, atol=0.03)  # sd of entries ≈ 0.005


def test_esm_metric_applies_and_is_zero_at_the_exact_score_and_c_squared_when_shifted():
    """Mutation: the esm metric testing isinstance(GaussianMixture) returns {} here and makes
    this fail; so does scoring with the dataset's score under another SDE."""
    metric = diffsde.ExactScoreError(n_times=8, n_points=256)

    def esm(c):
        score = eqx.Partial(_shifted, DATA, SDE, jnp.asarray(c))
        return metric(_context(score))["esm"]

    assert esm([0.0, 0.0]) < 1e-10
    assert esm([0.3, -0.4]) == pytest.approx(0.25, rel=1e-4)  # |c|², exactly


def test_esm_metric_of_a_scaled_score_is_the_closed_form():
    """s = (1 + a) ∇log p_t gives esm = a² E_t tr(C_t⁻¹), C_t = λ_t²Σ + σ_t²I (for x ~ N(m, C),
    E|C⁻¹(x − m)|² = tr C⁻¹). The Monte-Carlo estimate, 16 times × 8192 points, has relative
    standard error below 0.5 % (|C^{-1/2}z|² has relative sd ≤ √2 per point); tolerance 3 %.
    Mutation: measuring at x_t drawn with σ_t² instead of σ_t (or comparing with the score at
    t = T) makes this fail."""
    a, n_times, eps = 0.5, 16, 1e-3
    metric = diffsde.ExactScoreError(n_times=n_times, n_points=8192, eps=eps)
    value = metric(_context(eqx.Partial(_scaled, DATA, SDE, jnp.asarray(a))))["esm"]
    ts = np.linspace(eps, SDE.T, n_times)
    traces = [float(jnp.trace(jnp.linalg.inv(DATA.marginal_covariance(SDE, t)))) for t in ts]
    expected = a**2 * float(np.mean(traces))
    assert value == pytest.approx(expected, rel=0.03), (value, expected)


def test_moments_uses_exact_moments_of_a_dataset_that_knows_them():
    """Mutation: Moments testing isinstance(GaussianMixture) compares with the (deliberately
    wrong) reference rows here and makes this fail."""
    samples = DATA.sample(key=jr.key(5), n=20_000)
    wrong_reference = jnp.zeros((10, 2)) + jnp.arange(10.0)[:, None]
    values = diffsde.Moments()(_context(None, samples=samples, reference=wrong_reference))
    # sd of each mean entry ≤ 1/√20000 = 0.007; of each covariance entry ≤ 0.011
    assert values["mean_error"] < 0.03 and values["cov_error"] < 0.05, values


def test_esm_objective_trains_on_a_dataset_with_an_exact_score():
    """With uniform weighting the ESM loss of s = ∇log p_t + c is |c|² exactly, and gradient
    descent on (a, c) in s = (1 + a)∇log p_t + c drives it to 0. Mutation: ESM regressing on
    the dataset's score under another SDE (VE) makes this fail."""
    esm = diffsde.ExplicitScoreMatching(SDE, DATA, weighting=diffsde.UniformWeighting())
    x0 = DATA.sample(key=jr.key(6), n=256)
    c = jnp.array([0.3, -0.4])
    loss = float(esm.loss(eqx.Partial(_shifted, DATA, SDE, c), x0, key=jr.key(7)))
    assert loss == pytest.approx(0.25, rel=1e-4)

    def model(params, x, t):
        return (1 + params["a"]) * DATA.score(x, t, SDE) + params["c"]

    params = {"a": jnp.asarray(0.5), "c": c}
    optimiser = optax.adam(0.05)
    opt_state = optimiser.init(params)

    @jax.jit
    def step(params, opt_state, key):
        value, grads = jax.value_and_grad(
            lambda p: esm.loss(lambda x, t: model(p, x, t), x0, key=key)
        )(params)
        updates, opt_state = optimiser.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, value

    first = None
    for i in range(150):
        params, opt_state, value = step(params, opt_state, jr.key(100 + i))
        first = float(value) if first is None else first
    final = float(esm.loss(lambda x, t: model(params, x, t), x0, key=jr.key(8)))
    assert final < 1e-2 * first, (first, final, params)


@pytest.fixture
def exact_plugin():
    def register_datasets(register):
        register(CorrelatedGaussian)
        register(Unknowing)

    plugin = type("P", (), {"register_datasets": staticmethod(diffsde.hookimpl(register_datasets))})
    diffsde.register_plugin(plugin, "exact-data", "exact-dist")
    yield
    diffsde.unregister_plugin("exact-data")


SPEC = """\
name: exact
seed: 0
sde: {{type: vp}}
data: {data}
model: {{type: mlp, width: 16, depth: 1, n_frequencies: 4}}
objective: {{type: esm, weighting: uniform}}
training: {{steps: 20, batch_size: 64, steps_per_dispatch: 10, warmup_steps: 2}}
sampler: {{type: pf_ode, solver: euler, steps: 10}}
eval: {{n_samples: 100, metrics: [{{type: esm, n_points: 128}}, {{type: moments}}]}}
"""


def test_a_run_trains_with_esm_and_reports_esm_for_the_plugin_dataset(exact_plugin, tmp_path):
    """The spec path: the `esm` objective accepts the plugin dataset and the run reports the
    `esm` metric (a finite value below the initial score's). Mutation: the objective's
    `data: GaussianMixture` requirement makes validation fail here."""
    setup = diffsde.validate_text(SPEC.format(data="{type: corr_gauss}"), "exact.yaml")
    assert isinstance(setup.data, CorrelatedGaussian)
    record = diffsde.runs.open_run(run(setup, tmp_path, progress=False))
    assert record.status == "completed"
    assert math.isfinite(record.eval["esm"]) and record.eval["esm"] > 0
    assert {"mean_error", "cov_error"} <= set(record.eval)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (
            "{type: toy, name: moons}",
            "needs data with an exact score (a dataset implementing diffsde.ExactScore, "
            "e.g. 'gmm'), and TwoDToy is not one",
        ),
        (
            "{type: unknowing}",
            "Unknowing does not know it under VP (its knows_score(sde) is False)",
        ),
    ],
)
def test_esm_objective_without_an_exact_score_is_one_located_error(exact_plugin, data, fragment):
    """Mutation: dropping ExplicitScoreMatching.__check_init__ lets 'unknowing' validate."""
    with pytest.raises(diffsde.SpecError) as err:
        diffsde.validate_text(SPEC.format(data=data), "exact.yaml")
    (issue,) = err.value.issues
    assert str(issue).startswith("exact.yaml:6:19 objective.type: "), str(issue)
    assert fragment in str(issue), str(issue)
