"""A fixed-step sampler: Heun's method on the probability-flow ODE, by hand (entry point
example_sampler).

dx/dt = b(t, x) − ½ g(t)² s(x, t) is integrated from T down to ε on ``steps`` uniform steps;
each step costs two score evaluations of the batch, so NFE = 2·steps. Heun's method is a
second-order Runge–Kutta method, so the error at ε of the ODE's solution falls as h² in the step
h = (T − ε)/steps: the declared ``order`` 2, which ``diffsde check`` fits through
``with_steps`` (the default one, which replaces the field ``steps``).
"""

from typing import Annotated, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import pydantic

import diffsde


class HeunODE(diffsde.AbstractSampler):
    """Heun's method on the probability-flow ODE, written by hand: `steps` uniform steps."""

    tag: ClassVar[str] = "heun_by_hand"
    order: ClassVar[float] = 2.0  # global error ∝ h², h the step
    # static: they set the grid's length and the scan, which must be known when tracing
    steps: Annotated[int, pydantic.Field(gt=0)] = eqx.field(static=True, default=50)
    eps: Annotated[float, pydantic.Field(gt=0)] = eqx.field(static=True, default=1e-3)

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None):
        del key  # deterministic
        if save_ts is not None:
            raise ValueError("heun_by_hand records no trajectory: call it without save_ts")
        self.check_sde(sde)  # eps < T, said once by diffsde.AbstractSampler
        if condition is None:
            field = jax.vmap(sde.probability_flow(score), in_axes=(None, 0))
        else:  # row i's score given row i's condition (ignored by an unconditional score)
            rows = jax.vmap(
                lambda t, x, c: sde.probability_flow(diffsde.bind_condition(score, c))(t, x),
                in_axes=(None, 0, 0),
            )

            def field(t, x):
                return rows(t, x, condition)

        ts = jnp.linspace(sde.T, self.eps, self.steps + 1)

        def step(x, times):
            t, s = times
            k1 = field(t, x)
            k2 = field(s, x + (s - t) * k1)
            return x + (s - t) * (k1 + k2) / 2, None

        x, _ = jax.lax.scan(step, x_T, (ts[:-1], ts[1:]))
        return diffsde.Samples(x, jnp.asarray(2 * self.steps, jnp.int32))


@diffsde.hookimpl
def register_samplers(register):
    register(HeunODE)
