"""What the fast sampling loop (issue 12, item 4) must keep: the fixed-step samplers run as a
``lax.scan`` over the grid instead of diffrax's ``diffeqsolve`` on ``StepTo``, and ``sample``
skips work for a single chunk and folds the chunk index into the key inside the jitted call.

- the same samples as diffrax's loop (the implementation before the change, written out here)
  to float32 round-off: every explicit PF-ODE solver on uniform and non-uniform grids, and
  Euler–Maruyama (the same UnsafeBrownianPath draws);
- the NFE as before (euler steps, heun 2·steps, rk4 4·steps, tsit5 1 + 6·steps);
- compile once: chunks share one compilation, and so does a second call with a new score model
  of the same structure (other parameter values), counted with a jax.monitoring listener.
"""

import contextlib
import logging

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsde
from diffsde._sampler import _flat_reverse_terms

DIM = 3
SDE = diffsde.VP(DIM)
MIXTURE = diffsde.GaussianMixture([0.3, 0.7], [[-1.5, 0.5, 0.0], [1.0, -0.5, 0.3]], [0.4, 0.6])


def _mixture_score(mixture, sde, x, t):
    return mixture.score(x, t, sde)


SCORE = jax.tree_util.Partial(_mixture_score, MIXTURE, SDE)
X_T = jr.normal(jr.key(0), (50, DIM))


def _diffrax_pf_ode(sampler, sde, score, x_T):
    """ProbabilityFlow.sample_from before the change: diffeqsolve on StepTo(grid)."""
    field = jax.vmap(sde.probability_flow(score), in_axes=(None, 0))
    term = diffrax.ODETerm(lambda t, y, args: field(t, y.reshape(x_T.shape)).reshape(-1))
    controller = sampler.controller
    ts = controller.grid.times(sde, sampler.eps, controller.steps)
    sol = diffrax.diffeqsolve(
        term,
        sampler.solver.solver(),
        t0=sde.T,
        t1=sampler.eps,
        dt0=None,
        y0=x_T.reshape(-1),
        stepsize_controller=diffrax.StepTo(ts),
        max_steps=controller.steps,
    )
    nfe = sampler.solver.init + sampler.solver.per_step * sol.stats["num_steps"]
    return sol.ys[-1].reshape(x_T.shape), nfe


def _diffrax_euler_maruyama(sampler, sde, score, x_T, key):
    """EulerMaruyama.sample_from before the change: diffrax's Euler on StepTo."""
    brownian = diffrax.UnsafeBrownianPath(shape=(x_T.size,), key=key)
    sol = diffrax.diffeqsolve(
        _flat_reverse_terms(sde, score, x_T.shape, brownian),
        diffrax.Euler(),
        t0=0.0,
        t1=sde.T - sampler.eps,
        dt0=None,
        y0=x_T.reshape(-1),
        stepsize_controller=diffrax.StepTo(sde.T - sampler.times(sde)),
        max_steps=sampler.steps,
        adjoint=diffrax.ForwardMode(),
    )
    return sol.ys[-1].reshape(x_T.shape)


SOLVERS = [diffsde.Euler, diffsde.Heun, diffsde.ClassicalRK4, diffsde.Tsit5, diffsde.Dopri5]


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.tag)
@pytest.mark.parametrize("grid", ["uniform", "quadratic"])
def test_fixed_step_pf_ode_gives_the_samples_and_nfe_of_diffrax(solver, grid):
    """The scan over the solver's Butcher tableau is diffrax's update, and its NFE is the
    number of score evaluations. Mutation (each done): a wrong stage node (t + h instead of
    t + c h), dropping FSAL's reuse (tsit5 then evaluates 7·steps times), or the weights
    b − b_error instead of b make this fail."""
    grids = {"uniform": diffsde.UniformGrid(), "quadratic": diffsde.QuadraticGrid()}
    controller = diffsde.FixedSteps(steps=7, grid=grids[grid])
    sampler = diffsde.ProbabilityFlow(solver=solver(), controller=controller)
    out = diffsde.sample(sampler, SDE, SCORE, X_T, key=jr.key(1))
    expected, nfe = eqx.filter_jit(_diffrax_pf_ode)(sampler, SDE, SCORE, X_T)
    np.testing.assert_allclose(out.x, expected, rtol=1e-5, atol=2e-5)
    assert int(out.nfe) == int(nfe) == solver.init + solver.per_step * 7
    assert _counted_nfe(sampler) == int(out.nfe)


def _counted_nfe(sampler, rows=4):
    """Evaluations of the batched score, counted by a callback in the score of one row."""
    calls = []

    def score(x, t):
        jax.debug.callback(lambda _: calls.append(1), x)
        return MIXTURE.score(x, t, SDE)

    out = diffsde.sample(sampler, SDE, score, X_T[:rows], key=jr.key(0))
    jax.block_until_ready(out.x)
    jax.effects_barrier()
    return len(calls) // rows


@pytest.mark.parametrize("grid", ["uniform", "quadratic"])
def test_euler_maruyama_gives_the_samples_of_diffrax(grid):
    """Same Brownian increments, same update. Mutation (done): evaluating the drift at
    u_next makes this fail."""
    grids = {"uniform": diffsde.UniformGrid(), "quadratic": diffsde.QuadraticGrid()}
    sampler = diffsde.EulerMaruyama(steps=9, grid=grids[grid])
    key = jr.key(3)
    out = diffsde.sample(sampler, SDE, SCORE, X_T, key=key)
    expected = eqx.filter_jit(_diffrax_euler_maruyama)(sampler, SDE, SCORE, X_T, jr.fold_in(key, 0))
    np.testing.assert_allclose(out.x, expected, rtol=1e-5, atol=2e-5)
    assert int(out.nfe) == 9


