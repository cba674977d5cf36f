"""The training-method seam: a second method, written against ``diffsde.training`` alone, trains,
matches theory, and gets the run's checkpoints, bit-for-bit resume, SIGTERM stop, NaN stop and
metric rows from the same loop as score matching.

The method fits a Gaussian denoiser (x₀-prediction, not score matching): for data
x₀ ~ N(μ, diag v) and a Gaussian kernel x_t = m_t(x₀) + σ_t z with m_t(x₀) = λ_t x₀ + c_t, the
posterior mean is D*(x, t) = μ + λ_t v/(λ_t² v + σ_t²) (x − m_t(μ)), so the two-parameter family
D_θ with θ = (μ, log v) contains it, and regressing D_θ(x_t, t) on x₀ recovers μ and v. Its
score is Tweedie's, s(x, t) = (m_t(D(x, t)) − x)/σ_t², which for θ = (μ, v) is the exact score
−(x − m_t(μ))/(λ_t² v + σ_t²) of the data under the SDE (docs/math.md §2).

The method is registered by a throwaway plugin (``register_training_methods``) and chosen in the
spec (``method: {type: gaussian_denoiser}``), which then needs no ``model:`` or ``objective:``.
"""

import os
import signal
import types
from typing import Annotated, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pydantic
import pytest
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

import diffsde
import diffsde.spec
from diffsde import _faults
from diffsde._cli import main
from diffsde._run import likelihood_run
from diffsde.training import AbstractTrainingMethod, Trainer, ema_update

MEAN = (1.0, -1.0)
STD = 0.5
SPEC = f"""\
name: denoiser
seed: 7
sde: {{type: vp}}
data: {{type: gmm, dim: 2, components: 1, means: [[{MEAN[0]}, {MEAN[1]}]], std: {STD}}}
method: {{type: gaussian_denoiser}}
training:
  steps: STEPS
  batch_size: 256
  steps_per_dispatch: 25
  checkpoint_every: 50
  learning_rate: 0.1
  warmup_steps: 10
  grad_clip: null
sampler: {{type: pf_ode, solver: tsit5}}
eval: {{n_samples: 2000, metrics: [{{type: moments}}]}}
"""


class DenoiserParams(eqx.Module):
    mean: Float[Array, " dim"]
    log_var: Float[Array, " dim"]


class DenoiserState(eqx.Module):
    params: DenoiserParams
    average: DenoiserParams
    opt_state: PyTree


class TweedieScore(eqx.Module):
    """s(x, t) = (m_t(D(x, t)) − x)/σ_t² for the Gaussian denoiser with ``params``."""

    params: DenoiserParams
    sde: diffsde.AbstractGaussianSDE

    def denoise(self, x, t):
        lam, sigma = self.sde.kernel(t)
        v = jnp.exp(self.params.log_var)
        gain = lam * v / (lam**2 * v + sigma**2)
        return self.params.mean + gain * (x - self.sde.marginal_mean(t, self.params.mean))

    def __call__(self, x, t):
        return (self.sde.marginal_mean(t, self.denoise(x, t)) - x) / self.sde.marginal_std(t) ** 2


class GaussianDenoiser(AbstractTrainingMethod):
    """Regress D_θ(x_t, t) on x₀ (t ~ U[eps, T]) with ``optimizer``; sample with Tweedie's
    score of the parameters' EMA."""

    tag: ClassVar[str] = "gaussian_denoiser"
    metric_names: ClassVar[tuple[str, ...]] = ("loss", "grad_norm", "variance")

    sde: diffsde.AbstractGaussianSDE  # context (the spec's SDE), needs a Gaussian kernel
    optimizer: optax.GradientTransformation  # context (from training:)
    dim: int = eqx.field(static=True)  # context
    ema_decay: float = 0.99  # context (training.ema_decay)
    eps: Annotated[float, pydantic.Field(gt=0, lt=1, description="smallest t trained")] = 1e-2

    def init(self, *, key: PRNGKeyArray) -> DenoiserState:
        params = DenoiserParams(jr.normal(key, (self.dim,)), jnp.zeros(self.dim))
        return DenoiserState(params, params, self.optimizer.init(params))

    def step(
        self, state: DenoiserState, batch, *, step: Int[Array, ""], key: PRNGKeyArray
    ) -> tuple[DenoiserState, dict[str, Float[Array, ""]]]:
        tkey, zkey = jr.split(key)
        t = jr.uniform(tkey, (batch.shape[0],), minval=self.eps, maxval=self.sde.T)
        xt, _ = jax.vmap(lambda ti, x, k: self.sde.sample_marginal(ti, x, key=k))(
            t, batch, jr.split(zkey, batch.shape[0])
        )

        def loss_of(params):
            model = TweedieScore(params, self.sde)
            predicted = jax.vmap(model.denoise)(xt, t)
            return jnp.mean(jnp.sum((predicted - batch) ** 2, axis=-1))

        loss, grads = jax.value_and_grad(loss_of)(state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        average = ema_update(state.average, params, step, self.ema_decay)
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "variance": jnp.mean(jnp.exp(params.log_var)),
        }
        return DenoiserState(params, average, opt_state), metrics

    def sampling_model(self, state: DenoiserState) -> TweedieScore:
        return TweedieScore(state.average, self.sde)


