"""Score-matching objectives (docs/math.md §3): E_t λ(t) E |s_θ(x_t, t) − target|², t on [ε, T].

Every objective here is the same time-weighted integral, normalised as an average over
t ~ U[ε, T]; importance sampling t ~ π only changes the estimator (weights λ(t)/(π(t)(T − ε))),
not the value it estimates.

Conditions: ``loss(model, x0, key=…, condition=c)`` with one condition per row of ``x0`` trains
a conditional score s_θ(x, t, c) ≈ ∇ log p_t(x | c): each point's model is the model bound to
its condition (``diffsde._model.bind_condition``), so DSM regresses on ∇ log p(x_t | x₀) with
(x₀, c) drawn jointly — whose minimiser is the conditional score — and ISM/SSM need nothing
else; only ESM's target (the exact mixture score) reads the condition itself.
"""

import abc
import dataclasses
from typing import Annotated, ClassVar, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pydantic
from jaxtyping import Array, Float, PRNGKeyArray

from ._custom_types import Condition, Conditions, Scalar, ScoreFn, Vector
from ._data import ExactScore
from ._errors import REQUIREMENTS, SpecFieldError
from ._model import bind_condition
from ._sde._base import AbstractGaussianSDE, AbstractSDE

REQUIREMENTS[ExactScore] = (
    "data with an exact score (a dataset implementing diffsde.ExactScore, e.g. 'gmm')"
)

Times = Float[Array, " m"]
Points = Float[Array, "m dim"]
Positive = Annotated[float, pydantic.Field(gt=0)]


class AbstractObjective(eqx.Module):
    """A training loss for a score model ``model(x, t) -> score`` (one point)."""

    kind: ClassVar[str] = "objective"

    @abc.abstractmethod
    def loss(
        self,
        model: ScoreFn,
        x0: Float[Array, "n dim"],
        *,
        key: PRNGKeyArray,
        condition: Conditions = None,
    ) -> Scalar:
        """A Monte-Carlo estimate of the objective on the data batch ``x0``; ``condition``:
        the batch's conditions (one row per point), or None."""


def _needs_kernel(part: eqx.Module, field: str, sde: AbstractSDE, fix: str) -> None:
    if part.needs_kernel and not isinstance(sde, AbstractGaussianSDE):
        raise SpecFieldError(
            field,
            f"'{part.tag}' needs σ_t of a Gaussian transition kernel, which "
            f"{type(sde).__name__} has not: {fix}",
        )


# weightings λ(t) -----------------------------------------------------------------------------


class AbstractWeighting(eqx.Module):
    """A part of an objective: the time weighting λ(t). ``needs_kernel``: it reads σ_t."""

    kind: ClassVar[str] = "weighting"
    needs_kernel: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, sde: AbstractSDE, t: Scalar) -> Scalar:
        """λ(t)."""


class Sigma2Weighting(AbstractWeighting):
    """λ(t) = σ_t² (Song & Ermon: every time contributes comparably)."""

    tag: ClassVar[str] = "sigma2"
    needs_kernel: ClassVar[bool] = True

    def __call__(self, sde, t):
        return sde.marginal_std(t) ** 2


class G2Weighting(AbstractWeighting):
    """λ(t) = g(t)², the likelihood weighting (Song et al. 2021)."""

    tag: ClassVar[str] = "g2"

    def __call__(self, sde, t):
        return sde.diffusion(t) ** 2


class UniformWeighting(AbstractWeighting):
    """λ(t) = 1."""

    tag: ClassVar[str] = "uniform"

    def __call__(self, sde, t):
        return jnp.ones_like(t)


# time distributions --------------------------------------------------------------------------


class AbstractTimeDistribution(eqx.Module):
    """A part of an objective: how t is drawn on [ε, T], and the correction 1/(π(t)(T − ε))
    that keeps the estimator of the U[ε, T] average unbiased."""

    kind: ClassVar[str] = "time_distribution"
    needs_kernel: ClassVar[bool] = False

    @abc.abstractmethod
    def sample(
        self, sde: AbstractSDE, eps: float, n: int, *, key: PRNGKeyArray
    ) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        """``n`` times and their corrections."""


