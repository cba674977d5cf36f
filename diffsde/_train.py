"""The training loop's numerical part: a training method stepped ``steps_per_dispatch`` times per
dispatch with ``lax.scan``, compiled once.

Randomness is per step (``fold_in(key, step)``, split into the batch's key and the method's), so
a run resumed from a checkpoint, or run with a different ``steps_per_dispatch``, takes exactly the
same steps. What a step does is the method's (``diffsde._methods``); the optimiser and its
schedule are built by the spec layer and reach the method as optax objects.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from ._data import AbstractDataset
from ._methods import RESERVED_METRICS, AbstractTrainingMethod


class TrainState(eqx.Module):
    """Everything that changes during training (what a checkpoint holds): the number of steps
    taken and the method's own state."""

    step: Int[Array, ""]
    method: PyTree


class Trainer(eqx.Module):
    """Runs chunks of ``steps_per_dispatch`` steps of ``method`` on batches of ``batch_size``
    points of ``dataset``, up to ``steps`` in all."""

    method: AbstractTrainingMethod
    dataset: AbstractDataset
    key: PRNGKeyArray
    steps: int = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    steps_per_dispatch: int = eqx.field(static=True)

    def __check_init__(self):
        for name in ("steps", "batch_size", "steps_per_dispatch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} is {value!r}; give a positive int.")
        names = self.method.metric_names
        method = type(self.method).__name__
        if "loss" not in names:
            raise ValueError(
                f"{method}.metric_names is {names}: it must contain 'loss' (the trainer stops "
                "on a non-finite loss and shows it); report the quantity the method minimises "
                "as 'loss'."
            )
        clash = [n for n in names if n in RESERVED_METRICS]
        if clash or len(set(names)) != len(names):
            raise ValueError(
                f"{method}.metric_names is {names}: names must be distinct and not "
                f"{list(RESERVED_METRICS)} (the trainer writes those); rename {clash or names}."
            )

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The columns of the rows :meth:`run_chunk` returns."""
        return ("step", *self.method.metric_names)

    def init(self, *, key: PRNGKeyArray) -> TrainState:
        """The state at step 0; ``key`` is the method's initialisation key (not a step's)."""
        return TrainState(jnp.zeros((), jnp.int32), self.method.init(key=key))

    def sampling_model(self, state: TrainState) -> PyTree:
        """The model to sample and evaluate with (the method's choice, e.g. the EMA)."""
        return self.method.sampling_model(state.method)

    @eqx.filter_jit
    def run_chunk(
        self, state: TrainState, length: int | None = None
    ) -> tuple[TrainState, dict[str, Float[Array, " length"]]]:
        """``length`` steps (default ``steps_per_dispatch``) in one dispatch. ``length`` is
        static: every full chunk reuses one compilation; a shorter last chunk compiles once."""

        def one_step(state: TrainState, _):
            key = jr.fold_in(self.key, state.step)
            data_key, step_key = jr.split(key)
            # the points, or a ConditionedBatch for data with conditions (diffsde._data)
            batch = self.dataset.batch(key=data_key, n=self.batch_size)
            inner, metrics = self.method.step(state.method, batch, step=state.step, key=step_key)
            if set(metrics) != set(self.method.metric_names):
                raise ValueError(
                    f"{type(self.method).__name__}.step returned metrics {sorted(metrics)}, "
                    f"but its metric_names are {list(self.method.metric_names)}; return "
                    "exactly those."
                )
            row = {"step": (state.step + 1).astype(jnp.float32)}
            for name in self.method.metric_names:
                value = jnp.asarray(metrics[name])
                if value.shape != ():
                    raise ValueError(
                        f"{type(self.method).__name__}.step returned metric {name!r} of shape "
                        f"{value.shape}; every metric is a scalar (reduce it, e.g. jnp.mean)."
                    )
                row[name] = value.astype(jnp.float32)
            return TrainState(state.step + 1, inner), row

        length = self.steps_per_dispatch if length is None else length
        return jax.lax.scan(one_step, state, None, length=length)

    def chunk_length(self, state: TrainState) -> int:
        """Steps of the next dispatch: ``steps_per_dispatch``, or what is left of the budget."""
        return min(self.steps_per_dispatch, self.steps - int(state.step))
