"""Datasets: samplers of p_data, and the Gaussian mixture whose score is known at every t."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._custom_types import Scalar, ScalarLike, Vector
from ._sde._base import AbstractGaussianSDE


class AbstractDataset(eqx.Module):
    """A distribution on R^dim that can be sampled."""

    dim: eqx.AbstractVar[int]

    @abc.abstractmethod
    def sample(self, *, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        """``n`` independent samples of p_data."""


class GaussianMixture(AbstractDataset):
    """Σ_k w_k N(m_k, s_k² I) with exact log-density, and exact score of p_t under any SDE with a
    Gaussian kernel: component k becomes N(E[X_t | X_0 = m_k], (λ_t² s_k² + σ_t²) I).
    """

    dim: int = eqx.field(static=True)
    log_weights: Float[Array, " k"]
    means: Float[Array, "k dim"]
    stds: Float[Array, " k"]

    def __init__(self, weights, means, stds):
        means = jnp.asarray(means, jnp.float32)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (components, dim), got {means.shape}")
        k, self.dim = means.shape
        weights = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), (k,))
        self.log_weights = jnp.log(weights / jnp.sum(weights))
        self.means = means
        self.stds = jnp.broadcast_to(jnp.asarray(stds, jnp.float32), (k,))

    def sample(self, *, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        ckey, nkey = jr.split(key)
        k = jr.categorical(ckey, self.log_weights, shape=(n,))
        return self.means[k] + self.stds[k, None] * jr.normal(nkey, (n, self.dim))

    def _log_prob(self, x: Vector, means, stds) -> Scalar:
        sq = jnp.sum((x - means) ** 2, axis=-1)
        log_comp = -0.5 * sq / stds**2 - self.dim * (jnp.log(stds) + 0.5 * jnp.log(2 * jnp.pi))
        return jax.scipy.special.logsumexp(self.log_weights + log_comp)

    def log_prob(self, x: Vector) -> Scalar:
        """log p_data(x)."""
        return self._log_prob(x, self.means, self.stds)

    def marginal(self, sde: AbstractGaussianSDE, t: ScalarLike) -> tuple[Array, Array]:
        """Means and standard deviations of the components of p_t."""
        lam, sigma = sde.kernel(t)
        means = jax.vmap(lambda m: sde.marginal_mean(t, m))(self.means)
        return means, jnp.sqrt(lam**2 * self.stds**2 + sigma**2)

    def marginal_log_prob(self, x: Vector, t: ScalarLike, sde: AbstractGaussianSDE) -> Scalar:
        """log p_t(x), exactly."""
        return self._log_prob(x, *self.marginal(sde, t))

    def score(self, x: Vector, t: ScalarLike, sde: AbstractGaussianSDE) -> Vector:
        """∇ log p_t(x), exactly: a posterior-weighted sum of component scores."""
        means, stds = self.marginal(sde, t)
        sq = jnp.sum((x - means) ** 2, axis=-1)
        log_comp = -0.5 * sq / stds**2 - self.dim * jnp.log(stds)
        resp = jax.nn.softmax(self.log_weights + log_comp)
        return jnp.sum(resp[:, None] * (means - x) / stds[:, None] ** 2, axis=0)


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
