"""Score-matching objectives (docs/math.md §3): E_t λ(t) E |s_θ(x_t, t) − target|², t on [ε, T].

Every objective here is the same time-weighted integral, normalised as an average over
t ~ U[ε, T]; importance sampling t ~ π only changes the estimator (weights λ(t)/(π(t)(T − ε))),
not the value it estimates.
"""

import abc
from typing import ClassVar, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._custom_types import Scalar, ScoreFn, Vector
from ._sde._base import AbstractSDE

Weighting = Literal["sigma2", "g2", "uniform"]
TimeSampling = Literal["uniform", "importance"]

Times = Float[Array, " m"]
Points = Float[Array, "m dim"]

WEIGHTINGS = ("sigma2", "g2", "uniform")
TIME_SAMPLINGS = ("uniform", "importance")


class AbstractObjective(eqx.Module):
    """A training loss for a score model ``model(x, t) -> score`` (one point)."""

    @abc.abstractmethod
    def loss(self, model: ScoreFn, x0: Float[Array, "n dim"], *, key: PRNGKeyArray) -> Scalar:
        """A Monte-Carlo estimate of the objective on the data batch ``x0``."""


class AbstractWeightedScoreMatching(AbstractObjective):
    """E_{t~U[ε,T]} λ(t) E_{x_t} ℓ(s_θ, t, x_t): the time-weighted score-matching integral.

    Where x_t comes from:

    - an SDE with a Gaussian kernel: x_t = m_t(x₀) + σ_t z, one draw per data point at a time
      drawn per point;
    - any other SDE: the forward SDE is simulated from the batch with diffrax (Euler–Maruyama
      over ``simulation_steps`` steps, the grid shifted by a random offset per batch so training
      sees every t, not a fixed set), and ``times_per_path`` points (t, x_t) with t ≥ ε are
      taken from each simulated path. One batch's paths are the trajectory bank its loss is
      averaged over; the simulation carries no gradient.

    - ``weighting``: λ(t) = σ_t² (``"sigma2"``), g(t)² (``"g2"``, likelihood weighting) or 1;
    - ``time_sampling``: t ~ U[ε, T] (``"uniform"``), or t ~ π ∝ 1/σ_t² (``"importance"``),
      drawn by inverse CDF on a grid of ``n_grid`` points (trapezoid rule, linear
      interpolation); the loss is reweighted by 1/(π(t)(T − ε)) with π the exact density of that
      piecewise-linear inverse CDF, so the estimator stays unbiased.

    σ_t exists only for a Gaussian kernel, so ``"sigma2"`` and ``"importance"`` need one.
    """

    sde: eqx.AbstractVar[AbstractSDE]
    weighting: eqx.AbstractVar[Weighting]
    time_sampling: eqx.AbstractVar[TimeSampling]
    eps: eqx.AbstractVar[float]
    simulation_steps: eqx.AbstractVar[int]
    times_per_path: eqx.AbstractVar[int]
    n_grid: ClassVar[int] = 1024
    needs_gaussian_kernel: ClassVar[bool] = False

    def __check_init__(self):
        name = type(self).__name__
        kernel = self.sde.has_gaussian_kernel
        if self.needs_gaussian_kernel and not kernel:
            raise ValueError(
                f"{name} draws x_t from the SDE's transition kernel, but "
                f"{type(self.sde).__name__} has no Gaussian transition kernel; use an SDE with "
                "one (ou, ve, vp, subvp, affine) or an objective that only needs samples of p_t "
                "(ism, ssm)"
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
        if not kernel and (self.weighting == "sigma2" or self.time_sampling == "importance"):
            raise ValueError(
                f"weighting={self.weighting!r} with time_sampling={self.time_sampling!r} needs "
                f"σ_t of a Gaussian kernel, which {type(self.sde).__name__} has not; use "
                "weighting 'g2' or 'uniform' and time_sampling 'uniform'"
            )
        if not 0 < self.eps < self.sde.T:
            raise ValueError(
                f"eps={self.eps} must lie in (0, T={self.sde.T}); typical cut-offs are 1e-3 "
                "(VP) and 1e-5 (VE)"
            )
        if self.simulation_steps < 2 or self.times_per_path < 1:
            raise ValueError(
                f"simulation_steps={self.simulation_steps} and times_per_path="
                f"{self.times_per_path}: give at least 2 steps and 1 time per path"
            )

    @abc.abstractmethod
    def pointwise(
        self, model: ScoreFn, t: Scalar, xt: Vector, x0: Vector, key: PRNGKeyArray
    ) -> Scalar:
        """ℓ at one (t, x_t), x_t drawn from x₀ (whose conditional only DSM uses)."""

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

    def simulate(
        self, x0: Float[Array, "n dim"], *, key: PRNGKeyArray
    ) -> tuple[Float[Array, " k"], Float[Array, "n k dim"]]:
        """Forward paths of the SDE from ``x0`` on a grid of ``simulation_steps`` steps of
        T/steps, shifted by one random offset in [0, T/steps): times (ε..T) and states."""
        T, steps = self.sde.T, self.simulation_steps
        okey, bkey = jr.split(key)
        dt = T / steps
        offset = jr.uniform(okey, (), minval=0.0, maxval=dt)
        ts = jnp.concatenate([jnp.zeros(1), offset + dt * jnp.arange(steps)])
        ts = jnp.clip(ts, 0.0, T)

        def path(x, key):
            brownian = diffrax.UnsafeBrownianPath(shape=(self.sde.dim,), key=key)
            solution = diffrax.diffeqsolve(
                self.sde.forward_terms(brownian),
                diffrax.Euler(),
                t0=0.0,
                t1=T,
                dt0=None,
                y0=x,
                saveat=diffrax.SaveAt(ts=ts),
                stepsize_controller=diffrax.StepTo(ts=jnp.append(ts, T)),
                max_steps=steps + 2,
                adjoint=diffrax.ForwardMode(),  # no gradient flows through the data paths
            )
            return solution.ys

        paths = jax.vmap(path)(x0, jr.split(bkey, x0.shape[0]))
        return ts, jax.lax.stop_gradient(paths)

    def draw(
        self, x0: Float[Array, "n dim"], *, key: PRNGKeyArray
    ) -> tuple[
        Float[Array, " m"], Float[Array, " m"], Float[Array, "m dim"], Float[Array, "m dim"]
    ]:
        """Points (t, weight, x_t, x₀) the loss averages over: one per data point from the
        kernel, or ``times_per_path`` per simulated path."""
        tkey, zkey = jr.split(key)
        n = x0.shape[0]
        if self.sde.has_gaussian_kernel:
            t, w = self.sample_times(n, key=tkey)
            xt = jax.vmap(lambda t, x, k: self.sde.sample_marginal(t, x, key=k)[0])(
                t, x0, jr.split(zkey, n)
            )
            return t, w, xt, x0
        ts, paths = self.simulate(x0, key=zkey)
        usable = ts >= self.eps  # t = 0 (and t < ε) never enter the loss
        choice = jr.categorical(
            tkey, jnp.where(usable, 0.0, -jnp.inf), shape=(n, self.times_per_path)
        )
        t = ts[choice].reshape(-1)
        xt = jnp.take_along_axis(paths, choice[..., None], axis=1).reshape(-1, self.sde.dim)
        return t, jax.vmap(self.weight)(t), xt, jnp.repeat(x0, self.times_per_path, axis=0)

    def loss(self, model: ScoreFn, x0: Float[Array, "n dim"], *, key: PRNGKeyArray) -> Scalar:
        t, w, xt, x0 = self.draw(x0, key=key)
        # Projection keys (SSM) from a stream `draw` never uses: fold_in(key, 1) would equal
        # split(key)[1], the key of the x_t noise, and correlate v with z (a biased gradient).
        keys = jr.split(jr.fold_in(key, 2**31 - 1), t.shape[0])
        return jnp.mean(w * jax.vmap(lambda *a: self.pointwise(model, *a))(t, xt, x0, keys))


class AbstractRegressionScoreMatching(AbstractWeightedScoreMatching):
    """ℓ = |s_θ(x_t, t) − target(t, x_t, x₀)|²."""

    @abc.abstractmethod
    def target(self, t: Scalar, xt: Vector, x0: Vector) -> Vector:
        """What s_θ(x_t, t) is regressed on."""

    def pointwise(
        self, model: ScoreFn, t: Scalar, xt: Vector, x0: Vector, key: PRNGKeyArray
    ) -> Scalar:
        del key
        return jnp.sum((model(xt, t) - self.target(t, xt, x0)) ** 2)


class DenoisingScoreMatching(AbstractRegressionScoreMatching):
    """Denoising score matching (Vincent 2011): the target is ∇ log p(x_t | x₀)."""

    sde: AbstractSDE
    weighting: Weighting = eqx.field(static=True, default="sigma2")
    time_sampling: TimeSampling = eqx.field(static=True, default="uniform")
    eps: float = eqx.field(static=True, default=1e-3)
    simulation_steps: int = eqx.field(static=True, default=100)
    times_per_path: int = eqx.field(static=True, default=1)
    needs_gaussian_kernel: ClassVar[bool] = True

    def target(self, t: Scalar, xt: Vector, x0: Vector) -> Vector:
        return self.sde.conditional_score(t, xt, x0)


class ExplicitScoreMatching(AbstractRegressionScoreMatching):
    """Explicit score matching against a known score ``score(x, t)`` of p_t (for calibration:
    a Gaussian mixture's score under an SDE with a Gaussian kernel)."""

    sde: AbstractSDE
    score: ScoreFn
    weighting: Weighting = eqx.field(static=True, default="sigma2")
    time_sampling: TimeSampling = eqx.field(static=True, default="uniform")
    eps: float = eqx.field(static=True, default=1e-3)
    simulation_steps: int = eqx.field(static=True, default=100)
    times_per_path: int = eqx.field(static=True, default=1)

    def target(self, t: Scalar, xt: Vector, x0: Vector) -> Vector:
        del x0
        return self.score(xt, t)


class ImplicitScoreMatching(AbstractWeightedScoreMatching):
    """Implicit score matching (Hyvärinen 2005): ℓ = |s_θ|² + 2 ∇·s_θ, the divergence exact
    (the Jacobian by d forward-mode JVPs, vectorised): cost grows with d, for small d.

    Twice the textbook ½|s|² + ∇·s, so that ℓ equals |s_θ − ∇log p_t|² − |∇log p_t|² in
    expectation: the same gradient as ESM and DSM with the same weighting."""

    sde: AbstractSDE
    weighting: Weighting = eqx.field(static=True, default="g2")
    time_sampling: TimeSampling = eqx.field(static=True, default="uniform")
    eps: float = eqx.field(static=True, default=1e-3)
    simulation_steps: int = eqx.field(static=True, default=100)
    times_per_path: int = eqx.field(static=True, default=4)

    def pointwise(
        self, model: ScoreFn, t: Scalar, xt: Vector, x0: Vector, key: PRNGKeyArray
    ) -> Scalar:
        del x0, key
        score = model(xt, t)
        jacobian = jax.jacfwd(lambda x: model(x, t))(xt)
        return jnp.sum(score**2) + 2 * jnp.trace(jacobian)


Projection = Literal["rademacher", "gaussian"]


class SlicedScoreMatching(AbstractWeightedScoreMatching):
    """Sliced score matching (Song et al. 2019): ℓ = 2 vᵀ∇(vᵀs_θ) + (vᵀs_θ)², averaged over
    ``n_projections`` directions v (Rademacher or standard Gaussian, E[vvᵀ] = I), each one JVP:
    cost independent of d. ``variance_reduction`` replaces (vᵀs_θ)² by its expectation |s_θ|²
    (SSM-VR). Scaled like `ImplicitScoreMatching`, whose ℓ it estimates without bias."""

    sde: AbstractSDE
    weighting: Weighting = eqx.field(static=True, default="g2")
    time_sampling: TimeSampling = eqx.field(static=True, default="uniform")
    eps: float = eqx.field(static=True, default=1e-3)
    simulation_steps: int = eqx.field(static=True, default=100)
    times_per_path: int = eqx.field(static=True, default=4)
    n_projections: int = eqx.field(static=True, default=1)
    projection: Projection = eqx.field(static=True, default="rademacher")
    variance_reduction: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if self.n_projections < 1:
            raise ValueError(f"n_projections={self.n_projections}: use at least one")
        if self.projection not in ("rademacher", "gaussian"):
            raise ValueError(
                f"projection={self.projection!r} is unknown; choose 'rademacher' or 'gaussian'"
            )

    def pointwise(
        self, model: ScoreFn, t: Scalar, xt: Vector, x0: Vector, key: PRNGKeyArray
    ) -> Scalar:
        del x0
        shape = (self.n_projections, self.sde.dim)
        if self.projection == "rademacher":
            v = jr.rademacher(key, shape, dtype=xt.dtype)
        else:
            v = jr.normal(key, shape, dtype=xt.dtype)

        def along(v):
            score, jv = jax.jvp(lambda x: model(x, t), (xt,), (v,))
            return score, jnp.dot(v, jv), jnp.dot(v, score)

        score, vjv, vs = jax.vmap(along)(v)
        square = jnp.sum(score[0] ** 2) if self.variance_reduction else jnp.mean(vs**2)
        return square + 2 * jnp.mean(vjv)