@diffsde.hookimpl
def _register_denoiser(register):
    register(GaussianDenoiser)


@pytest.fixture(autouse=True)
def denoiser_plugin():
    """A throwaway plugin registering the method through ``register_training_methods``."""
    diffsde.register_plugin(
        types.SimpleNamespace(register_training_methods=_register_denoiser), "denoiser"
    )
    yield
    diffsde.unregister_plugin("denoiser")


def _method(setup, learning_rate=0.1, steps=None):
    steps = steps or setup.spec.training.steps
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01)
    return GaussianDenoiser(setup.sde, optax.adam(schedule), dim=setup.dim)


def _setup(steps):
    return diffsde.validate_text(SPEC.replace("STEPS", str(steps)))


def _score_error(setup, score, ts=(0.05, 0.3, 1.0)):
    """Per t: RMS of s − ∇log p_t over x ~ p_t, relative to the RMS of ∇log p_t."""
    data, sde = setup.data, setup.sde
    x0 = data.sample(key=jr.key(11), n=4000)
    errors = []
    for i, t in enumerate(ts):
        xt, _ = jax.vmap(lambda x, k, t=t: sde.sample_marginal(t, x, key=k))(
            x0, jr.split(jr.fold_in(jr.key(12), i), x0.shape[0])
        )
        exact = jax.vmap(lambda x, t=t: data.score(x, t, sde))(xt)
        learned = jax.vmap(lambda x, t=t: score(x, t))(xt)
        errors.append(float(jnp.sqrt(jnp.mean((learned - exact) ** 2) / jnp.mean(exact**2))))
    return errors


def test_the_second_method_learns_the_exact_gaussian_score():
    """400 steps of 256 points, Adam on a cosine decay from 0.1, then μ and v of the EMA.
    μ is well determined (measured within 0.004 of its value over 3 seeds × 3 budgets; bound
    0.01). x₀-regression tells little about v (the gain's derivative in v vanishes as σ_t → 0):
    it scatters by ±0.015 around σ² = 0.25 (bound 0.03), and the score's relative RMS error,
    ≈ δv/v where σ_t is small, is at most 4 % at t = 0.05 (bound 6 %), 0.7 % at t = 0.3
    (bound 1.5 %) and ~0 at t = 1 (p_1 ≈ N(0, I) whatever v). At initialisation (μ ~ N(0, I),
    v = 1) the error at t = 0.05 is over 20 %.
    Mutation: Tweedie's score divided by σ_t instead of σ_t², or the gain's λ_t² v written
    λ_t v, makes this fail."""
    setup = _setup(400)
    trainer = Trainer(
        _method(setup), setup.data, jr.key(1), steps=400, batch_size=256, steps_per_dispatch=100
    )
    state = trainer.init(key=jr.key(2))
    before = _score_error(setup, trainer.sampling_model(state))
    while int(state.step) < trainer.steps:
        state, rows = trainer.run_chunk(state, trainer.chunk_length(state))
    fitted = state.method.average
    np.testing.assert_allclose(fitted.mean, MEAN, atol=0.01)
    np.testing.assert_allclose(jnp.exp(fitted.log_var), STD**2, atol=0.03)
    after = _score_error(setup, trainer.sampling_model(state))
    assert after[0] < 0.06 and after[1] < 0.015 and after[2] < 0.001, after
    assert before[0] > 0.2, before
    assert set(rows) == {"step", "loss", "grad_norm", "variance"}
    np.testing.assert_array_equal(rows["step"], np.arange(301, 401))


