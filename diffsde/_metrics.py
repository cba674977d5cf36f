"""Evaluation metrics: compare generated samples with held-out data (and the exact score, where
the data set knows it).

A metric is an :class:`AbstractMetric` called on an :class:`EvalContext`; it returns named floats
(``{}`` when it does not apply, e.g. the exact score error for data without a known score).
"""

import abc
import dataclasses
from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pydantic
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._custom_types import Scalar, ScoreFn
from ._data import AbstractDataset, ExactMoments, ExactScore, exact_score
from ._model import bind_condition
from ._prior import AbstractPrior
from ._sde._base import AbstractGaussianSDE, AbstractSDE


@dataclasses.dataclass(frozen=True)
class EvalContext:
    """What a metric may look at.

    ``samples``: generated points; ``reference``: held-out data (``dataset.held_out``);
    ``score``: the learned s_θ(x, t) for one point x, or None when there is none;
    ``key``: randomness for the metric (projections, subsampling);
    ``prior``: the p_noise ≈ p_T the sampler starts from (the spec's ``prior``), or None for the
    SDE's own ``sde.prior()``; ``reference_conditions``: the conditions of the reference rows
    (one row each) for data with conditions, else None.

    Conditions: ``score`` may be conditional (``score(x, t, condition=c)``); metrics bind each
    point's condition with ``diffsde._model.bind_condition``. To evaluate the samples of one
    class c, the pipeline passes ``dataset.given(c)``, its held-out points and the score bound to
    c: every metric then compares with p(x | c) and needs no condition of its own.
    """

    samples: Float[Array, "n dim"]
    reference: Float[Array, "m dim"]
    dataset: AbstractDataset
    sde: AbstractSDE
    score: ScoreFn | None
    key: PRNGKeyArray
    prior: AbstractPrior | None = None
    reference_conditions: PyTree | None = None


# How to read a metric's value: "min" lower is better, "max" higher is better, "zero" nearest 0
# is best (an unbiased estimate of a non-negative quantity, which can come out below 0).
Direction = Literal["min", "max", "zero"]


class AbstractMetric(eqx.Module):
    """A metric: ``metric(ctx)`` gives ``{name: value}``, or ``{}`` where it does not apply.

    ``directions`` says, for each name it returns, which value is best (a `Direction`); a name
    left out has none, and nothing is ranked on it (the dashboard highlights no "best").
    """

    kind: ClassVar[str] = "metric"
    directions: ClassVar[Mapping[str, Direction]] = {}

    @abc.abstractmethod
    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        """The metric's values on ``ctx``."""


# sliced Wasserstein ---------------------------------------------------------------------------


def _quantiles(sorted_values: Float[Array, "n p"], levels: Float[Array, " k"]) -> Array:
    """Quantile functions of the columns of ``sorted_values`` at ``levels``: linear interpolation
    between the order statistics, placed at the levels (i + ½)/n (constant beyond the ends)."""
    n = sorted_values.shape[0]
    position = jnp.clip(levels * n - 0.5, 0.0, n - 1.0)
    below = jnp.clip(jnp.floor(position).astype(jnp.int32), 0, max(n - 2, 0))
    weight = (position - below)[:, None]
    above = jnp.minimum(below + 1, n - 1)
    return (1 - weight) * sorted_values[below] + weight * sorted_values[above]


@jax.jit
def sliced_w2(
    x: Float[Array, "n dim"], y: Float[Array, "m dim"], directions: Float[Array, "p dim"]
) -> Scalar:
    """Squared sliced 2-Wasserstein distance E_v W2²(vᵀx, vᵀy), averaged over ``directions``.

    In 1-D, W2² = ∫₀¹ (F_x⁻¹(u) − F_y⁻¹(u))² du; both quantile functions are evaluated on the
    common grid u_k = (k + ½)/K, K = max(n, m). For n = m this is the exact W2² between the two
    empirical measures (matching sorted values).
    """
    k = max(x.shape[0], y.shape[0])
    levels = (jnp.arange(k) + 0.5) / k
    qx = _quantiles(jnp.sort(x @ directions.T, axis=0), levels)
    qy = _quantiles(jnp.sort(y @ directions.T, axis=0), levels)
    return jnp.mean((qx - qy) ** 2)


