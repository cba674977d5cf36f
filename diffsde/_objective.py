"""Score-matching objectives (MATH.md §3): E_t λ(t) E |s_θ(x_t, t) − target|², t on [ε, T].

Every objective here is the same time-weighted integral, normalised as an average over
t ~ U[ε, T]; importance sampling t ~ π only changes the estimator (weights λ(t)/(π(t)(T − ε))),
not the value it estimates.
"""

import abc
from typing import ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._custom_types import Scalar, ScoreFn, Vector
from ._sde._base import AbstractSDE

Weighting = Literal["sigma2", "g2", "uniform"]
TimeSampling = Literal["uniform", "importance"]

WEIGHTINGS = ("sigma2", "g2", "uniform")
TIME_SAMPLINGS = ("uniform", "importance")


class AbstractObjective(eqx.Module):
    """A training loss for a score model ``model(x, t) -> score`` (one point)."""

    @abc.abstractmethod
    def loss(self, model: ScoreFn, x0: Float[Array, "n dim"], *, key: PRNGKeyArray) -> Scalar:
        """A Monte-Carlo estimate of the objective on the data batch ``x0``."""


class AbstractWeightedScoreMatching(AbstractObjective):
    """E_{t~U[ε,T]} λ(t) E_{x₀} E_{x_t|x₀} |s_θ(x_t, t) − target(t, x_t, x₀)|².

    x_t is drawn from the SDE's Gaussian kernel; subclasses give the regression target.

    - ``weighting``: λ(t) = σ_t² (``"sigma2"``), g(t)² (``"g2"``, likelihood weighting) or 1;
    - ``time_sampling``: t ~ U[ε, T] (``"uniform"``), or t ~ π ∝ 1/σ_t² (``"importance"``),
      drawn by inverse CDF on a grid of ``n_grid`` points (trapezoid rule, linear
      interpolation); the loss is reweighted by 1/(π(t)(T − ε)) with π the exact density of that
      piecewise-linear inverse CDF, so the estimator stays unbiased.
    """

    sde: eqx.AbstractVar[AbstractSDE]
    weighting: eqx.AbstractVar[Weighting]
    time_sampling: eqx.AbstractVar[TimeSampling]
    eps: eqx.AbstractVar[float]
    n_grid: ClassVar[int] = 1024

    def __check_init__(self):
        name = type(self).__name__
        if not self.sde.has_gaussian_kernel:
            raise ValueError(
                f"{name} draws x_t from the SDE's transition kernel, but "
                f"{type(self.sde).__name__} has no Gaussian transition kernel; use an SDE with "
                "one (ou, ve, vp, subvp, affine) or an objective that only needs samples of p_t"
            )
        if self.weighting not in WEIGHTINGS:
            raise ValueError(
                f"weighting={self.weighting!r} is unknown; choose one of {list(WEIGHTINGS)}"
            )
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(
                f"time_sampling={self.time_sampling!r} is unknown; choose one of "
                f"{list(TIME_SAMPLINGS)}"
            )
        if not 0 < self.eps < self.sde.T:
            raise ValueError(
                f"eps={self.eps} must lie in (0, T={self.sde.T}); typical cut-offs are 1e-3 "
                "(VP) and 1e-5 (VE)"
            )

    @abc.abstractmethod
    def target(self, t: Scalar, xt: Vector, x0: Vector) -> Vector:
        """What s_θ(x_t, t) is regressed on."""

    def weight(self, t: Scalar) -> Scalar:
        """λ(t)."""
        if self.weighting == "sigma2":
            return self.sde.marginal_std(t) ** 2
        if self.weighting == "g2":
            return self.sde.diffusion(t) ** 2
        return jnp.ones_like(t)

    def sample_times(
        self, n: int, *, key: PRNGKeyArray
    ) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        """``n`` times and their weights λ(t)/(π(t)(T − ε)) (just λ(t) when π is uniform)."""
        T, eps = self.sde.T, self.eps
        u = jr.uniform(key, (n,))
        if self.time_sampling == "uniform":
            t = eps + (T - eps) * u
            return t, jax.vmap(self.weight)(t)
        grid = jnp.linspace(eps, T, self.n_grid)
        density = 1 / jax.vmap(self.sde.marginal_std)(grid) ** 2
        cells = 0.5 * (density[1:] + density[:-1]) * jnp.diff(grid)
        cdf = jnp.concatenate([jnp.zeros(1), jnp.cumsum(cells)])
        t = jnp.interp(u * cdf[-1], cdf, grid)
        # the sampler's exact density: constant on each grid cell
        cell = jnp.clip(jnp.searchsorted(grid, t, side="right") - 1, 0, self.n_grid - 2)
        pi = cells[cell] / (grid[cell + 1] - grid[cell]) / cdf[-1]
        return t, jax.vmap(self.weight)(t) / (pi * (T - eps))

    def loss(self, model: ScoreFn, x0: Float[Array, "n dim"], *, key: PRNGKeyArray) -> Scalar:
        tkey, zkey = jr.split(key)
        n = x0.shape[0]
        t, w = self.sample_times(n, key=tkey)

        def residual(t, x0, key):
            xt, _ = self.sde.sample_marginal(t, x0, key=key)
            return jnp.sum((model(xt, t) - self.target(t, xt, x0)) ** 2)

        return jnp.mean(w * jax.vmap(residual)(t, x0, jr.split(zkey, n)))


class DenoisingScoreMatching(AbstractWeightedScoreMatching):
    """Denoising score matching (Vincent 2011): the target is ∇ log p(x_t | x₀)."""

    sde: AbstractSDE
    weighting: Weighting = eqx.field(static=True, default="sigma2")
    time_sampling: TimeSampling = eqx.field(static=True, default="uniform")
    eps: float = eqx.field(static=True, default=1e-3)

    def target(self, t: Scalar, xt: Vector, x0: Vector) -> Vector:
        return self.sde.conditional_score(t, xt, x0)


class ExplicitScoreMatching(AbstractWeightedScoreMatching):
    """Explicit score matching against a known score ``score(x, t)`` (for calibration)."""

    sde: AbstractSDE
    score: ScoreFn
    weighting: Weighting = eqx.field(static=True, default="sigma2")
    time_sampling: TimeSampling = eqx.field(static=True, default="uniform")
    eps: float = eqx.field(static=True, default=1e-3)

    def target(self, t: Scalar, xt: Vector, x0: Vector) -> Vector:
        del x0
        return self.score(xt, t)
