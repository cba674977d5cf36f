"""Training a score model: optax AdamW with warm-up, clipping and cosine decay, parameter EMA,
several steps per dispatch with ``lax.scan``, compiled once.

Randomness is per step (``fold_in(key, step)``), so a run resumed from a checkpoint, or run with
a different ``steps_per_dispatch``, takes exactly the same steps.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import optax
from jaxtyping import Array, Int, PRNGKeyArray, PyTree

from ._data import AbstractDataset
from ._objective import AbstractObjective
from ._sde._base import AbstractSDE
from ._spec._model import TrainingConfig

METRICS = ("step", "loss", "lr", "grad_norm")


def trainable(model: PyTree) -> PyTree:
    """Filter spec of the trainable leaves: floating arrays, except inside an SDE the model
    holds (its schedule or numerically solved kernel is not a parameter)."""

    def mark(node):
        if isinstance(node, AbstractSDE):
            return jtu.tree_map(lambda _: False, node)
        return eqx.is_inexact_array(node)

    return jtu.tree_map(mark, model, is_leaf=lambda n: isinstance(n, AbstractSDE))


class TrainState(eqx.Module):
    """Everything that changes during training (what a checkpoint holds)."""

    step: Int[Array, ""]
    params: PyTree
    ema: PyTree
    opt_state: PyTree


def optimizer(config: TrainingConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW on a warm-up + cosine-decay schedule, after global-norm clipping."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=max(config.steps, config.warmup_steps + 1),
        end_value=config.learning_rate * 1e-2,
    )
    parts = [optax.clip_by_global_norm(config.grad_clip)] if config.grad_clip else []
    parts.append(optax.adamw(schedule, weight_decay=config.weight_decay))
    return optax.chain(*parts), schedule


class Trainer(eqx.Module):
    """Runs chunks of ``steps_per_dispatch`` training steps of ``objective`` on ``dataset``."""

    config: TrainingConfig = eqx.field(static=True)
    objective: AbstractObjective
    dataset: AbstractDataset
    static: PyTree
    key: PRNGKeyArray

    @classmethod
    def create(
        cls,
        config: TrainingConfig,
        objective: AbstractObjective,
        dataset: AbstractDataset,
        model: PyTree,
        *,
        key: PRNGKeyArray,
    ) -> tuple["Trainer", TrainState]:
        """The trainer and the initial state for ``model``."""
        params, static = eqx.partition(model, trainable(model))
        trainer = cls(config, objective, dataset, static, key)
        opt, _ = optimizer(config)
        state = TrainState(jnp.zeros((), jnp.int32), params, params, opt.init(params))
        return trainer, state

    def model(self, params: PyTree) -> PyTree:
        return eqx.combine(params, self.static)

    @eqx.filter_jit
    def run_chunk(
        self, state: TrainState, length: int | None = None
    ) -> tuple[TrainState, dict[str, Array]]:
        """``length`` steps (default ``steps_per_dispatch``) in one dispatch. ``length`` is
        static: every full chunk reuses one compilation; a shorter last chunk compiles once."""
        opt, schedule = optimizer(self.config)
        decay = self.config.ema_decay

        def loss_of(params, x0, key):
            return self.objective.loss(self.model(params), x0, key=key)

        def one_step(state: TrainState, _):
            key = jr.fold_in(self.key, state.step)
            data_key, loss_key = jr.split(key)
            x0 = self.dataset.sample(key=data_key, n=self.config.batch_size)
            loss, grads = eqx.filter_value_and_grad(loss_of)(state.params, x0, loss_key)
            updates, opt_state = opt.update(grads, state.opt_state, state.params)
            params = eqx.apply_updates(state.params, updates)
            # EMA with warm-up, min(decay, (1 + n)/(10 + n)): early averages are not dominated by
            # the random initialisation (which a plain 0.999 would keep for thousands of steps)
            n = state.step.astype(jnp.float32)
            rate = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
            ema = optax.incremental_update(params, state.ema, step_size=1.0 - rate)
            new = TrainState(state.step + 1, params, ema, opt_state)
            row = {
                "step": (state.step + 1).astype(jnp.float32),
                "loss": loss,
                "lr": jnp.asarray(schedule(state.step), jnp.float32),
                "grad_norm": optax.tree.norm(grads),
            }
            return new, row

        length = self.config.steps_per_dispatch if length is None else length
        return jax.lax.scan(one_step, state, None, length=length)

    def chunk_length(self, state: TrainState) -> int:
        """Steps of the next dispatch: ``steps_per_dispatch``, or what is left of the budget."""
        return min(self.config.steps_per_dispatch, self.config.steps - int(state.step))
