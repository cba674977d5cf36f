"""A trained model of another run, frozen: the core type that components annotate a parameter
with (the spec layer resolves the run, see ``diffsde._lineage``)."""

from typing import Any

import equinox as eqx
import jax
from jaxtyping import PyTree


class FrozenModel(eqx.Module):
    """A trained model of another run, frozen.

    Annotate a component's constructor parameter with ``FrozenModel``: its spec value is
    ``{run: RUN_ID_OR_PATH, checkpoint: ema|raw}`` and the component is built with that run's
    model (the one it samples with, or its raw parameters). Calling it calls the model with no
    gradient flowing into its parameters (``jax.lax.stop_gradient`` on every array leaf), while
    gradients with respect to the inputs pass (classifier guidance needs ∇ₓ). Training methods
    leave its leaves out of the trained ones (``diffsde._methods.trainable``).
    """

    model: PyTree
    run: str = eqx.field(static=True, default="")
    step: int = eqx.field(static=True, default=-1)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        arrays, rest = eqx.partition(self.model, eqx.is_inexact_array)
        return eqx.combine(jax.lax.stop_gradient(arrays), rest)(*args, **kwargs)