class SlicedWasserstein(AbstractMetric):
    """``sliced_w2``: the *squared* sliced 2-Wasserstein distance between samples and reference,
    over ``projections`` random unit directions drawn from the context's key.

    For N(0, I) against N(μ, I) in R^d it tends to E_v (vᵀμ)² = |μ|²/d.
    """

    tag: ClassVar[str] = "sliced_w2"
    directions: ClassVar[Mapping[str, Direction]] = {"sliced_w2": "min"}

    projections: Annotated[int, pydantic.Field(gt=0)] = eqx.field(static=True, default=256)

    def __check_init__(self):
        if self.projections < 1:
            raise ValueError(f"projections must be positive, got {self.projections}")

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        z = jr.normal(ctx.key, (self.projections, ctx.samples.shape[1]))
        directions = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
        return {"sliced_w2": float(sliced_w2(ctx.samples, ctx.reference, directions))}


# maximum mean discrepancy ---------------------------------------------------------------------


def _subsample(key: PRNGKeyArray, x: Float[Array, "n dim"], most: int) -> Float[Array, "k dim"]:
    if x.shape[0] <= most:
        del key
        return x
    return x[jr.choice(key, x.shape[0], (most,), replace=False)]


def _sq_distances(x: Float[Array, "n dim"], y: Float[Array, "m dim"]) -> Float[Array, "n m"]:
    d2 = jnp.sum(x**2, -1)[:, None] + jnp.sum(y**2, -1)[None, :] - 2 * x @ y.T
    return jnp.maximum(d2, 0.0)


@jax.jit
def median_bandwidth(x: Float[Array, "n dim"]) -> Scalar:
    """The median heuristic: the median distance between distinct points of ``x`` (1.0 if all
    points coincide)."""
    d2 = _sq_distances(x, x)
    i, j = jnp.triu_indices(x.shape[0], k=1)
    median = jnp.median(d2[i, j])
    return jnp.sqrt(jnp.where(median > 0, median, 1.0))


@jax.jit
def mmd2_unbiased(x: Float[Array, "n dim"], y: Float[Array, "m dim"], bandwidth) -> Scalar:
    """Unbiased U-statistic of MMD² with k(a, b) = exp(−|a − b|² / (2 h²)), h = ``bandwidth``."""
    n, m = x.shape[0], y.shape[0]

    def gram(a, b):
        return jnp.exp(-_sq_distances(a, b) / (2 * bandwidth**2))

    kxx = (jnp.sum(gram(x, x)) - n) / (n * (n - 1))  # the diagonal is exp(0) = 1
    kyy = (jnp.sum(gram(y, y)) - m) / (m * (m - 1))
    return kxx + kyy - 2 * jnp.mean(gram(x, y))


class MMD(AbstractMetric):
    """``mmd``: unbiased MMD² between samples and reference with an RBF kernel.

    ``bandwidth`` h of k = exp(−|a − b|²/(2h²)); None takes the median heuristic on the pooled
    sample. For cost each set, and the pooled sample of the heuristic, is first subsampled
    (without replacement) to at most ``max_points`` points.
    """

    tag: ClassVar[str] = "mmd"
    directions: ClassVar[Mapping[str, Direction]] = {"mmd": "zero"}

    bandwidth: Annotated[float, pydantic.Field(gt=0)] | None = eqx.field(static=True, default=None)
    max_points: Annotated[int, pydantic.Field(ge=2)] = eqx.field(static=True, default=2000)

    def __check_init__(self):
        if self.max_points < 2:
            raise ValueError(f"max_points must be at least 2, got {self.max_points}")
        if self.bandwidth is not None and not self.bandwidth > 0:
            raise ValueError(f"bandwidth must be positive (or None), got {self.bandwidth}")

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        if ctx.samples.shape[0] < 2 or ctx.reference.shape[0] < 2:
            raise ValueError(
                "the unbiased MMD² needs at least 2 samples and 2 reference points, got "
                f"{ctx.samples.shape[0]} and {ctx.reference.shape[0]}"
            )
        xkey, ykey, bkey = jr.split(ctx.key, 3)
        x = _subsample(xkey, ctx.samples, self.max_points)
        y = _subsample(ykey, ctx.reference, self.max_points)
        if self.bandwidth is None:
            pooled = _subsample(bkey, jnp.concatenate([x, y]), self.max_points)
            bandwidth = median_bandwidth(pooled)
        else:
            bandwidth = jnp.asarray(self.bandwidth, jnp.float32)
        return {"mmd": float(mmd2_unbiased(x, y, bandwidth))}


# exact score error ----------------------------------------------------------------------------


