"""The spec layer's training objects: the optimiser from ``training:``, and the training method
of ``method:`` built with its context.

The core (``diffsde._train``, ``diffsde._methods``) takes optax objects and plain numbers; this
is where the spec's ``TrainingConfig`` becomes them.
"""

import inspect

import optax
from jaxtyping import PyTree

from .._component import parameters
from .._data import AbstractDataset
from .._methods import AbstractTrainingMethod, ScoreMatching
from .._objective import AbstractObjective
from .._plugins import get_registry
from .._prior import AbstractPrior
from .._sde._base import AbstractSDE
from ._model import SpecBase, TrainingConfig


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


def method_requires(spec: SpecBase, name: str) -> bool:
    """Whether the spec's training method needs the context value ``name`` (e.g. an
    ``objective``): a context parameter of its class without a default."""
    if spec.method is None:
        return name in ("model", "objective")  # score matching's
    cls = get_registry().get("method", spec.method.type).cls
    return any(
        p.name == name and p.context and p.default is inspect.Parameter.empty
        for p in parameters(cls, "method")
    )


def build_method(
    spec: SpecBase,
    model: PyTree,
    objective: AbstractObjective | None,
    *,
    sde: AbstractSDE,
    data: AbstractDataset,
    prior: AbstractPrior,
) -> AbstractTrainingMethod:
    """The spec's ``method:`` (score matching if it has none) with its context: the model, the
    objective, the optimiser and schedule of ``training:``, its ``ema_decay``, the SDE, data,
    prior and dimension; a method takes the ones its constructor names."""
    if spec.method is None:
        return score_matching(spec.training, objective, model)
    tx, schedule = optimizer(spec.training)
    return spec.method.build(
        model=model,
        objective=objective,
        optimizer=tx,
        schedule=schedule,
        ema_decay=spec.training.ema_decay,
        sde=sde,
        data=data,
        prior=prior,
        dim=data.dim,
    )
