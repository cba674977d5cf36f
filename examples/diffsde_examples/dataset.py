"""A dataset with an exact score (entry point example_dataset): a Gaussian N(μ, Σ) with a full
covariance, implementing ``diffsde.ExactScore`` (and ``ExactMoments``).

Under an SDE with a Gaussian kernel X_t | X_0 = x₀ ~ N(m_t(x₀), σ_t² I), with m_t affine in x₀
(λ_t x₀, or μ' + λ_t (x₀ − μ') for a contractive OU), X_t = m_t(X_0) + σ_t Z is Gaussian:
p_t = N(m_t(μ), C_t) with C_t = λ_t² Σ + σ_t² I, so ∇ log p_t(x) = −C_t⁻¹ (x − m_t(μ)). Under an
SDE without a kernel p_t is not known in closed form, and ``knows_score`` says so: the ``esm``
metric then reports nothing rather than a wrong number.
"""

from typing import Annotated, ClassVar

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pydantic
from jaxtyping import Array, Float

import diffsde


class CorrelatedGaussian(diffsde.AbstractDataset):
    """N(mean, covariance) with a full covariance, with its exact score at every t."""

    tag: ClassVar[str] = "correlated_gaussian"
    dim: int = eqx.field(static=True)
    mu: Float[Array, " dim"]
    cholesky: Float[Array, "dim dim"]  # lower-triangular L, Σ = L Lᵀ

    def __init__(
        self,
        mean: Annotated[list[float], pydantic.Field(min_length=1)] = [1.0, -1.0],  # noqa: B006
        covariance: Annotated[
            list[list[float]], pydantic.Field(description="symmetric positive definite")
        ] = [[1.0, 0.6], [0.6, 0.5]],  # noqa: B006  (read, never changed)
    ):
        cov = np.asarray(covariance, np.float64)
        if cov.shape != (len(mean), len(mean)):
            raise diffsde.SpecFieldError(
                "covariance",
                f"has shape {cov.shape}, but the mean has {len(mean)} entries: give a "
                f"{len(mean)}×{len(mean)} matrix",
            )
        if not np.allclose(cov, cov.T):
            raise diffsde.SpecFieldError("covariance", "is not symmetric: give Σ = Σᵀ")
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise diffsde.SpecFieldError(
                "covariance",
                f"is not positive definite (eigenvalues {np.linalg.eigvalsh(cov).round(4)}): "
                "give a matrix with positive eigenvalues",
            ) from None
        self.dim = len(mean)
        self.mu = jnp.asarray(mean, jnp.float32)
        self.cholesky = jnp.asarray(chol, jnp.float32)

    def sample(self, *, key, n):
        return self.mu + jr.normal(key, (n, self.dim)) @ self.cholesky.T

    # ExactMoments -------------------------------------------------------------------------
    def mean(self):
        return self.mu

    def covariance(self):
        return self.cholesky @ self.cholesky.T

    # ExactScore ---------------------------------------------------------------------------
    def knows_score(self, sde):
        return isinstance(sde, diffsde.AbstractGaussianSDE)

    def marginal(self, sde, t):
        """The mean m_t(μ) and covariance λ_t² Σ + σ_t² I of p_t."""
        lam, sigma = sde.kernel(t)
        return sde.marginal_mean(t, self.mu), lam**2 * self.covariance() + sigma**2 * jnp.eye(
            self.dim
        )

    def marginal_log_prob(self, x, t, sde):
        """log p_t(x), exactly."""
        mean, cov = self.marginal(sde, t)
        chol = jnp.linalg.cholesky(cov)
        z = jnp.linalg.solve(chol, x - mean)
        log_det = 2 * jnp.sum(jnp.log(jnp.diag(chol)))
        return -0.5 * (z @ z + log_det + self.dim * jnp.log(2 * jnp.pi))

    def score(self, x, t, sde, condition=None):
        del condition  # no conditions: ``classes`` is 0
        mean, cov = self.marginal(sde, t)
        return -jnp.linalg.solve(cov, x - mean)


@diffsde.hookimpl
def register_datasets(register):
    register(CorrelatedGaussian)