def test_chunks_give_the_samples_of_one_chunk():
    """Deterministic samplers: chunking (with a padded last chunk) changes nothing, and the
    key of chunk i is fold_in(key, i) for the stochastic ones. Mutation (done): folding in a
    constant index makes the second part fail."""
    sampler = diffsde.ProbabilityFlow(solver=diffsde.Heun(), controller=diffsde.FixedSteps(5))
    whole = diffsde.sample(sampler, SDE, SCORE, X_T, key=jr.key(0))
    chunked = diffsde.sample(sampler, SDE, SCORE, X_T, key=jr.key(0), chunk_size=16)
    np.testing.assert_allclose(chunked.x, whole.x, rtol=1e-6, atol=1e-6)
    assert int(chunked.nfe) == int(whole.nfe) == 10
    em = diffsde.EulerMaruyama(steps=4)
    chunked = diffsde.sample(em, SDE, SCORE, X_T, key=jr.key(5), chunk_size=20)
    run = eqx.filter_jit(lambda x, key: em.sample_from(SDE, SCORE, x, key=key).x)
    for i, start in enumerate(range(0, 50, 20)):
        rows = X_T[start : start + 20]
        padded = rows[np.arange(20) % len(rows)]  # the last chunk is padded to 20 rows
        alone = run(padded, jr.fold_in(jr.key(5), i))
        np.testing.assert_allclose(
            chunked.x[start : start + 20], alone[: len(rows)], rtol=1e-6, atol=1e-6
        )


class _Compilations(logging.Handler):
    """Counts XLA compilations (jax.log_compiles messages), all and those of one function."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Compiling "):
            self.names.append(message.split()[1])


@contextlib.contextmanager
def _count_compilations():
    handler = _Compilations()
    logger = logging.getLogger("jax._src.interpreters.pxla")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield handler.names
    finally:
        logger.removeHandler(handler)


SAMPLERS = {
    "pf_ode heun": diffsde.ProbabilityFlow(solver=diffsde.Heun(), controller=diffsde.FixedSteps(4)),
    "pf_ode tsit5 fixed": diffsde.ProbabilityFlow(
        solver=diffsde.Tsit5(), controller=diffsde.FixedSteps(4)
    ),
    "euler_maruyama": diffsde.EulerMaruyama(steps=4),
    "exponential": diffsde.ExponentialIntegrator(steps=4),
    "pc": diffsde.PredictorCorrector(steps=4),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_sample_compiles_once_across_chunks_and_score_models(name):
    """Three chunks (the last padded) compile the chunk function once, and a second call with
    a new score model of the same structure (another mixture: other means, stds and weights,
    passed as a pytree) compiles nothing at all. Mutation (done): passing the chunk index as a
    Python int (static under filter_jit, one compilation per chunk) makes this fail."""
    sampler = SAMPLERS[name]
    x_T = jr.normal(jr.key(7), (45, DIM))
    other = diffsde.GaussianMixture([0.5, 0.5], [[1.0, 1.0, 0.0], [-1.0, 0.0, 2.0]], [0.3, 0.5])
    new_score = jax.tree_util.Partial(_mixture_score, other, SDE)
    with _count_compilations() as compiles:
        first = diffsde.sample(sampler, SDE, SCORE, x_T, key=jr.key(1), chunk_size=16)
        jax.block_until_ready(first.x)
    assert compiles.count("jit(_sample_chunk)") == 1, compiles
    with _count_compilations() as compiles:
        second = diffsde.sample(sampler, SDE, new_score, x_T, key=jr.key(2), chunk_size=16)
        jax.block_until_ready(second.x)
    assert compiles == [], compiles
    assert not np.allclose(first.x, second.x)  # the new model was used


def test_trajectory_of_the_scan_interpolates_the_grid_states():
    """A trajectory at grid nodes is the scan's state there (T, the middle node, ε), and
    between nodes the linear interpolation of its neighbours. Mutation (done): recording the
    state before the step (off by one node) makes this fail."""
    steps = 4
    sampler = diffsde.ProbabilityFlow(solver=diffsde.Heun(), controller=diffsde.FixedSteps(steps))
    ts = np.asarray(diffsde.UniformGrid().times(SDE, sampler.eps, steps))
    save = jnp.asarray([ts[0], ts[2], 0.5 * (ts[2] + ts[3]), ts[4]], jnp.float32)
    out = diffsde.sample(sampler, SDE, SCORE, X_T, key=jr.key(0), save_ts=save)
    np.testing.assert_allclose(out.trajectory[0], X_T, atol=1e-6)
    np.testing.assert_allclose(out.trajectory[-1], out.x, atol=1e-6)
    mid = out.trajectory[1]  # the state at ts[2]; the rest of the run restarts from it
    rest = diffsde._sampler._runge_kutta_scan(
        jax.vmap(SDE.probability_flow(SCORE), in_axes=(None, 0)),
        diffsde._sampler._explicit_stages(diffrax.Heun()),
        mid,
        jnp.asarray(ts[2:]),
        jnp.asarray([ts[3]], jnp.float32),
    )
    np.testing.assert_allclose(rest[0], out.x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.trajectory[2], 0.5 * (mid + rest[1][0]), rtol=1e-5, atol=1e-5)
