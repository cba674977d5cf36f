"""A score model (entry point example_model): the exact score family of Gaussian data.

s_θ(x, t) = −C_t⁻¹ (x − m_t(μ)), C_t = λ_t² L Lᵀ + σ_t² I, with trainable θ = (μ, L): for data
N(μ, L Lᵀ) under an SDE with a Gaussian kernel it is the exact score of p_t (see
``diffsde_examples.dataset``), so training it by score matching fits the data's mean and
covariance, and the ``esm`` metric measures how well.

A model is any ``equinox.Module`` with ``__call__(x, t)`` for one point; its constructor's
keyword parameters are the spec section, and ``sde``, ``key``, ``prior`` are context. Its float
arrays are what a training method trains, except those inside the SDE it holds.
"""

from typing import Annotated, ClassVar

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import pydantic
from jaxtyping import Array, Float

import diffsde


class GaussianScore(eqx.Module):
    """The exact score of N(μ, L Lᵀ) data under a Gaussian kernel, μ and L trained."""

    tag: ClassVar[str] = "gaussian_score"
    sde: diffsde.AbstractGaussianSDE  # context, and a requirement (it reads the kernel)
    mu: Float[Array, " dim"]
    cholesky: Float[Array, "dim dim"]  # its lower triangle is L

    def __init__(
        self,
        sde: diffsde.AbstractGaussianSDE,
        *,
        key,
        prior=None,
        scale: Annotated[float, pydantic.Field(gt=0, description="initial L = scale·I")] = 1.0,
    ):
        del prior  # context this model does not use
        self.sde = sde
        self.mu = 0.01 * jr.normal(key, (sde.dim,))
        self.cholesky = scale * jnp.eye(sde.dim)

    def covariance(self):
        lower = jnp.tril(self.cholesky)
        return lower @ lower.T

    def __call__(self, x, t):
        lam, sigma = self.sde.kernel(t)
        cov = lam**2 * self.covariance() + sigma**2 * jnp.eye(x.shape[-1])
        return -jnp.linalg.solve(cov, x - self.sde.marginal_mean(t, self.mu))


@diffsde.hookimpl
def register_models(register):
    register(GaussianScore)
