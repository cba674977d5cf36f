"""An SDE with a closed-form Gaussian kernel: the cosine VP schedule (entry point example_sde).

The kernel is X_t | X_0 = x₀ ~ N(cos φ_t x₀, sin² φ_t I) with an angle φ_t = a·t/T growing at
a constant rate up to a < π/2 (Nichol & Dhariwal's cosine schedule, without its offset):

- λ_t = cos φ_t and σ_t = sin φ_t, so λ_t² + σ_t² = 1 (variance preserving).
- The drift is b(t, x) = (d/dt log λ_t) x = −φ' tan φ_t · x, with φ' = a/T; that is
  −½β(t) x with β(t) = 2φ' tan φ_t.
- The diffusion follows from the variance ODE of a linear SDE, dσ_t²/dt = 2 (d/dt log λ_t) σ_t²
  + g(t)²: g² = 2φ' sin φ cos φ + 2φ' tan φ sin² φ = 2φ' tan φ_t = β(t), so g(t) = √β(t).
- N(0, I) is stationary (as for every VP SDE: dv/dt = −βv + β has the fixed point v = 1), and
  it is the prior: for data N(0, I), X_T ~ N(0, (cos² a + sin² a) I) = N(0, I) exactly.

a < π/2 keeps β(T) = 2(a/T) tan a finite (42 for the default a = 1.5, T = 1): at a = π/2 the
drift would blow up at T. λ_T = cos 1.5 ≈ 0.07 of the data's mean is left at T.
"""

import math
from typing import Annotated, ClassVar

import equinox as eqx
import jax.numpy as jnp
import pydantic

import diffsde


class CosineVP(diffsde.AbstractGaussianSDE):
    """Cosine VP: λ_t = cos φ_t, σ_t = sin φ_t, φ_t = a t/T; b = −½β x, g = √β, β = 2(a/T)tan φ."""

    tag: ClassVar[str] = "cosine_vp"
    dim: int = eqx.field(static=True)  # context: the data's dimension
    # A float field is a pytree leaf (traced when the SDE is passed through jax.jit): compute
    # with it in jnp, check it only in __check_init__.
    angle: Annotated[
        float, pydantic.Field(gt=0, lt=math.pi / 2, description="a = φ_T, the final angle")
    ] = 1.5
    # Static: the horizon sets Python-side things (the samplers' time grids).
    T: Annotated[float, pydantic.Field(gt=0)] = eqx.field(static=True, default=1.0)

    def __check_init__(self):  # also when built in Python, where pydantic does not look
        if not 0 < self.angle < math.pi / 2:
            raise diffsde.SpecFieldError(
                "angle", f"must lie in (0, π/2) for a finite drift at T, got {self.angle}"
            )

    def _phi(self, t):
        return self.angle * jnp.asarray(t, jnp.float32) / self.T

    def beta(self, t):
        """β(t) = 2 (a/T) tan φ_t."""
        return 2 * (self.angle / self.T) * jnp.tan(self._phi(t))

    def drift(self, t, x):
        return -0.5 * self.beta(t) * x

    def diffusion(self, t):
        return jnp.sqrt(self.beta(t))

    def kernel(self, t):
        phi = self._phi(t)
        return jnp.cos(phi), jnp.sin(phi)  # (λ_t, σ_t): σ_t is a standard deviation

    def prior(self):
        return diffsde.GaussianPrior(self.dim)  # N(0, I)

    def prior_bias(self):
        """N(0, I) drops the mean λ_T x₀ = cos(a) x₀ (0.07 x₀ at a = 1.5): declared, so that
        `diffsde check` allows it (and only it)."""
        return diffsde.mean_dropping_bias(self)

    def stationary_law(self):
        return diffsde.GaussianPrior(self.dim)


@diffsde.hookimpl
def register_sdes(register):
    register(CosineVP)
