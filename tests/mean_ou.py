"""An SDE with a Gaussian kernel and a mean offset c_t ≠ 0, which the solver tests share
(tests/test_dpm_solvers.py, tests/test_edm_solvers.py)."""

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

import diffsde
from diffsde._sde._base import AbstractGaussianSDE


class MeanOU(AbstractGaussianSDE):
    """dX = −(X − μ) dt + √2 dB: α_t = e^{−t}, σ_t² = 1 − e^{−2t}, offset c_t = μ(1 − e^{−t})
    (it exercises the solvers' centring y = x − c_t)."""

    tag: ClassVar[str] = "mean_ou"
    dim: int = eqx.field(static=True)
    mu: float = 1.5
    T: float = eqx.field(static=True, default=3.0)

    def drift(self, t, x):
        del t
        return -(x - self.mu)

    def diffusion(self, t):
        del t
        return jnp.asarray(2.0**0.5, jnp.float32)

    def kernel(self, t):
        return jnp.exp(-t), jnp.sqrt(-jnp.expm1(-2 * t))

    def marginal_mean(self, t, x0):
        return self.mu + jnp.exp(-t) * (x0 - self.mu)

    def prior(self):
        return diffsde.GaussianPrior(self.dim, self.mu, 1.0)
