"""The spec layer's training objects: the optimiser and the built-in method from ``training:``.

The core (``diffsde._train``, ``diffsde._methods``) takes optax objects and plain numbers; this
is where the spec's ``TrainingConfig`` becomes them.
"""

import optax
from jaxtyping import PyTree

from .._methods import ScoreMatching
from .._objective import AbstractObjective
from ._model import TrainingConfig


def optimizer(config: TrainingConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW on a warm-up + cosine-decay schedule, after global-norm clipping; the schedule is
    returned too (the ``lr`` metric reports it)."""
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


def score_matching(
    config: TrainingConfig, objective: AbstractObjective, model: PyTree
) -> ScoreMatching:
    """The built-in method for ``model`` with the spec's objective and ``training:`` settings."""
    tx, schedule = optimizer(config)
    return ScoreMatching(
        model=model,
        objective=objective,
        optimizer=tx,
        schedule=schedule,
        ema_decay=config.ema_decay,
    )
