"""An SDE without a transition kernel, with a declared stationary law (entry point
example_sde_nokernel).

Overdamped Langevin dynamics dX = −∇U(X) dt + √2 dB in the separable double-well potential
U(x) = Σ_i (x_i⁴/4 − a x_i²/2), written in jnp. Its Fokker–Planck equation
∂p/∂t = ∇·(p∇U) + Δp has the stationary solution p_∞ = e^{−U}/Z (the flux p∇U + ∇p vanishes),
which is both the prior and the declared ``stationary_law``. The kernel is not Gaussian (the
drift is cubic), so this SDE is a plain ``AbstractSDE``: objectives that need a kernel are
refused at validation, and those that simulate x_t (``ssm``, ``ism``) train it.

The Gibbs law factorises over coordinates, p_∞(x) = Π_i e^{−u(x_i)}/z with u(y) = y⁴/4 − a y²/2,
so :class:`QuarticGibbs` samples it exactly by inverting the one-dimensional CDF, tabulated by
the trapezoid rule on a grid (error O(h²) in the grid step h = 10/4096), and normalises it by
the same quadrature.
"""

from typing import Annotated, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pydantic

import diffsde

HALF_WIDTH = 5.0  # e^{-u} < e^{-100} beyond |y| = 5 for a ≤ 4
GRID = 4097


def potential(x, a):
    """U(x) = Σ_i (x_i⁴/4 − a x_i²/2)."""
    return jnp.sum(x**4 / 4 - a * x**2 / 2, axis=-1)


class QuarticGibbs(diffsde.AbstractPrior):
    """p(x) = e^{−U(x)}/Z for the separable quartic U, sampled by inverse CDF per coordinate."""

    dim: int = eqx.field(static=True)
    a: float

    def _table(self):
        """The grid y, the CDF of e^{−u} at y (trapezoid rule, from 0 to 1) and log z."""
        y = jnp.linspace(-HALF_WIDTH, HALF_WIDTH, GRID)
        log_w = -(y**4 / 4 - self.a * y**2 / 2)
        top = jnp.max(log_w)
        w = jnp.exp(log_w - top)
        mass = jnp.concatenate([jnp.zeros(1), jnp.cumsum((w[1:] + w[:-1]) / 2 * (y[1] - y[0]))])
        return y, mass / mass[-1], jnp.log(mass[-1]) + top

    def sample(self, *, key, n):
        y, cdf, _ = self._table()
        return jnp.interp(jr.uniform(key, (n, self.dim)), cdf, y)

    def log_prob(self, x):
        _, _, log_z = self._table()
        return -potential(x, self.a) - self.dim * log_z

    def score(self, x):
        return -(x**3 - self.a * x)  # −∇U, exactly


class QuarticLangevin(diffsde.AbstractSDE):
    """Langevin dX = −∇U dt + √2 dB, U(x) = Σ (x_i⁴/4 − a x_i²/2); stationary law e^{−U}/Z."""

    tag: ClassVar[str] = "quartic_langevin"
    dim: int = eqx.field(static=True)  # context: the data's dimension
    a: Annotated[float, pydantic.Field(ge=0, le=4, description="wells at ±√a")] = 1.0
    T: Annotated[float, pydantic.Field(gt=0)] = eqx.field(static=True, default=5.0)

    def __check_init__(self):  # also when built in Python, where pydantic does not look
        if not 0 <= self.a <= 4:
            raise diffsde.SpecFieldError(
                "a", f"must lie in [0, 4] (the prior table spans |x| ≤ {HALF_WIDTH}), got {self.a}"
            )

    def drift(self, t, x):
        del t  # time-homogeneous
        return -jax.grad(potential)(x, self.a)

    def diffusion(self, t):
        del t
        return jnp.sqrt(jnp.asarray(2.0, jnp.float32))

    def prior(self):
        return QuarticGibbs(self.dim, self.a)

    def stationary_law(self):
        return QuarticGibbs(self.dim, self.a)


@diffsde.hookimpl
def register_sdes(register):
    register(QuarticLangevin)
