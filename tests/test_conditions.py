"""Conditions (seam 1): a labelled Gaussian mixture yields its component index with each point;
the exact conditional score of p_t(x | c) drives every sampler to component c; a conditional MLP
trained by DSM learns p_t(x | c); unconditional scores ignore a condition, bit for bit."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsde
from diffsde._data import ConditionedBatch, GaussianMixture, split_batch
from diffsde._model import bind_condition, takes_condition
from diffsde._run import evaluate_run, run

SDE = diffsde.VP(dim=2)
DATA = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [0.3, 0.6], labelled=True)


def exact(x, t, condition=None):
    """∇ log p_t(x | condition) of DATA under SDE (∇ log p_t(x) without a condition)."""
    return DATA.score(x, t, SDE, condition)


def test_exact_conditional_score_is_the_component_score_and_averages_to_the_mixture():
    """∇ log p_t(x | c) is the gradient of log p_t(x | c), and Σ_c p_t(c | x) ∇ log p_t(x | c)
    = ∇ log p_t(x) (Bayes), at several (x, t). Mutation: returning component 1 − c's score, or
    dropping the `condition is not None` branch of GaussianMixture.score, makes this fail."""
    xs = jr.normal(jr.key(0), (5, 2)) * 2.0
    for t in (0.05, 0.3, 0.9):
        for x in xs:
            scores = jnp.stack([exact(x, t, c) for c in (0, 1)])
            grads = jnp.stack(
                [jax.grad(lambda y, c=c: DATA.marginal_log_prob(y, t, SDE, c))(x) for c in (0, 1)]
            )
            np.testing.assert_allclose(scores, grads, rtol=1e-4, atol=1e-4)
            log_joint = jnp.stack(
                [DATA.log_weights[c] + DATA.marginal_log_prob(x, t, SDE, c) for c in (0, 1)]
            )
            posterior = jax.nn.softmax(log_joint)
            np.testing.assert_allclose(posterior @ scores, exact(x, t), rtol=1e-4, atol=1e-4)


def test_labelled_data_yield_the_components_of_their_points():
    """sample_conditions draws the same points as sample, each with the component it came
    from (nearest mean here: the components are 4σ apart); given(c) is component c alone.
    Mutation: drawing the labels from another key than the points makes this fail."""
    x, c = DATA.sample_conditions(key=jr.key(1), n=2000)
    np.testing.assert_array_equal(x, DATA.sample(key=jr.key(1), n=2000))
    nearest = jnp.argmin(jnp.sum((x[:, None] - DATA.means) ** 2, -1), axis=1)
    assert float(jnp.mean(nearest == c)) > 0.999
    assert abs(float(jnp.mean(c)) - 0.7) < 4 * np.sqrt(0.21 / 2000)  # weight of component 1
    batch = DATA.batch(key=jr.key(1), n=5)
    assert isinstance(batch, ConditionedBatch) and batch.condition.dtype == jnp.int32
    plain = GaussianMixture([0.3, 0.7], DATA.means, DATA.stds)
    assert plain.classes == 0 and DATA.classes == 2
    assert split_batch(plain.batch(key=jr.key(1), n=5))[1] is None
    one = DATA.given(1)
    np.testing.assert_allclose(one.mean(), [2.0, 1.0])
    np.testing.assert_allclose(one.covariance(), 0.36 * np.eye(2), rtol=1e-6)
    with pytest.raises(ValueError, match="0..1"):
        DATA.given(2)
    with pytest.raises(ValueError, match="labels: true"):
        plain.given(0)


SAMPLERS = [
    diffsde.EulerMaruyama(steps=200),
    diffsde.ProbabilityFlow(),
    diffsde.ExponentialIntegrator(steps=100),
]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.tag)
def test_exact_conditional_score_samples_each_rows_component(sampler):
    """Rows alternate between classes 0 and 1 (chunks of 1500, the last padded); each class's
    2000 samples have component c's mean within 4 standard errors (s_c/√2000 per coordinate)
    and covariance s_c² I within 15% of s_c² entrywise (≈ 4.7 standard errors of a variance;
    measured: ≤ 1.7 SE and ≤ 6.4%). Mutation: binding row i to the condition of another row
    (condition[::-1] in sample's chunks) or swapping the classes in the exact score makes this
    fail."""
    n = 4000
    condition = jnp.arange(n) % 2
    x_T = jr.normal(jr.key(0), (n, 2))
    out = diffsde.sample(
        sampler, SDE, exact, x_T, key=jr.key(1), condition=condition, chunk_size=1500
    )
    for c in (0, 1):
        x = np.asarray(out.x[np.asarray(condition) == c])
        var = float(DATA.stds[c]) ** 2
        mean_error = np.abs(x.mean(0) - np.asarray(DATA.means[c]))
        assert np.all(mean_error < 4 * np.sqrt(var / len(x))), (c, mean_error)
        assert np.all(np.abs(np.cov(x.T) - var * np.eye(2)) < 0.15 * var), (c, np.cov(x.T))


def test_unconditional_scores_ignore_a_condition_bit_for_bit():
    """A plain score(x, t) and an MLP with classes: 0 given a condition sample exactly what they
    sample without one; bind_condition returns them unchanged. Mutation: passing the condition
    to every score (dropping takes_condition in bind_condition) makes this fail (TypeError)."""
    plain = lambda x, t: DATA.score(x, t, SDE)  # noqa: E731
    model = diffsde.MLPScore(SDE, width=8, depth=1, key=jr.key(0))
    x_T = jr.normal(jr.key(0), (64, 2))
    sampler = diffsde.EulerMaruyama(steps=20)
    condition = jnp.arange(64) % 2
    for score in (plain, model):
        assert not takes_condition(score) or score is model
        assert bind_condition(score, jnp.int32(1)) is score or score is model
        free = diffsde.sample(sampler, SDE, score, x_T, key=jr.key(2)).x
        given = diffsde.sample(sampler, SDE, score, x_T, key=jr.key(2), condition=condition).x
        np.testing.assert_array_equal(free, given)


def test_conditional_mlp_uses_its_condition_and_requires_one():
    """classes: 3 appends a learned class embedding: outputs differ by class, a missing condition
    is an error naming the fix; the unconditional weights do not depend on the embedding (same
    MLP from the same key). Mutation: zeroing the embedding in the input makes this fail."""
    model = diffsde.MLPScore(SDE, width=8, depth=1, classes=3, key=jr.key(0))
    x, t = jnp.ones(2), 0.5
    outs = [model(x, t, condition=c) for c in range(3)]
    assert (
        min(float(jnp.linalg.norm(a - b)) for a, b in [(outs[0], outs[1]), (outs[1], outs[2])]) > 0
    )
    with pytest.raises(ValueError, match="condition=c"):
        model(x, t)
    plain = diffsde.MLPScore(SDE, width=8, depth=1, key=jr.key(0))
    np.testing.assert_array_equal(plain.mlp.layers[1].weight, model.mlp.layers[1].weight)
    assert takes_condition(model) and takes_condition(plain)  # the signature has `condition`


def test_objective_with_conditions_regresses_on_the_conditional_score():
    """ESM with the batch's conditions is 0 for the exact conditional score (its own target),
    and positive for the unconditional score; DSM's loss, whose minimiser is the conditional
    score, is lower at the exact conditional score than at the unconditional one (same key).
    Mutation: not binding the model to each point's condition in the loss makes this fail."""
    esm = diffsde.ExplicitScoreMatching(sde=SDE, data=DATA)
    dsm = diffsde.DenoisingScoreMatching(sde=SDE)
    x0, c = DATA.sample_conditions(key=jr.key(3), n=512)
    plain = lambda x, t: DATA.score(x, t, SDE)  # noqa: E731
    assert float(esm.loss(exact, x0, key=jr.key(4), condition=c)) < 1e-8
    assert float(esm.loss(plain, x0, key=jr.key(4), condition=c)) > 1e-2
    assert float(dsm.loss(exact, x0, key=jr.key(4), condition=c)) < float(
        dsm.loss(plain, x0, key=jr.key(4), condition=c)
    )


def test_likelihood_given_conditions_is_the_exact_conditional_density():
    """log p_ε(x | c) through the PF-ODE of the exact conditional score, p_T the exact
    p_T(x | c), equals the closed form log p_ε(x | c) within 2e-3 nats (the solver's tolerance
    is 1e-5), rows of both classes in one call; with the classes swapped it is off by over a
    nat. Mutation: ignoring the per-row condition in the likelihood's solve makes this fail."""
    x, c = DATA.sample_conditions(key=jr.key(5), n=16)
    estimator = diffsde.ProbabilityFlowLikelihood(divergence="exact")
    closed = jax.vmap(lambda x, c: DATA.marginal_log_prob(x, estimator.eps, SDE, c))(x, c)
    for label in (0, 1):
        rows = np.asarray(c) == label

        def log_prior(x_T, label=label):  # p_T(x | c) of this class
            return DATA.marginal_log_prob(x_T, SDE.T, SDE, label)

        def estimate(condition):
            return diffsde.log_likelihood(
                estimator,
                SDE,
                exact,
                x[rows],
                key=jr.key(6),
                log_prior=log_prior,
                condition=condition,
                batch_size=5,  # chunks, the last padded
            ).log_prob

        given = jnp.full(int(rows.sum()), label)
        np.testing.assert_allclose(estimate(given), closed[rows], atol=2e-3)
        assert float(jnp.min(jnp.abs(estimate(1 - given) - closed[rows]))) > 1.0


def _spec(classes: int, condition: str = "1", steps: int = 1500) -> str:
    return f"""\
name: cond{classes}
seed: 0
sde: {{type: vp}}
data: {{type: gmm, dim: 2, components: 2, means: [[-1.0, 0.0], [1.0, 0.0]], std: 0.5, labels: true}}
model: {{type: mlp, width: 64, depth: 2, n_frequencies: 8, classes: {classes}}}
objective: {{type: dsm}}
training: {{steps: {steps}, batch_size: 256, steps_per_dispatch: 250, learning_rate: 3e-3,
  checkpoint_every: 5000}}
sampler: {{type: euler_maruyama, steps: 200}}
eval:
  n_samples: 2000
  condition: {condition}
  metrics: [{{type: moments}}, {{type: esm, n_points: 512, eps: 0.05}}]
"""


@pytest.mark.slow
def test_conditional_dsm_learns_each_class(tmp_path):
    """DSM on a 2-class labelled mixture (overlapping components N(∓e₁, 0.25 I)), 1500 steps:
    the conditional MLP's exact conditional score error (esm over t ∈ [0.05, 1], against
    ∇log p_t(x | c)) is below a fifth of the unconditional model's, which cannot tell the
    classes apart (measured: 0.0138 vs 0.447), and its class-1 samples match component 1: mean
    within 0.1 of (1, 0) and covariance within 0.1 of 0.25 I (Frobenius; Monte-Carlo SE ≈ 0.011
    and 0.01 at 2000 samples; measured 0.022 and 0.009). Mutation: training every point with
    label 0 (zeros_like(condition) in ScoreMatching.step) makes this fail (esm 0.83, class-1
    mean error 1.41)."""
    runs = tmp_path / "runs"
    results = {}
    for classes, condition in ((2, "1"), (0, "null")):
        setup = diffsde.validate_text(_spec(classes, condition), "cond.yaml")
        path = run(setup, runs, progress=False)
        record = diffsde.runs.open_run(path)
        assert record.status == "completed"
        results[classes] = record
    conditional, unconditional = results[2].eval, results[0].eval
    assert conditional["esm"] < 0.2 * unconditional["esm"], (conditional, unconditional)
    assert conditional["mean_error"] < 0.1 and conditional["cov_error"] < 0.1, conditional
    stored = results[2].samples
    np.testing.assert_array_equal(stored["conditions"], np.ones(2000))
    assert abs(float(np.mean(stored["reference"][:, 0])) - 1.0) < 0.05  # class 1's held-out


def test_unconditional_model_on_labelled_data_trains_exactly_as_on_plain_data(tmp_path):
    """The labels of `labels: true` reach the objective, and an unconditional model ignores
    them: its losses and EMA weights are bit-for-bit those of the same spec without labels.
    Mutation: drawing the labelled batch's points from another key makes this fail."""
    records = []
    for labels in ("true", "false"):
        text = _spec(0, "null", steps=20).replace("labels: true", f"labels: {labels}")
        text = text.replace("steps_per_dispatch: 250", "steps_per_dispatch: 10")
        text = text.replace("n_samples: 2000", "n_samples: 50").replace("steps: 200", "steps: 5")
        path = run(diffsde.validate_text(text, "cond.yaml"), tmp_path / labels, progress=False)
        records.append(diffsde.runs.open_run(path))
    np.testing.assert_array_equal(records[0].metrics["loss"], records[1].metrics["loss"])
    np.testing.assert_array_equal(records[0].samples["samples"], records[1].samples["samples"])
    assert "conditions" in records[0].samples and "conditions" not in records[1].samples


def test_labelled_run_without_eval_condition_draws_labels_and_reevaluates_with_them(tmp_path):
    """With eval.condition null, a conditional run samples with labels drawn from the data
    (class 1 in 70% ± 4 SE of the rows for weights 0.3/0.7) and stores them with the
    held-out points' labels; `diffsde eval` recomputes the same metrics from the stored
    samples, the likelihood and esm using those labels. Mutation: not passing the stored
    reference_conditions in evaluate_run makes this fail (the conditional model is called
    without a condition)."""
    text = _spec(2, "null", steps=20).replace("std: 0.5,", "std: 0.5, weights: [0.3, 0.7],")
    text = text.replace("steps_per_dispatch: 250", "steps_per_dispatch: 10")
    text = text.replace("n_samples: 2000", "n_samples: 400").replace("steps: 200", "steps: 5")
    likelihood = "{type: log_likelihood, n: 16, rtol: 1e-3, atol: 1e-3}"
    text = text.replace("{type: moments}", "{type: moments}, " + likelihood)
    path = run(diffsde.validate_text(text, "cond.yaml"), tmp_path, progress=False)
    record = diffsde.runs.open_run(path)
    labels = record.samples["conditions"]
    assert labels.shape == (400,) and abs(labels.mean() - 0.7) < 4 * np.sqrt(0.21 / 400)
    assert record.samples["reference_conditions"].shape == (400,)
    again = evaluate_run(path)
    assert set(again) == {"mean_error", "cov_error", "esm", "nll"}
    for name, value in record.eval.items():
        np.testing.assert_allclose(again[name], value, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize(
    "condition, edit, where, message",
    [
        ("null", ("labels: true", "labels: false"), "model.classes", "use labelled data"),
        ("null", ("classes: 2", "classes: 3"), "model.classes", "set classes: 2"),
        ("1", ("condition: 1", "condition: 2"), "eval.condition", "classes are 0..1"),
        ("1", ("classes: 2", "classes: 0"), "eval.condition", "the model is unconditional"),
    ],
)
def test_condition_mismatches_are_located_spec_errors(condition, edit, where, message):
    """A conditional model without matching labels, and an eval.condition that is not one of a
    conditional model's classes, are errors at the key, with the fix. Mutation: removing the
    check in _check_conditions / _condition_issues makes the matching case fail."""
    text = _spec(2, condition).replace(*edit)
    with pytest.raises(diffsde.SpecError) as err:
        diffsde.validate_text(text, "cond.yaml")
    assert where in str(err.value) and message in str(err.value), str(err.value)


def test_eval_condition_without_labels_is_an_error():
    """eval.condition on data without labels names the fix. Mutation: dropping the
    `not data.classes` case of _condition_issues makes this fail."""
    text = _spec(0).replace(", labels: true", "")
    with pytest.raises(diffsde.SpecError, match="yield no class labels"):
        diffsde.validate_text(text, "cond.yaml")