class ExactScoreError(AbstractMetric):
    """``esm``: E_t E_{x~p_t} |s_θ(x, t) − ∇log p_t(x)|², t on a uniform grid of ``n_times``
    points in [eps, T], x_t = kernel draws from ``n_points`` fresh data samples. For labelled
    data the samples come with their components c, and the error is that of the score given c
    against the exact ∇log p_t(x | c).

    It applies when the data set knows its exact score under the SDE (it implements
    :class:`diffsde.ExactScore` and ``knows_score(sde)`` holds, e.g. a Gaussian mixture under
    an SDE with a Gaussian kernel) and a score is given; otherwise it returns ``{}`` (nothing
    is reported, rather than a NaN).

    What it can and cannot detect: it measures the learned score against the dataset's own
    claimed score under the spec's own SDE kernel. It detects a badly trained score, a wrong
    model or objective; it cannot detect an SDE whose kernel is wrong, because that wrong
    kernel makes the "exact" score (and the x_t it is measured at) wrong in the same way —
    ``diffsde check sde TAG`` tests the kernel against a simulation of the SDE. Nor does it see
    the sampler: judge the samples with ``sliced_w2``, ``mmd`` or ``moments``.
    """

    tag: ClassVar[str] = "esm"
    directions: ClassVar[Mapping[str, Direction]] = {"esm": "min"}

    n_times: Annotated[int, pydantic.Field(gt=0)] = eqx.field(static=True, default=16)
    n_points: Annotated[int, pydantic.Field(gt=0)] = eqx.field(static=True, default=512)
    eps: Annotated[float, pydantic.Field(gt=0)] = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        if self.n_times < 1 or self.n_points < 1:
            raise ValueError(
                f"n_times and n_points must be positive, got {self.n_times}, {self.n_points}"
            )
        if not self.eps > 0:
            raise ValueError(f"eps must be positive, got {self.eps}")

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        dataset, sde, score = ctx.dataset, ctx.sde, ctx.score
        # x_t is drawn from the SDE's kernel: a Gaussian one
        if (
            score is None
            or not isinstance(sde, AbstractGaussianSDE)
            or exact_score(dataset, sde) is None
        ):
            return {}
        if not self.eps < sde.T:
            raise ValueError(f"eps ({self.eps}) must be below the SDE's horizon T ({sde.T})")
        return {"esm": float(self._error(score, dataset, sde, ctx.key))}

    @eqx.filter_jit
    def _error(self, score, dataset: ExactScore, sde: AbstractGaussianSDE, key) -> Scalar:
        # jitted on (score, dataset, sde) as pytrees: a score that is an eqx.Module or
        # eqx.Partial with new parameters reuses the compilation
        ts = jnp.linspace(self.eps, sde.T, self.n_times)
        dkey, nkey = jr.split(key)
        x0, condition = dataset.sample_conditions(key=dkey, n=self.n_points)
        noise = jr.normal(nkey, (self.n_times, *x0.shape))

        def at_time(t, z):  # x_t = m_t(x0) + σ_t z, a draw of the kernel for each x0
            xt = jax.vmap(lambda x: sde.marginal_mean(t, x))(x0) + sde.marginal_std(t) * z
            if condition is None:
                learned = jax.vmap(lambda x: score(x, t))(xt)
                exact = jax.vmap(lambda x: dataset.score(x, t, sde))(xt)
            else:
                learned = jax.vmap(lambda x, c: bind_condition(score, c)(x, t))(xt, condition)
                exact = jax.vmap(lambda x, c: dataset.score(x, t, sde, c))(xt, condition)
            return jnp.mean(jnp.sum((learned - exact) ** 2, axis=-1))

        return jnp.mean(jax.vmap(at_time)(ts, noise))


# moments --------------------------------------------------------------------------------------


def _moments(x: Float[Array, "n dim"]) -> tuple[Array, Array]:
    mean = jnp.mean(x, axis=0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


class Moments(AbstractMetric):
    """``moments``: ``mean_error`` |m̂ − m| and ``cov_error`` ‖Ĉ − C‖_F of the samples (unbiased
    covariance) against the reference set, or against the exact moments when the data set knows
    them (it implements :class:`diffsde.ExactMoments`: ``mean()`` and ``covariance()``, as a
    Gaussian mixture does)."""

    tag: ClassVar[str] = "moments"
    directions: ClassVar[Mapping[str, Direction]] = {"mean_error": "min", "cov_error": "min"}

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        if ctx.samples.shape[0] < 2:
            raise ValueError(f"moments need at least 2 samples, got {ctx.samples.shape[0]}")
        if isinstance(ctx.dataset, ExactMoments) and callable(ctx.dataset.covariance):
            mean, cov = ctx.dataset.mean(), ctx.dataset.covariance()
        else:
            if ctx.reference.shape[0] < 2:
                raise ValueError(
                    f"moments need at least 2 reference points, got {ctx.reference.shape[0]}"
                )
            mean, cov = _moments(ctx.reference)
        sample_mean, sample_cov = _moments(ctx.samples)
        return {
            "mean_error": float(jnp.linalg.norm(sample_mean - mean)),
            "cov_error": float(jnp.linalg.norm(sample_cov - cov)),
        }
