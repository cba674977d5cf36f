"""Datasets: samplers of p_data, the Gaussian mixture whose score is known at every t, and finite
data sets (arrays split into training and held-out rows, the shipped 8×8 digits).

A dataset may yield a *condition* with each point (:meth:`AbstractDataset.sample_conditions`):
a labelled Gaussian mixture yields the index of the component each point was drawn from. A
training batch (:meth:`AbstractDataset.batch`) is then a :class:`ConditionedBatch`; a dataset
without conditions yields the plain array of points, as it always did.
"""

import abc
import importlib.resources
import typing
from collections.abc import Callable
from typing import ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, PyTree, Real

from ._custom_types import Condition, Conditions, Scalar, ScalarLike, Vector
from ._sde._base import AbstractGaussianSDE, AbstractSDE


@typing.runtime_checkable
class ExactScore(typing.Protocol):
    """A dataset that knows the exact score ∇ log p_t of its marginals under some SDEs.

    ``knows_score(sde)``: whether :meth:`score` is exact for ``sde`` (a Gaussian mixture knows
    it for every SDE with a Gaussian kernel, ``isinstance(sde, AbstractGaussianSDE)``).
    ``score(x, t, sde, condition=None)``: ∇ log p_t(x) for one point x, or ∇ log p_t(x | c)
    given a condition c (for a dataset with conditions); traceable under ``jax.jit``.

    The score is computed from the SDE's own kernel: for an SDE whose kernel is wrong, the
    "exact" score is the exact score of the wrong marginals. What uses it (the ``esm`` metric
    and objective, ``diffsde check``) can therefore judge a learned score or a sampler, never
    the SDE itself.
    """

    def knows_score(self, sde: AbstractSDE) -> bool:
        """Whether :meth:`score` is the exact score of p_t under ``sde``."""
        ...

    def score(
        self, x: Vector, t: ScalarLike, sde: AbstractSDE, condition: Condition = None
    ) -> Vector:
        """∇ log p_t(x) (of p_t(x | condition) given one), exactly."""
        ...


@typing.runtime_checkable
class ExactMoments(typing.Protocol):
    """A dataset that knows its mean and covariance exactly (``moments`` compares with them
    instead of the held-out sample's)."""

    def mean(self) -> Vector:
        """E[X]."""
        ...

    def covariance(self) -> Float[Array, "dim dim"]:
        """Cov[X]."""
        ...


def exact_score(dataset: object, sde: AbstractSDE) -> Callable[..., Vector] | None:
    """The exact score ``(x, t, condition=None) -> ∇ log p_t(x)`` of ``dataset``'s marginals
    under ``sde``, or None when the dataset does not know it (it does not implement
    :class:`ExactScore`, or its ``knows_score(sde)`` is False)."""
    if not isinstance(dataset, ExactScore) or not dataset.knows_score(sde):
        return None

    def score(x: Vector, t: ScalarLike, condition: Condition = None) -> Vector:
        return dataset.score(x, t, sde, condition)

    return score


class ConditionedBatch(eqx.Module):
    """A training batch of points ``x`` and their ``condition`` (one row per point)."""

    x: Float[Array, "n dim"]
    condition: PyTree


def split_batch(batch: PyTree) -> tuple[Float[Array, "n dim"], Conditions]:
    """(points, conditions or None) of a batch from :meth:`AbstractDataset.batch`."""
    if isinstance(batch, ConditionedBatch):
        return batch.x, batch.condition
    return batch, None


