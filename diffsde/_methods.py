"""Training methods: what one training step does, behind one interface.

A training method owns its train state (a pytree: parameters, optimiser state, averages, a
target network, …), its step and its metrics; the trainer (``diffsde._train``) owns the loop
around it: the step counter, per-step randomness (``fold_in(key, step)``), the data batch,
chunking into ``lax.scan`` dispatches, and, in ``diffsde._run``, checkpoints, bit-for-bit
resume, the NaN stop, SIGTERM, progress and the metric rows of the run store. A new method
(consistency training, distillation, a fine-tuning scheme) is one subclass of
:class:`AbstractTrainingMethod` and gets all of that unchanged.

Score matching (:class:`ScoreMatching`) is the built-in method: an objective's loss, an optax
optimiser, and an exponential moving average of the parameters that is the model it samples with.
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from ._data import split_batch
from ._frozen import FrozenModel
from ._objective import AbstractObjective
from ._sde._base import AbstractSDE

RESERVED_METRICS = ("step", "wall_time")
"""Metric columns the trainer writes itself: a method may not report them."""


class AbstractTrainingMethod(eqx.Module):
    """One way of training a model, stepped by the trainer inside ``lax.scan``.

    ``metric_names``: the scalar metrics :meth:`step` reports, in the order the run stores
    them. It must contain ``"loss"``: the trainer stops a run whose loss is not finite, and the
    progress line and the dashboard show it. ``"lr"`` and ``"grad_norm"`` are plotted by the
    dashboard when a method reports them.

    A method's constructor parameters are its spec section: the numbers a user sets, plus
    context the pipeline fills (the model to train, the objective, the optimiser, …).
    """

    metric_names: eqx.AbstractClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def init(self, *, key: PRNGKeyArray) -> PyTree:
        """The train state before the first step: every array that changes during training and
        must be checkpointed (a pytree of arrays; its structure must not depend on the key)."""

    @abc.abstractmethod
    def step(
        self, state: PyTree, batch: PyTree, *, step: Int[Array, ""], key: PRNGKeyArray
    ) -> tuple[PyTree, dict[str, Float[Array, ""]]]:
        """One training step on ``batch`` (``batch_size`` points of the dataset, or, for data
        with conditions, a ``ConditionedBatch``: see ``diffsde._data.split_batch``): the new state
        (same structure, shapes and dtypes) and the scalar metrics named in ``metric_names``.
        ``step`` is the number of steps taken before this one; ``key`` is this step's own key.
        Traced once by ``jax.lax.scan``: no Python side effects, no host round trips."""

    @abc.abstractmethod
    def sampling_model(self, state: PyTree) -> PyTree:
        """The model the samplers and metrics use after training (a score ``model(x, t)`` for
        the built-in samplers), from ``state``."""


def trainable(model: PyTree) -> PyTree:
    """Filter spec of the trainable leaves: floating arrays, except inside an SDE the model
    holds (its schedule or numerically solved kernel is not a parameter) or another run's
    :class:`~diffsde.FrozenModel` (lineage)."""

    def mark(node):
        if isinstance(node, AbstractSDE | FrozenModel):
            return jtu.tree_map(lambda _: False, node)
        return eqx.is_inexact_array(node)

    return jtu.tree_map(mark, model, is_leaf=lambda n: isinstance(n, AbstractSDE | FrozenModel))


def ema_update(average: PyTree, params: PyTree, step: Int[Array, ""], decay: float) -> PyTree:
    """An exponential moving average with warm-up: rate ``min(decay, (1 + n)/(10 + n))`` after
    step ``n``, so early averages are not dominated by the random initialisation (which a plain
    0.999 would keep for thousands of steps)."""
    n = step.astype(jnp.float32)
    rate = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
    return optax.incremental_update(params, average, step_size=1.0 - rate)


class ScoreMatchingState(eqx.Module):
    """The parameters, their EMA and the optimiser state (what a checkpoint holds)."""

    params: PyTree
    ema: PyTree
    opt_state: PyTree


class ScoreMatching(AbstractTrainingMethod):
    """Minimise ``objective.loss`` with ``optimizer``; sample with the parameters' EMA.

    Everything here is context the pipeline fills: ``model`` (its trainable leaves, see
    :func:`trainable`, are trained; the rest is kept as it is), ``objective``, ``optimizer`` and
    ``schedule`` (its learning rate, reported as the ``lr`` metric; the optimiser uses its own
    copy), and ``ema_decay`` (see :func:`ema_update`).
    """

    tag: ClassVar[str] = "score_matching"
    metric_names: ClassVar[tuple[str, ...]] = ("loss", "lr", "grad_norm")

    model: PyTree
    objective: AbstractObjective
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    ema_decay: float

    def __check_init__(self):
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay is {self.ema_decay}; give a number in [0, 1).")

    def _split(self) -> tuple[PyTree, PyTree]:
        return eqx.partition(self.model, trainable(self.model))

    def init(self, *, key: PRNGKeyArray) -> ScoreMatchingState:
        del key
        params, _ = self._split()
        return ScoreMatchingState(params, params, self.optimizer.init(params))

    def _combine(self, params: PyTree) -> PyTree:
        return eqx.combine(params, self._split()[1])

    def step(
        self,
        state: ScoreMatchingState,
        batch: PyTree,
        *,
        step: Int[Array, ""],
        key: PRNGKeyArray,
    ) -> tuple[ScoreMatchingState, dict[str, Float[Array, ""]]]:
        x0, condition = split_batch(batch)  # condition: None unless the data yield one

        def loss_of(params):
            model = self._combine(params)
            if condition is None:
                return self.objective.loss(model, x0, key=key)
            return self.objective.loss(model, x0, key=key, condition=condition)

        loss, grads = eqx.filter_value_and_grad(loss_of)(state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = eqx.apply_updates(state.params, updates)
        ema = ema_update(state.ema, params, step, self.ema_decay)
        metrics = {
            "loss": loss,
            "lr": jnp.asarray(self.schedule(step), jnp.float32),
            "grad_norm": optax.tree.norm(grads),
        }
        return ScoreMatchingState(params, ema, opt_state), metrics

    def sampling_model(self, state: ScoreMatchingState) -> PyTree:
        return self._combine(state.ema)

    def raw_model(self, state: ScoreMatchingState) -> PyTree:
        """The model with the last parameters (not their average)."""
        return self._combine(state.params)