class UniformTimes(AbstractTimeDistribution):
    """t ~ U[ε, T] (correction 1)."""

    tag: ClassVar[str] = "uniform"

    def sample(self, sde, eps, n, *, key):
        t = eps + (sde.T - eps) * jr.uniform(key, (n,))
        return t, jnp.ones_like(t)


class ImportanceTimes(AbstractTimeDistribution):
    """t ~ π ∝ 1/σ_t², drawn by inverse CDF on a grid of ``n_grid`` points (trapezoid rule,
    linear interpolation); the correction uses π the exact density of that piecewise-linear
    inverse CDF, so the estimator stays unbiased."""

    tag: ClassVar[str] = "importance"
    needs_kernel: ClassVar[bool] = True
    n_grid: Annotated[int, pydantic.Field(ge=2, le=1_000_000)] = eqx.field(
        static=True, default=1024
    )

    def sample(self, sde, eps, n, *, key):
        T = sde.T
        u = jr.uniform(key, (n,))
        grid = jnp.linspace(eps, T, self.n_grid)
        density = 1 / jax.vmap(sde.marginal_std)(grid) ** 2
        cells = 0.5 * (density[1:] + density[:-1]) * jnp.diff(grid)
        cdf = jnp.concatenate([jnp.zeros(1), jnp.cumsum(cells)])
        t = jnp.interp(u * cdf[-1], cdf, grid)
        # the sampler's exact density: constant on each grid cell
        cell = jnp.clip(jnp.searchsorted(grid, t, side="right") - 1, 0, self.n_grid - 2)
        pi = cells[cell] / (grid[cell + 1] - grid[cell]) / cdf[-1]
        return t, 1 / (pi * (T - eps))


# sources of x_t ------------------------------------------------------------------------------


class AbstractXtSource(eqx.Module):
    """A part of an objective: where the points (t, x_t) the loss averages over come from."""

    kind: ClassVar[str] = "xt_source"
    needs_kernel: ClassVar[bool] = False

    @abc.abstractmethod
    def draw(
        self, objective: "AbstractWeightedScoreMatching", x0: Float[Array, "n dim"], *, key
    ) -> tuple[Times, Times, Points, Points]:
        """Points (t, weight, x_t, x₀)."""


class KernelSource(AbstractXtSource):
    """x_t = m_t(x₀) + σ_t z from the SDE's Gaussian kernel, one draw per data point at a time
    drawn per point."""

    tag: ClassVar[str] = "kernel"
    needs_kernel: ClassVar[bool] = True

    def draw(self, objective, x0, *, key):
        tkey, zkey = jr.split(key)
        n, sde = x0.shape[0], objective.sde
        t, w = objective.sample_times(n, key=tkey)
        xt = jax.vmap(lambda t, x, k: sde.sample_marginal(t, x, key=k)[0])(t, x0, jr.split(zkey, n))
        return t, w, xt, x0


Steps = Annotated[int, pydantic.Field(ge=2)]  # the memory estimate bounds it
PerPath = Annotated[int, pydantic.Field(ge=1)]