class AbstractDataset(eqx.Module):
    """A distribution on R^dim that can be sampled, optionally with a condition per point.

    ``classes``: the number of class labels :meth:`sample_conditions` yields (0: it yields no
    conditions).
    """

    dim: eqx.AbstractVar[int]
    # (height, width) when each row is a flattened image (for plotting), else None.
    image_shape: ClassVar[tuple[int, ...] | None] = None

    @abc.abstractmethod
    def sample(self, *, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        """``n`` independent samples of p_data."""

    @property
    def classes(self) -> int:
        """Number of class labels the conditions take (0: no conditions)."""
        return 0

    def sample_conditions(
        self, *, key: PRNGKeyArray, n: int
    ) -> tuple[Float[Array, "n dim"], Conditions]:
        """``n`` samples of the joint law of (x, condition): the points are those of
        :meth:`sample` with the same key; the conditions are None for a dataset without."""
        return self.sample(key=key, n=n), None

    def batch(self, *, key: PRNGKeyArray, n: int) -> PyTree:
        """What one training step gets: the points of :meth:`sample`, or, for a dataset with
        conditions, a :class:`ConditionedBatch` of those points and their conditions."""
        x, condition = self.sample_conditions(key=key, n=n)
        return x if condition is None else ConditionedBatch(x, condition)

    def held_out_conditions(
        self, *, key: PRNGKeyArray, n: int
    ) -> tuple[Float[Array, "m dim"], Conditions]:
        """The points of :meth:`held_out` and their conditions (None without)."""
        return self.held_out(key=key, n=n), None

    def given(self, condition: int) -> "AbstractDataset":
        """The conditional law p_data(x | condition), as a dataset without conditions."""
        raise ValueError(
            f"{type(self).__name__} yields no conditions, so it has no law given condition "
            f"{condition}: use labelled data (e.g. data: {{type: gmm, labels: true}})"
        )

    def held_out(self, *, key: PRNGKeyArray, n: int) -> Float[Array, "m dim"]:
        """Evaluation samples that training never sees (m ≤ n rows).

        A generative data set draws ``n`` fresh samples from ``jr.fold_in(key, 1)``, a stream
        that training (which splits its own keys) does not use; a finite data set returns rows of
        its held-out split instead (:class:`ArrayDataset`).
        """
        return self.sample(key=jr.fold_in(key, 1), n=n)


class GaussianMixture(AbstractDataset):
    """Σ_k w_k N(m_k, s_k² I) with exact log-density, and exact score of p_t under any SDE with a
    Gaussian kernel: component k becomes N(E[X_t | X_0 = m_k], (λ_t² s_k² + σ_t²) I).

    ``labelled``: each point comes with the index k of its component as its condition, and
    ``score(x, t, sde, condition=k)`` is the exact score of p_t(x | k), component k's alone.

    Implements :class:`ExactScore` for every SDE with a Gaussian kernel whose mean m_t(x₀) is
    affine in x₀ (λ_t x₀, or μ + λ_t (x₀ − μ)), and :class:`ExactMoments`.
    """

    dim: int = eqx.field(static=True)
    log_weights: Float[Array, " k"]
    means: Float[Array, "k dim"]
    stds: Float[Array, " k"]
    labelled: bool = eqx.field(static=True)

    def __init__(self, weights, means, stds, *, labelled: bool = False):
        means = jnp.asarray(means, jnp.float32)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (components, dim), got {means.shape}")
        k, self.dim = means.shape
        weights = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), (k,))
        self.log_weights = jnp.log(weights / jnp.sum(weights))
        self.means = means
        self.stds = jnp.broadcast_to(jnp.asarray(stds, jnp.float32), (k,))
        self.labelled = labelled

    @property
    def classes(self) -> int:
        return self.means.shape[0] if self.labelled else 0

    def _draw(self, key: PRNGKeyArray, n: int) -> tuple[Float[Array, "n dim"], Int[Array, " n"]]:
        ckey, nkey = jr.split(key)
        k = jr.categorical(ckey, self.log_weights, shape=(n,))
        return self.means[k] + self.stds[k, None] * jr.normal(nkey, (n, self.dim)), k

    def sample(self, *, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        return self._draw(key, n)[0]

    def sample_conditions(self, *, key, n):
        """The points of :meth:`sample` and, when ``labelled``, their components (int32)."""
        x, k = self._draw(key, n)
        return x, (k.astype(jnp.int32) if self.labelled else None)

    def held_out_conditions(self, *, key, n):
        return self.sample_conditions(key=jr.fold_in(key, 1), n=n)

    def given(self, condition: int) -> "GaussianMixture":
        """Component ``condition`` alone: N(m_c, s_c² I), unlabelled."""
        if not self.labelled:
            return super().given(condition)
        if not 0 <= condition < self.classes:
            raise ValueError(
                f"condition {condition} is not a component of this mixture: give one in "
                f"0..{self.classes - 1}"
            )
        c = int(condition)
        return GaussianMixture(1.0, self.means[c : c + 1], self.stds[c : c + 1])

    def _log_prob(self, x: Vector, means, stds) -> Scalar:
        sq = jnp.sum((x - means) ** 2, axis=-1)
        log_comp = -0.5 * sq / stds**2 - self.dim * (jnp.log(stds) + 0.5 * jnp.log(2 * jnp.pi))
        return jax.scipy.special.logsumexp(self.log_weights + log_comp)

    def mean(self) -> Vector:
        """E[X] = Σ_k w_k m_k."""
        return jnp.exp(self.log_weights) @ self.means

    def covariance(self) -> Float[Array, "dim dim"]:
        """Cov[X] = Σ_k w_k (s_k² I + (m_k − m)(m_k − m)ᵀ), with m the mixture mean."""
        weights = jnp.exp(self.log_weights)
        centred = self.means - self.mean()
        between = (weights[:, None] * centred).T @ centred
        return between + jnp.sum(weights * self.stds**2) * jnp.eye(self.dim)

    def log_prob(self, x: Vector, condition: Condition = None) -> Scalar:
        """log p_data(x), or log p_data(x | condition) (component ``condition``'s density)."""
        if condition is not None:
            return _gaussian_log_prob(x, self.means[condition], self.stds[condition])
        return self._log_sum_exp(x, jnp.zeros(self.dim), jnp.ones(()), self.stds)[0]

    def knows_score(self, sde: AbstractSDE) -> bool:
        """The score is exact under every SDE with a Gaussian kernel."""
        return isinstance(sde, AbstractGaussianSDE)

    def marginal(self, sde: AbstractGaussianSDE, t: ScalarLike) -> tuple[Array, Array]:
        """Means and standard deviations of the components of p_t."""
        lam, sigma = sde.kernel(t)
        means = jax.vmap(lambda m: sde.marginal_mean(t, m))(self.means)
        return means, jnp.sqrt(lam**2 * self.stds**2 + sigma**2)

    def _kernel(self, sde: AbstractGaussianSDE, t: ScalarLike) -> tuple[Vector, Scalar, Array]:
        """(c_t, λ_t, s_k(t)): component k of p_t is N(c_t + λ_t m_k, s_k(t)² I), with
        c_t = m_t(0) (the kernel mean is affine in x₀)."""
        lam, sigma = sde.kernel(t)
        offset = sde.marginal_mean(t, jnp.zeros(self.dim))
        return offset, lam, jnp.sqrt(lam**2 * self.stds**2 + sigma**2)

    def _log_sum_exp(
        self, x: Vector, offset: Vector, lam: Scalar, stds: Float[Array, " k"]
    ) -> tuple[Scalar, Vector]:
        """(log Σ_k w_k N(x; c + λ m_k, s_k² I), its gradient in x) in matrix-product form.

        With y = x − c and the means centred on their average m̄ (which keeps the float32
        cancellation in ‖y‖² − 2 y·m + ‖m‖² small): ‖y − λ m_k‖² = ‖y'‖² − 2λ y'·m'_k + λ²‖m'_k‖²
        (y' = y − λ m̄, m' = m − m̄), and the gradient Σ_k r_k (λ m_k − y)/s_k² is
        λ (r/s²) @ m' − y' Σ_k r_k/s_k². Vectorised over points this is two matrix products,
        never a (points, components, dim) array. Above :data:`COMPONENT_BLOCK` components a
        scan over blocks of components keeps a running log-sum-exp, so the memory is bounded
        by the block, not the number of components. Up to :data:`DIRECT_DIM` dimensions the
        squared distances come from the differences instead.
        """
        centre = jnp.mean(self.means, axis=0)
        y = x - offset - lam * centre
        means = self.means - centre
        sq_means = jnp.sum(means**2, axis=-1)
        sq_y = jnp.sum(y**2)
        # -0.5 d log 2π is the same for every component: added to the result, not the logits
        const = -0.5 * self.dim * jnp.log(2 * jnp.pi)

        def logits_of(means, sq_means, log_weights, stds, direct=self.dim <= DIRECT_DIM):
            if direct:  # the differences: no more work than the products, no cancellation
                sq = jnp.sum((y - lam * means) ** 2, axis=-1)
            else:
                sq = jnp.maximum(sq_y - 2 * lam * (y @ means.T) + lam**2 * sq_means, 0.0)
            return log_weights - 0.5 * sq / stds**2 - self.dim * jnp.log(stds)

        k = self.means.shape[0]
        size = min(k, COMPONENT_BLOCK)
        blocks = -(-k // size)
        pad = blocks * size - k

        def split(a, fill):
            a = jnp.concatenate([a, jnp.full((pad, *a.shape[1:]), fill, a.dtype)])
            return a.reshape(blocks, size, *a.shape[1:])

        # padding: weight 0 (log −inf), std 1, mean 0
        xs = (split(means, 0.0), split(sq_means, 0.0), split(self.log_weights, -jnp.inf))
        xs = (*xs, split(stds, 1.0), jnp.arange(blocks) * size)

        def step(carry, xs):
            shift, best, total, weighted, precision = carry
            *parts, start = xs
            logits = logits_of(*parts)
            top = jnp.argmax(logits)
            new = jax.lax.stop_gradient(jnp.maximum(shift, logits[top]))
            rescale = jnp.exp(shift - new)
            p = jnp.exp(logits - new)
            q = p / parts[3] ** 2
            carry = (
                new,
                jnp.where(logits[top] > shift, start + top, best),
                total * rescale + jnp.sum(p),
                weighted * rescale + q @ parts[0],
                precision * rescale + jnp.sum(q),
            )
            return carry, None

        zero = jnp.zeros((), means.dtype)
        init = (jnp.asarray(-jnp.inf, means.dtype), 0, zero, jnp.zeros(self.dim), zero)
        if blocks == 1:
            carry, _ = step(init, jax.tree.map(lambda a: a[0], xs))
        else:
            carry, _ = jax.lax.scan(step, init, xs)
        shift, best, total, weighted, precision = carry
        # the largest term again, from its differences: in the expanded form its logit (the
        # shift, by construction) carries the cancellation error ~1e-7 ‖y‖²/s², which alone
        # would dominate log p near the data. Its term in `total` is exp(0) = 1 exactly; the
        # value 1 is removed with the expanded form's derivative.
        parts = (means[best], sq_means[best], self.log_weights[best], stds[best])
        expanded = logits_of(*parts)
        removed = jnp.exp(expanded - jax.lax.stop_gradient(expanded))
        change = jnp.exp(logits_of(*parts, direct=True) - shift) - removed
        total = total + change
        weighted = weighted + change / parts[3] ** 2 * parts[0]
        precision = precision + change / parts[3] ** 2
        log_p = shift + jnp.log(total) + const
        return log_p, (lam * weighted - y * precision) / total

    def marginal_log_prob(
        self, x: Vector, t: ScalarLike, sde: AbstractGaussianSDE, condition: Condition = None
    ) -> Scalar:
        """log p_t(x), exactly; log p_t(x | condition) given a component index."""
        offset, lam, stds = self._kernel(sde, t)
        if condition is not None:
            mean = offset + lam * self.means[condition]
            return _gaussian_log_prob(x, mean, stds[condition])
        return self._log_sum_exp(x, offset, lam, stds)[0]

    def score(
        self, x: Vector, t: ScalarLike, sde: AbstractGaussianSDE, condition: Condition = None
    ) -> Vector:
        """∇ log p_t(x), exactly: a posterior-weighted sum of component scores; given a
        component index ``condition``, ∇ log p_t(x | condition) = (m_c(t) − x)/s_c(t)², that
        component's score alone. Matrix products over points and components (see
        :meth:`_log_sum_exp`): components of std 0 (an empirical distribution) work for t > 0."""
        offset, lam, stds = self._kernel(sde, t)
        if condition is not None:
            return (offset + lam * self.means[condition] - x) / stds[condition] ** 2
        return self._log_sum_exp(x, offset, lam, stds)[1]


COMPONENT_BLOCK = 512
"""Components per block of :meth:`GaussianMixture._log_sum_exp`'s scan (above this many)."""

DIRECT_DIM = 4
"""Up to this dimension :meth:`GaussianMixture._log_sum_exp` forms the differences y − λm_k:
they cost no more than the products there, and keep the squared distances exact to rounding
(the expanded form loses ~1e-7 ‖y‖²/s² to cancellation, which in 2-D, where thousands of
components can overlap at a scale s ≪ ‖y‖, reaches 3e-5 in the score)."""


def _gaussian_log_prob(x: Vector, mean: Vector, std: Scalar) -> Scalar:
    """log N(x; mean, std² I)."""
    sq = jnp.sum((x - mean) ** 2)
    return -0.5 * sq / std**2 - x.shape[-1] * (jnp.log(std) + 0.5 * jnp.log(2 * jnp.pi))


class TwoDToy(AbstractDataset):
    """The usual 2-D toy distributions, by name (see ``TOYS``)."""

    name: str = eqx.field(static=True)
    noise: float = eqx.field(static=True, default=0.05)
    dim: int = eqx.field(static=True, default=2)

    def __check_init__(self):
        if self.name not in TOYS:
            raise ValueError(f"unknown toy {self.name!r}; choose one of {sorted(TOYS)}")

    def sample(self, *, key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
        skey, nkey = jr.split(key)
        x = TOYS[self.name](skey, n)
        return x + self.noise * jr.normal(nkey, x.shape)


class ArrayDataset(AbstractDataset):
    """A finite data set: ``train`` rows (what training samples, with replacement) and ``test``
    rows (what :meth:`held_out` returns), both converted to float32.

    :meth:`from_array` makes the split deterministically from a seed.
    """

    train: Float[Array, "n_train dim"]
    test: Float[Array, "n_test dim"]
    dim: int = eqx.field(static=True)
    image_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        train: Real[ArrayLike, "n_train dim"],
        test: Real[ArrayLike, "n_test dim"],
        *,
        image_shape: tuple[int, ...] | None = None,
    ):
        self.train = jnp.asarray(train, jnp.float32)
        self.test = jnp.asarray(test, jnp.float32)
        self.dim = self.train.shape[1]
        self.image_shape = None if image_shape is None else tuple(image_shape)

    def __check_init__(self):
        if self.test.shape[1] != self.dim:
            raise ValueError(
                f"train rows have {self.dim} entries but test rows have {self.test.shape[1]}; "
                "both splits must have the same dimension"
            )
        if self.train.shape[0] < 1 or self.test.shape[0] < 1:
            raise ValueError(
                f"both splits need rows, got {self.train.shape[0]} train and "
                f"{self.test.shape[0]} test rows"
            )
        if self.image_shape is not None and int(np.prod(self.image_shape)) != self.dim:
            raise ValueError(
                f"image_shape {self.image_shape} has {int(np.prod(self.image_shape))} pixels, "
                f"rows have {self.dim} entries"
            )

    @classmethod
    def from_array(
        cls,
        data: Real[ArrayLike, "n dim"],
        *,
        test_fraction: float = 0.1,
        seed: int = 0,
        image_shape: tuple[int, ...] | None = None,
    ) -> "ArrayDataset":
        """Split the rows of ``data`` by a permutation drawn from ``seed`` (numpy's PCG64, so the
        split does not depend on the JAX version): round(n · test_fraction) rows are held out."""
        data = np.asarray(data)
        n_train, n_test = split_sizes(data.shape[0], test_fraction)
        order = np.random.default_rng(seed).permutation(data.shape[0])
        return cls(data[order[:n_train]], data[order[n_train:]], image_shape=image_shape)

    def sample(self, *, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        """``n`` rows of ``train`` drawn uniformly with replacement."""
        return self.train[jr.randint(key, (n,), 0, self.train.shape[0])]

    def held_out(self, *, key: PRNGKeyArray, n: int) -> Float[Array, "m dim"]:
        """All of ``test`` if it has at most ``n`` rows, else ``n`` of them chosen without
        replacement."""
        if n >= self.test.shape[0]:
            del key
            return self.test
        return self.test[jr.permutation(key, self.test.shape[0])[:n]]


MIN_SPLIT_ROWS = 2
"""Each split needs at least this many rows (unbiased metrics on the held-out set need two)."""


def split_sizes(n: int, test_fraction: float) -> tuple[int, int]:
    """(train rows, test rows) of ``n`` rows: round(n · test_fraction) are held out."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    n_test = max(MIN_SPLIT_ROWS, round(n * test_fraction))
    n_train = n - n_test
    if n_train < MIN_SPLIT_ROWS:
        raise ValueError(
            f"{n} rows are too few to split with test_fraction={test_fraction}: each split needs "
            f"at least {MIN_SPLIT_ROWS} rows (give at least "
            f"{2 * MIN_SPLIT_ROWS} rows or lower test_fraction)"
        )
    return n_train, n_test


DIGIT_SCALES: dict[str, tuple[float, float]] = {
    "signed": (1 / 8, -1.0),  # pixels 0..16 -> [-1, 1]
    "unit": (1 / 16, 0.0),  # -> [0, 1]
    "raw": (1.0, 0.0),  # the integers 0..16
}
"""Pixel maps x -> a·x + b of :func:`load_digits`, as (a, b)."""


def load_digits(
    *,
    scale: Literal["signed", "unit", "raw"] = "signed",
    test_fraction: float = 0.1,
    seed: int = 0,
) -> ArrayDataset:
    """scikit-learn's 1797 handwritten 8×8 digits (shipped in ``diffsde/_datasets/digits.npz``,
    see the README.txt there), as 64-dimensional rows with ``image_shape = (8, 8)``.

    ``scale``: ``signed`` maps the pixels 0..16 to [-1, 1] (x/8 − 1), ``unit`` to [0, 1],
    ``raw`` keeps them.
    """
    if scale not in DIGIT_SCALES:
        raise ValueError(f"unknown digits scale {scale!r}; choose one of {sorted(DIGIT_SCALES)}")
    with importlib.resources.files(__package__).joinpath("_datasets", "digits.npz").open("rb") as f:
        images = np.load(f)["images"]
    a, b = DIGIT_SCALES[scale]
    rows = images.reshape(images.shape[0], -1).astype(np.float32) * np.float32(a) + np.float32(b)
    return ArrayDataset.from_array(
        rows, test_fraction=test_fraction, seed=seed, image_shape=images.shape[1:]
    )


def _eight_gaussians(key, n):
    angles = jr.randint(key, (n,), 0, 8) * (jnp.pi / 4)
    return 2.0 * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)


def _moons(key, n):
    ukey, skey = jr.split(key)
    theta = jnp.pi * jr.uniform(ukey, (n,))
    lower = jr.bernoulli(skey, 0.5, (n,))
    x = jnp.where(lower, 1.0 - jnp.cos(theta), jnp.cos(theta))
    y = jnp.where(lower, 0.5 - jnp.sin(theta), jnp.sin(theta))
    return jnp.stack([x - 0.5, y - 0.25], -1) * 1.5


def _swiss_roll(key, n):
    theta = 1.5 * jnp.pi * (1 + 2 * jr.uniform(key, (n,)))
    return jnp.stack([theta * jnp.cos(theta), theta * jnp.sin(theta)], -1) / 5.0


def _checkerboard(key, n):
    xkey, ykey, ckey = jr.split(key, 3)
    x = 4 * jr.uniform(xkey, (n,)) - 2
    y = jr.uniform(ykey, (n,)) - 2.0 * jr.randint(ckey, (n,), 0, 2) + jnp.floor(x) % 2
    return jnp.stack([x, y], -1)


def _rings(key, n):
    rkey, akey = jr.split(key)
    radius = 0.5 * (1 + jr.randint(rkey, (n,), 0, 4))
    angle = 2 * jnp.pi * jr.uniform(akey, (n,))
    return jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], -1)


TOYS = {
    "eight_gaussians": _eight_gaussians,
    "moons": _moons,
    "swiss_roll": _swiss_roll,
    "checkerboard": _checkerboard,
    "rings": _rings,
}
