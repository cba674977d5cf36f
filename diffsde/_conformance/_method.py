"""Conformance checks of a training method, stepped by the public :class:`diffsde.training.Trainer`
exactly as a run steps it.

Its ``metric_names`` are what the trainer accepts; ``init`` gives a state whose structure,
shapes and dtypes do not depend on the key; a step keeps them, reports exactly its metrics as
finite scalars and is deterministic (two runs of the same chunk from the same state are equal
bit for bit, which resume relies on); and training improves what it samples with: the exact-score
error of ``sampling_model`` against the data's exact score falls below a stated fraction of its
initial value.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._data import exact_score
from .._methods import AbstractTrainingMethod
from .._sde._base import AbstractGaussianSDE
from .._train import Trainer
from ._objective import TRAINED_FRACTION
from ._report import CheckResult, failed, guarded, measured, passed, skipped
from ._sampler import exact_at


def _layout(tree) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, [(jnp.shape(x), jnp.result_type(x)) for x in leaves]


def _score_error(model, data, sde, key, n: int = 2048) -> float:
    """E_t E_{x~p_t} |s − ∇ log p_t|² / E|∇ log p_t|², t on 16 points of [0.05 T, T]."""
    score = exact_score(data, sde)
    errs, sizes = [], []
    for i, t in enumerate(jnp.linspace(0.05 * sde.T, sde.T, 16)):
        xt = exact_at(data, sde, t, n, jr.fold_in(key, i))
        exact = jax.vmap(lambda x: score(x, t))(xt)
        learned = jax.vmap(lambda x: model(x, t))(xt)
        errs.append(jnp.mean(jnp.sum((learned - exact) ** 2, -1)))
        sizes.append(jnp.mean(jnp.sum(exact**2, -1)))
    return float(sum(errs) / sum(sizes))


def structure(method: AbstractTrainingMethod, data, seed: int) -> list[CheckResult]:
    trainer = Trainer(method, data, jr.key(seed), steps=2, batch_size=64, steps_per_dispatch=1)
    a, b = trainer.init(key=jr.key(0)), trainer.init(key=jr.key(1))
    results = [
        passed("init", "the state's structure, shapes and dtypes do not depend on the key")
        if _layout(a) == _layout(b)
        else failed("init", "init(key) gives states of different structure for two keys")
    ]
    one, rows = trainer.run_chunk(a, 1)
    again, rows_again = trainer.run_chunk(a, 1)
    results.append(
        passed("step keeps the state", "a step keeps the state's structure, shapes and dtypes")
        if _layout(one) == _layout(a)
        else failed("step keeps the state", "a step changes the state's structure or shapes")
    )
    values = {k: float(v[0]) for k, v in rows.items()}
    bad = sorted(k for k, v in values.items() if not np.isfinite(v))
    results.append(
        failed("metrics", f"non-finite metrics {bad} after one step")
        if bad
        else passed("metrics", f"one finite scalar each: {', '.join(method.metric_names)}")
    )
    same = all(
        bool(jnp.all(x == y)) for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(again))
    ) and all(bool(jnp.all(rows[k] == rows_again[k])) for k in rows)
    results.append(
        passed(
            "determinism", "the same chunk from the same state gives the same state, bit for bit"
        )
        if same
        else failed("determinism", "two runs of the same step from the same state differ")
    )
    return results


def trains(method: AbstractTrainingMethod, data, sde, steps: int, seed: int) -> CheckResult:
    name = "trains"
    if not isinstance(sde, AbstractGaussianSDE) or exact_score(data, sde) is None:
        return skipped(name, "the data's exact score under the SDE is unknown")
    trainer = Trainer(
        method, data, jr.key(seed), steps=steps, batch_size=256, steps_per_dispatch=100
    )
    state = trainer.init(key=jr.key(seed))
    key = jr.key(seed + 1)
    before = _score_error(trainer.sampling_model(state), data, sde, key)
    while int(state.step) < steps:
        state, _ = trainer.run_chunk(state, trainer.chunk_length(state))
    after = _score_error(trainer.sampling_model(state), data, sde, key)
    return measured(
        name,
        f"relative exact-score error of sampling_model after {steps} steps of 256: "
        f"{before:.3g} → {after:.3g}, ratio",
        after / before,
        TRAINED_FRACTION,
        "of initial",
    )


def check_method(
    method: AbstractTrainingMethod, data, sde, *, steps: int = 600, seed: int = 0
) -> list[CheckResult]:
    """Every check of ``method`` on ``data`` under ``sde``; ``steps`` of training."""
    results = guarded("structure", structure, method, data, seed)
    if all(r.passed for r in results):
        results += guarded("trains", trains, method, data, sde, steps, seed)
    return results