def _stop_at_dispatch(monkeypatch, n):
    """A real SIGTERM to this process after the n-th dispatch's rows are written."""
    seen = {"train": 0}
    point = _faults.point

    def fault(name):
        point(name)
        if name == "train":
            seen["train"] += 1
            if seen["train"] == n:
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(_faults, "point", fault)


def _spec(tmp_path, steps, name="spec.yaml", **training):
    text = SPEC.replace("STEPS", str(steps))
    for key, value in training.items():
        text = text.replace(f"  {key}: ", f"  {key}: {value}  # was ")
    path = tmp_path / name
    path.write_text(text)
    return path


def _only_run(runs_dir):
    (run,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return run


def test_the_spec_chooses_the_method_and_validates_its_section(tmp_path):
    """``method: {type: gaussian_denoiser}`` builds the plugin's method with its context (the
    SDE, the optimiser of ``training:``, the dimension); its own key is checked at its line; a
    spec for it needs no ``model:`` or ``objective:``, while score matching still asks for them.
    Mutation: requiring the objective whatever the method (``section == "sampler" or True``
    in ``require_runnable``) makes this fail."""
    setup = diffsde.spec.load_spec(_spec(tmp_path, 10))
    assert setup.spec.method.eps == 1e-2
    diffsde.spec.require_runnable(setup)
    method = diffsde.spec.build_method(
        setup.spec, None, None, sde=setup.sde, data=setup.data, prior=setup.prior
    )
    assert isinstance(method, GaussianDenoiser) and method.dim == 2 and method.sde is setup.sde
    bad = SPEC.replace("STEPS", "10").replace("gaussian_denoiser}", "gaussian_denoiser, eps: -1}")
    with pytest.raises(diffsde.SpecError, match=r"^s.yaml:5:\d+ method.eps: "):
        diffsde.validate_text(bad, "s.yaml")
    default = diffsde.validate_text(SPEC.replace("STEPS", "10").replace("method: ", "# "))
    assert default.spec.method.type == "score_matching"
    with pytest.raises(diffsde.SpecError, match="model: `diffsde run` needs this section"):
        diffsde.spec.require_runnable(default)


def test_runs_with_the_second_method_checkpoint_stop_and_resume_bit_for_bit(
    tmp_path, monkeypatch, capsys
):
    """`diffsde run` straight through, and stopped by SIGTERM after its 5th dispatch (step 125,
    its checkpoint saved on stopping) then `diffsde run --resume`: the same metric rows,
    checkpoint bytes, samples and evaluation. The run stores the method's own metric columns,
    samples with its Tweedie score (sample mean within 0.05 of μ, std within 0.05 of σ) and
    evaluates with it.
    Mutation: resuming without loading the checkpoint's method state (the method's initial
    state with the checkpoint's step) makes this fail."""
    spec = _spec(tmp_path, 300)
    assert main(["run", str(spec), "--runs-dir", str(tmp_path / "a"), "-q"]) == 0
    straight = diffsde.runs.open_run(_only_run(tmp_path / "a"))
    assert straight.status == "completed" and straight.checkpoint_step == 300
    assert list(straight.metrics) == ["step", "wall_time", "loss", "grad_norm", "variance"]
    np.testing.assert_array_equal(straight.metrics["step"], np.arange(1, 301))
    np.testing.assert_allclose(straight.metrics["variance"][-1], STD**2, atol=0.03)
    samples = straight.samples["samples"]
    np.testing.assert_allclose(samples.mean(axis=0), MEAN, atol=0.05)
    np.testing.assert_allclose(samples.std(axis=0), STD, atol=0.05)
    assert straight.eval["mean_error"] < 0.05

    with monkeypatch.context() as patch:
        _stop_at_dispatch(patch, 5)
        assert main(["run", str(spec), "--runs-dir", str(tmp_path / "b"), "-q"]) != 0
    path = _only_run(tmp_path / "b")
    stopped = diffsde.runs.open_run(path)
    assert stopped.status == "stopped" and stopped.checkpoint_step == 125, stopped.message
    assert len(stopped.metrics["step"]) == 125 and stopped.eval == {}

    assert main(["run", "--resume", str(path), "-q"]) == 0
    resumed = diffsde.runs.open_run(path)
    assert resumed.status == "completed"
    for name in straight.metrics:
        if name != "wall_time":
            np.testing.assert_array_equal(resumed.metrics[name], straight.metrics[name])
    assert (path / "checkpoint.eqx").read_bytes() == (straight.path / "checkpoint.eqx").read_bytes()
    np.testing.assert_array_equal(resumed.samples["samples"], samples)
    assert resumed.eval == straight.eval


def test_a_diverging_method_fails_the_run_at_its_first_non_finite_loss(tmp_path):
    """AdamW at a learning rate of 1000 without warm-up: the parameters jump by ~1000 a step
    and the loss overflows within a few steps; the run is `failed` at that step, its row kept,
    every earlier row kept and finite.
    Mutation: dropping the first non-finite row (``keep = bad[0]`` in ``_run._train``) makes
    this fail."""
    spec = _spec(tmp_path, 100, learning_rate=1000.0, warmup_steps=0)
    assert main(["run", str(spec), "--runs-dir", str(tmp_path / "runs"), "-q"]) == 1
    record = diffsde.runs.open_run(_only_run(tmp_path / "runs"))
    loss = record.metrics["loss"]
    assert record.status == "failed" and f"at step {len(loss)}" in record.message
    assert len(loss) < 100 and not np.isfinite(loss[-1]) and np.isfinite(loss[:-1]).all()
    assert record.failed_step == len(loss) and record.eval == {}


class NoLoss(GaussianDenoiser):
    metric_names: ClassVar[tuple[str, ...]] = ("grad_norm",)


class StepMetric(GaussianDenoiser):
    metric_names: ClassVar[tuple[str, ...]] = ("loss", "step")


class WrongMetrics(GaussianDenoiser):
    metric_names: ClassVar[tuple[str, ...]] = ("loss", "grad_norm")


def test_the_trainer_refuses_methods_whose_metrics_it_cannot_store():
    """A method without a ``loss``, one naming the trainer's own ``step``, and one whose step
    returns other metrics than it declares are errors that say what to change."""
    setup = _setup(10)
    kwargs = dict(steps=10, batch_size=8, steps_per_dispatch=5)
    with pytest.raises(ValueError, match="must contain 'loss'"):
        Trainer(NoLoss(setup.sde, optax.sgd(0.1), dim=2), setup.data, jr.key(0), **kwargs)
    with pytest.raises(ValueError, match=r"not \['step', 'wall_time'\].*rename \['step'\]"):
        Trainer(StepMetric(setup.sde, optax.sgd(0.1), dim=2), setup.data, jr.key(0), **kwargs)
    wrong = WrongMetrics(setup.sde, optax.sgd(0.1), dim=2)
    trainer = Trainer(wrong, setup.data, jr.key(0), **kwargs)
    with pytest.raises(ValueError, match=r"returned metrics \['grad_norm', 'loss', 'variance'\]"):
        trainer.run_chunk(trainer.init(key=jr.key(0)))


def test_the_likelihood_of_a_run_trained_by_the_second_method_is_the_datas(tmp_path):
    """`diffsde eval --likelihood` on a run of the method goes through its sampling model: the
    NLL of N(μ, σ² I) in nats per dimension is ½ log(2πe σ²) = 0.7258; over the 1000 held-out
    points its standard error is 0.5/√1000 ≈ 0.016 (bound 0.05).
    Mutation: Tweedie's score divided by σ_t instead of σ_t² makes this fail."""
    spec = _spec(tmp_path, 300)
    assert main(["run", str(spec), "--runs-dir", str(tmp_path / "runs"), "-q"]) == 0
    values, nfe = likelihood_run(_only_run(tmp_path / "runs"), n=1000)
    expected = 0.5 * np.log(2 * np.pi * np.e * STD**2)
    assert abs(values["nll"] - expected) < 0.05, (values, expected)
    assert nfe > 0