class SimulationSource(AbstractXtSource):
    """The forward SDE simulated from the batch with diffrax (Euler–Maruyama over ``steps``
    steps of T/steps, the grid shifted by one random offset per batch so training sees every t,
    not a fixed set); ``times_per_path`` points (t, x_t) with t ≥ ε are taken from each path.
    One batch's paths are the trajectory bank its loss is averaged over; the simulation carries
    no gradient. Any SDE; t is uniform on the grid (no importance sampling)."""

    tag: ClassVar[str] = "simulation"
    steps: Steps = eqx.field(static=True, default=100)
    times_per_path: PerPath = eqx.field(static=True, default=4)

    def simulate(
        self, sde: AbstractSDE, x0: Float[Array, "n dim"], *, key: PRNGKeyArray
    ) -> tuple[Float[Array, " k"], Float[Array, "n k dim"]]:
        """Forward paths from ``x0`` on the shifted grid: times (ε..T) and states."""
        T, steps = sde.T, self.steps
        okey, bkey = jr.split(key)
        dt = T / steps
        offset = jr.uniform(okey, (), minval=0.0, maxval=dt)
        ts = jnp.concatenate([jnp.zeros(1), offset + dt * jnp.arange(steps)])
        ts = jnp.clip(ts, 0.0, T)

        def path(x, key):
            brownian = diffrax.UnsafeBrownianPath(shape=(sde.dim,), key=key)
            solution = diffrax.diffeqsolve(
                sde.forward_terms(brownian),
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

    def draw(self, objective, x0, *, key):
        tkey, zkey = jr.split(key)
        n, sde = x0.shape[0], objective.sde
        ts, paths = self.simulate(sde, x0, key=zkey)
        usable = ts >= objective.eps  # t = 0 (and t < ε) never enter the loss
        choice = jr.categorical(
            tkey, jnp.where(usable, 0.0, -jnp.inf), shape=(n, self.times_per_path)
        )
        t = ts[choice].reshape(-1)
        xt = jnp.take_along_axis(paths, choice[..., None], axis=1).reshape(-1, sde.dim)
        w = jax.vmap(lambda t: objective.weighting(sde, t))(t)
        return t, w, xt, jnp.repeat(x0, self.times_per_path, axis=0)


class AutoSource(SimulationSource):
    """The SDE's Gaussian kernel when it has one (``kernel``), else ``simulation`` with these
    settings."""

    tag: ClassVar[str] = "auto"

    def resolve(self, sde: AbstractSDE) -> AbstractXtSource:
        if isinstance(sde, AbstractGaussianSDE):
            return KernelSource()
        return SimulationSource(self.steps, self.times_per_path)

    def draw(self, objective, x0, *, key):
        return self.resolve(objective.sde).draw(objective, x0, key=key)


# the objectives ------------------------------------------------------------------------------


class AbstractWeightedScoreMatching(AbstractObjective):
    """E_{t~U[ε,T]} λ(t) E_{x_t} ℓ(s_θ, t, x_t): the time-weighted score-matching integral, a
    loss ℓ × a ``weighting`` λ × a ``time_sampling`` distribution × a ``source`` of x_t (all
    parts, docs/math.md §3). σ_t exists only for a Gaussian kernel, so the ``sigma2`` weighting
    and ``importance`` times need one; this is checked once, here."""

    sde: eqx.AbstractVar[AbstractSDE]
    weighting: eqx.AbstractVar[AbstractWeighting]
    time_sampling: eqx.AbstractVar[AbstractTimeDistribution]
    eps: eqx.AbstractVar[float]

    def __check_init__(self):
        sde = self.sde
        if not 0 < self.eps < sde.T:
            raise SpecFieldError(
                "eps",
                f"must lie in (0, T) for the SDE's horizon T = {sde.T}, got {self.eps}: "
                "typical cut-offs are 1e-3 (VP) and 1e-5 (VE)",
            )
        _needs_kernel(self.weighting, "weighting", sde, "use weighting g2 or uniform")
        _needs_kernel(self.time_sampling, "time_sampling", sde, "use time_sampling uniform")
        _needs_kernel(
            self.source,
            "source",
            sde,
            "use source simulation (or auto), or an SDE with a Gaussian kernel "
            "(ou, ve, vp, subvp, affine)",
        )
        simulated = isinstance(self.source, SimulationSource) and not (
            isinstance(self.source, AutoSource) and isinstance(sde, AbstractGaussianSDE)
        )
        if simulated and not isinstance(self.time_sampling, UniformTimes):
            raise SpecFieldError(
                "time_sampling",
                f"'{self.time_sampling.tag}' cannot apply to simulated paths, whose times lie "
                "on their uniform grid: use time_sampling uniform",
            )

    @abc.abstractmethod
    def pointwise(
        self,
        model: ScoreFn,
        t: Scalar,
        xt: Vector,
        x0: Vector,
        key: PRNGKeyArray,
        condition: Condition = None,
    ) -> Scalar:
        """ℓ at one (t, x_t), x_t drawn from x₀ (whose conditional only DSM uses); ``model`` is
        already bound to the point's ``condition`` (None if unconditional)."""

    def weight(self, t: Scalar) -> Scalar:
        """λ(t)."""
        return self.weighting(self.sde, t)

    def sample_times(
        self, n: int, *, key: PRNGKeyArray
    ) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        """``n`` times and their weights λ(t)/(π(t)(T − ε)) (just λ(t) when π is uniform)."""
        t, correction = self.time_sampling.sample(self.sde, self.eps, n, key=key)
        return t, jax.vmap(self.weight)(t) * correction

    def draw(
        self, x0: Float[Array, "n dim"], *, key: PRNGKeyArray
    ) -> tuple[Times, Times, Points, Points]:
        """Points (t, weight, x_t, x₀) the loss averages over (from ``source``)."""
        return self.source.draw(self, x0, key=key)

    def loss(
        self,
        model: ScoreFn,
        x0: Float[Array, "n dim"],
        *,
        key: PRNGKeyArray,
        condition: Conditions = None,
    ) -> Scalar:
        rows = x0.shape[0]
        t, w, xt, x0 = self.draw(x0, key=key)
        # Projection keys (SSM) from a stream `draw` never uses: fold_in(key, 1) would equal
        # split(key)[1], the key of the x_t noise, and correlate v with z (a biased gradient).
        keys = jr.split(jr.fold_in(key, 2**31 - 1), t.shape[0])
        if condition is None:
            return jnp.mean(w * jax.vmap(lambda *a: self.pointwise(model, *a))(t, xt, x0, keys))
        # a source draws each batch row's points consecutively (times_per_path of them)
        per_row = t.shape[0] // rows
        condition = jax.tree.map(lambda c: jnp.repeat(c, per_row, axis=0), condition)

        def one(t, xt, x0, key, c):
            return self.pointwise(bind_condition(model, c), t, xt, x0, key, c)

        return jnp.mean(w * jax.vmap(one)(t, xt, x0, keys, condition))

    spec_moved: ClassVar[dict[str, str]] = {"steps": "simulation_steps"}

    @classmethod
    def spec_aliases(cls, data: dict) -> dict:
        """The flat keys of diffsde 0.1, ``simulation_steps`` and ``times_per_path``, are the
        ``source``'s ``steps`` and ``times_per_path``."""
        moved = {
            new: data.pop(old)
            for old, new in (("simulation_steps", "steps"), ("times_per_path", "times_per_path"))
            if old in data
        }
        if moved and "source" not in {f.name for f in dataclasses.fields(cls)}:
            return data  # dsm, esm: always the kernel; 0.1 accepted (and ignored) these keys
        if moved:
            source = data.get("source", "auto")
            source = {"type": source} if isinstance(source, str) else dict(source)
            data["source"] = {**source, **moved}
        return data


class AbstractRegressionScoreMatching(AbstractWeightedScoreMatching):
    """ℓ = |s_θ(x_t, t) − target(t, x_t, x₀)|²."""

    @abc.abstractmethod
    def target(self, t: Scalar, xt: Vector, x0: Vector, condition: Condition = None) -> Vector:
        """What s_θ(x_t, t) is regressed on (given the point's condition, if any)."""

    def pointwise(self, model, t, xt, x0, key, condition=None) -> Scalar:
        del key
        return jnp.sum((model(xt, t) - self.target(t, xt, x0, condition)) ** 2)


class DenoisingScoreMatching(AbstractRegressionScoreMatching):
    """Denoising score matching (Vincent 2011): regress on ∇ log p(x_t | x₀) of the SDE's
    Gaussian kernel."""

    tag: ClassVar[str] = "dsm"
    sde: AbstractGaussianSDE
    weighting: AbstractWeighting = Sigma2Weighting()
    time_sampling: AbstractTimeDistribution = UniformTimes()
    eps: Positive = eqx.field(static=True, default=1e-3)
    source: ClassVar[AbstractXtSource] = KernelSource()

    def target(self, t, xt, x0, condition=None) -> Vector:
        del condition  # ∇ log p(x_t | x₀): x₀ was drawn given the condition already
        return self.sde.conditional_score(t, xt, x0)


class ExplicitScoreMatching(AbstractRegressionScoreMatching):
    """Explicit score matching: regress on the exact score of p_t, for data that know it under
    the SDE (a dataset implementing :class:`diffsde.ExactScore`, such as a Gaussian mixture
    under an SDE with a Gaussian kernel), for calibration."""

    tag: ClassVar[str] = "esm"
    sde: AbstractGaussianSDE
    data: ExactScore
    weighting: AbstractWeighting = Sigma2Weighting()
    time_sampling: AbstractTimeDistribution = UniformTimes()
    eps: Positive = eqx.field(static=True, default=1e-3)
    source: ClassVar[AbstractXtSource] = KernelSource()

    def __check_init__(self):
        if not self.data.knows_score(self.sde):
            raise SpecFieldError(
                "type",
                f"objective 'esm' needs the exact score of the data under the SDE, and "
                f"{type(self.data).__name__} does not know it under {type(self.sde).__name__} "
                "(its knows_score(sde) is False): choose objective dsm, or data and an SDE "
                "whose exact score is known (e.g. gmm with vp)",
            )

    def target(self, t, xt, x0, condition=None) -> Vector:
        del x0
        return self.data.score(xt, t, self.sde, condition)


class ImplicitScoreMatching(AbstractWeightedScoreMatching):
    """Implicit score matching (Hyvärinen 2005): ℓ = |s_θ|² + 2 ∇·s_θ, the divergence exact
    (the Jacobian by d forward-mode JVPs, vectorised): cost grows with d, for small d.

    Twice the textbook ½|s|² + ∇·s, so that ℓ equals |s_θ − ∇log p_t|² − |∇log p_t|² in
    expectation: the same gradient as ESM and DSM with the same weighting."""

    tag: ClassVar[str] = "ism"
    sde: AbstractSDE
    weighting: AbstractWeighting = G2Weighting()
    time_sampling: AbstractTimeDistribution = UniformTimes()
    eps: Positive = eqx.field(static=True, default=1e-3)
    source: AbstractXtSource = AutoSource()

    def pointwise(self, model, t, xt, x0, key, condition=None) -> Scalar:
        del x0, key, condition  # model is bound to the condition
        score = model(xt, t)
        jacobian = jax.jacfwd(lambda x: model(x, t))(xt)
        return jnp.sum(score**2) + 2 * jnp.trace(jacobian)


Projection = Literal["rademacher", "gaussian"]


class SlicedScoreMatching(AbstractWeightedScoreMatching):
    """Sliced score matching (Song et al. 2019): ℓ = 2 vᵀ∇(vᵀs_θ) + (vᵀs_θ)², averaged over
    ``n_projections`` directions v (Rademacher or standard Gaussian, E[vvᵀ] = I), each one JVP:
    cost independent of d. ``variance_reduction`` replaces (vᵀs_θ)² by its expectation |s_θ|²
    (SSM-VR). Scaled like `ImplicitScoreMatching`, whose ℓ it estimates without bias."""

    tag: ClassVar[str] = "ssm"
    sde: AbstractSDE
    weighting: AbstractWeighting = G2Weighting()
    time_sampling: AbstractTimeDistribution = UniformTimes()
    eps: Positive = eqx.field(static=True, default=1e-3)
    source: AbstractXtSource = AutoSource()
    n_projections: Annotated[int, pydantic.Field(ge=1)] = eqx.field(static=True, default=1)
    projection: Projection = eqx.field(static=True, default="rademacher")
    variance_reduction: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if self.n_projections < 1:
            raise SpecFieldError("n_projections", f"is {self.n_projections}: use at least one")
        if self.projection not in ("rademacher", "gaussian"):
            raise SpecFieldError(
                "projection", f"{self.projection!r} is unknown; choose 'rademacher' or 'gaussian'"
            )

    def pointwise(self, model, t, xt, x0, key, condition=None) -> Scalar:
        del x0, condition  # model is bound to the condition
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


OBJECTIVES = (
    DenoisingScoreMatching,
    ExplicitScoreMatching,
    ImplicitScoreMatching,
    SlicedScoreMatching,
)
"""The built-in objectives (registered by ``diffsde._builtin``)."""
OBJECTIVE_PARTS = (
    Sigma2Weighting,
    G2Weighting,
    UniformWeighting,
    UniformTimes,
    ImportanceTimes,
    KernelSource,
    SimulationSource,
    AutoSource,
)
"""The built-in parts of objectives."""
