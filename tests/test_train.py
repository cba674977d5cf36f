"""Training: compiles once, deterministic, chunking-invariant, and it learns the score."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np

import diffsde
from diffsde._methods import trainable
from diffsde._spec._model import TrainingConfig
from diffsde._spec._optim import score_matching
from diffsde._train import Trainer

SPEC = (
    "sde: {type: vp}\ndata: {type: gmm, dim: 2, components: 1, means: [[1.0, -1.0]], std: 0.5}\n"
    "model: {type: mlp, width: 32, depth: 2}\nobjective: {type: dsm}\n"
)


def _trainer(steps=60, per_dispatch=20, seed=1, **training):
    setup = diffsde.validate_text(SPEC)
    model = setup.spec.model.build(sde=setup.sde, key=jr.key(0))
    objective = setup.spec.objective.build(sde=setup.sde, data=setup.data)
    config = TrainingConfig(
        steps=steps, steps_per_dispatch=per_dispatch, batch_size=64, warmup_steps=5, **training
    )
    trainer = Trainer(
        score_matching(config, objective, model),
        setup.data,
        jr.key(seed),
        steps=steps,
        batch_size=64,
        steps_per_dispatch=per_dispatch,
    )
    return (trainer, trainer.init(key=jr.key(0))), setup


def _run(trainer, state, chunks):
    rows = []
    for _ in range(chunks):
        state, row = trainer.run_chunk(state)
        rows.append(row)
    return state, {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


def _leaves(tree):
    return [np.asarray(x) for x in jtu.tree_leaves(eqx.filter(tree, eqx.is_array))]


def test_no_recompilation_after_the_first_chunk(caplog):
    (trainer, state), _ = _trainer()
    state, _ = trainer.run_chunk(state)
    jax.block_until_ready(state)
    with jax.log_compiles(), caplog.at_level("DEBUG"):
        caplog.clear()
        state, _ = trainer.run_chunk(state)
        jax.block_until_ready(trainer.run_chunk(state))
    compiles = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    assert not compiles, compiles


def test_same_seed_same_parameters_and_chunking_does_not_matter():
    (a, sa), _ = _trainer(steps=60, per_dispatch=20)
    (b, sb), _ = _trainer(steps=60, per_dispatch=30)
    sa, rows_a = _run(a, sa, 3)
    sb, rows_b = _run(b, sb, 2)
    for x, y in zip(_leaves(sa.method.params), _leaves(sb.method.params), strict=True):
        np.testing.assert_array_equal(x, y)  # bit for bit
    np.testing.assert_array_equal(rows_a["loss"], rows_b["loss"])
    (c, sc), _ = _trainer(steps=60, per_dispatch=20, seed=2)
    sc, _ = _run(c, sc, 3)
    assert not np.array_equal(_leaves(sa.method.params.mlp)[0], _leaves(sc.method.params.mlp)[0])


def test_the_last_chunk_stops_at_the_budget():
    (trainer, state), _ = _trainer(steps=50, per_dispatch=20)
    lengths = []
    while int(state.step) < 50:
        lengths.append(trainer.chunk_length(state))
        state, rows = trainer.run_chunk(state, lengths[-1])
    assert lengths == [20, 20, 10] and int(state.step) == 50
    np.testing.assert_array_equal(rows["step"], np.arange(41, 51))


def test_the_sde_inside_the_model_is_not_trained():
    (trainer, state), setup = _trainer()
    spec = trainable(setup.spec.model.build(sde=setup.sde, key=jr.key(0)))
    assert not any(jtu.tree_leaves(spec.sde))
    assert any(jtu.tree_leaves(spec.mlp))


def test_learning_rate_warms_up_then_decays():
    (trainer, state), _ = _trainer(steps=60, per_dispatch=20, learning_rate=1e-2)
    _, rows = _run(trainer, state, 3)
    lr = np.asarray(rows["lr"])
    assert lr[0] == 0.0 and np.isclose(lr.max(), 1e-2, rtol=1e-3) and lr[-1] < lr.max() / 10


def test_training_learns_the_exact_score():
    # One Gaussian N(m, 0.25 I): its exact score under VP is known (GaussianMixture.score).
    # The exact-score error (weighted by σ_t², t ~ U[0.01, 1]) must drop well below its
    # value at initialisation; 600 steps of a small MLP take ~3 s on 2 cores.
    (trainer, state), setup = _trainer(steps=600, per_dispatch=200, ema_decay=0.9)
    data, sde = setup.data, setup.sde
    ts = jnp.linspace(0.01, 1.0, 16)

    def error(model):
        x0 = data.sample(key=jr.key(5), n=512)

        def at(t, key):
            xt, _ = jax.vmap(lambda x, k: sde.sample_marginal(t, x, key=k))(
                x0, jr.split(key, x0.shape[0])
            )
            diff = jax.vmap(model, (0, None))(xt, t) - jax.vmap(data.score, (0, None, None))(
                xt, t, sde
            )
            return sde.marginal_std(t) ** 2 * jnp.mean(jnp.sum(diff**2, -1))

        return float(jnp.mean(jax.vmap(at)(ts, jr.split(jr.key(6), ts.shape[0]))))

    before = error(trainer.method.raw_model(state.method))
    state, rows = _run(trainer, state, 3)
    after = error(trainer.method.raw_model(state.method))
    after_ema = error(trainer.sampling_model(state))
    assert after < 0.1 * before, (before, after)
    assert after_ema < 0.1 * before, (before, after_ema)
    assert np.isfinite(rows["loss"]).all()


def test_checkpoint_leaves_keep_their_order():
    """A checkpoint is the state's leaves in order (``eqx.tree_serialise_leaves``): the step,
    then the parameters, their EMA and the optimiser state, as before training methods existed,
    so runs saved by earlier versions still resume.
    Mutation: declaring ``ema`` before ``params`` in ScoreMatchingState makes this fail (they
    start equal, so the check runs after a chunk)."""
    (trainer, state), _ = _trainer()
    state, _ = trainer.run_chunk(state)
    inner = state.method
    expected = [state.step, *_leaves(inner.params), *_leaves(inner.ema), *_leaves(inner.opt_state)]
    got = _leaves(state)
    assert len(got) == len(expected)
    for x, y in zip(got, expected, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(_leaves(inner.params)[0], _leaves(inner.ema)[0])
