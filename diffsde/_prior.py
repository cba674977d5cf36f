"""Noise priors p_noise ≈ p_T: where the reverse process starts."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._custom_types import Scalar
from ._expression import Expression


class AbstractPrior(eqx.Module):
    """A distribution on R^dim with samples, log-density and score."""

    dim: eqx.AbstractVar[int]

    @abc.abstractmethod
    def sample(self, *, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        """``n`` independent samples."""

    @abc.abstractmethod
    def log_prob(self, x: Float[Array, " dim"]) -> Scalar:
        """Normalised log-density at one point."""

    def score(self, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """∇ log p(x)."""
        return jax.grad(self.log_prob)(x)


class GaussianPrior(AbstractPrior):
    """N(mean, std² I) (``std`` a scalar or one value per dimension)."""

    dim: int = eqx.field(static=True)
    mean: Float[Array, " dim"]
    std: Float[Array, " dim"]

    def __init__(self, dim: int, mean=0.0, std=1.0):
        self.dim = dim
        self.mean = jnp.broadcast_to(jnp.asarray(mean, jnp.float32), (dim,))
        self.std = jnp.broadcast_to(jnp.asarray(std, jnp.float32), (dim,))

    def __check_init__(self):
        if not isinstance(self.std, jax.core.Tracer) and bool(jnp.any(self.std <= 0)):
            raise ValueError(f"GaussianPrior std must be positive, got {self.std}")

    def sample(self, *, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        return self.mean + self.std * jr.normal(key, (n, self.dim))

    def log_prob(self, x: Float[Array, " dim"]) -> Scalar:
        z = (x - self.mean) / self.std
        return (
            -0.5 * jnp.sum(z**2) - jnp.sum(jnp.log(self.std)) - 0.5 * self.dim * jnp.log(2 * jnp.pi)
        )

    def score(self, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        return -(x - self.mean) / self.std**2


class GibbsPrior(AbstractPrior):
    """p(x) = exp(−U(x)) / Z for a potential ``U`` given as an expression in ``x``.

    Sampling: sampling-importance-resampling from a broad Gaussian proposal N(0, s² I) puts
    mass in every well, then ``mala_steps`` Metropolis-adjusted Langevin steps correct it
    locally (MALA leaves e^{−U} exactly invariant). ``log Z`` is the importance-sampling
    estimate from ``n_normaliser`` proposal draws with a fixed key, so ``log_prob`` is
    deterministic; its relative accuracy is that of the estimate (about 1/sqrt(ESS)).
    """

    dim: int = eqx.field(static=True)
    potential: Expression
    proposal_std: float = eqx.field(static=True)
    mala_steps: int = eqx.field(static=True)
    mala_step_size: float = eqx.field(static=True)
    log_normaliser: Scalar

    def __init__(
        self,
        dim: int,
        potential: Expression,
        proposal_std: float = 3.0,
        mala_steps: int = 200,
        mala_step_size: float = 0.05,
        n_normaliser: int = 2**18,
    ):
        self.dim = dim
        self.potential = potential
        self.proposal_std = proposal_std
        self.mala_steps = mala_steps
        self.mala_step_size = mala_step_size
        y, log_q = self._proposal(jr.key(0), n_normaliser)
        log_w = -jax.vmap(self._energy)(y) - log_q
        self.log_normaliser = jax.scipy.special.logsumexp(log_w) - jnp.log(n_normaliser)

    def _energy(self, x):
        return self.potential(x=x)

    def _proposal(self, key, n):
        y = self.proposal_std * jr.normal(key, (n, self.dim))
        log_q = -0.5 * jnp.sum((y / self.proposal_std) ** 2, axis=-1) - self.dim * (
            jnp.log(self.proposal_std) + 0.5 * jnp.log(2 * jnp.pi)
        )
        return y, log_q

    def log_prob(self, x: Float[Array, " dim"]) -> Scalar:
        return -self._energy(x) - self.log_normaliser

    def score(self, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        return -jax.grad(self._energy)(x)

    def sample(self, *, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        pkey, rkey, mkey = jr.split(key, 3)
        y, log_q = self._proposal(pkey, 16 * n)
        log_w = -jax.vmap(self._energy)(y) - log_q
        # jr.choice draws n indices in O(n log n); jr.categorical with shape=(n,) would build an
        # (n, 16n) array of Gumbel noise
        x = y[jr.choice(rkey, 16 * n, shape=(n,), p=jax.nn.softmax(log_w))]
        h = self.mala_step_size
        energy_and_grad = jax.vmap(jax.value_and_grad(self._energy))

        def mala(carry, step_key):
            x, u, gu = carry
            nkey, akey = jr.split(step_key)
            prop = x - h * gu + jnp.sqrt(2 * h) * jr.normal(nkey, x.shape)
            u_p, gu_p = energy_and_grad(prop)
            fwd = jnp.sum((prop - x + h * gu) ** 2, -1) / (4 * h)
            bwd = jnp.sum((x - prop + h * gu_p) ** 2, -1) / (4 * h)
            log_accept = -u_p + u - bwd + fwd
            accept = jnp.log(jr.uniform(akey, (x.shape[0],))) < log_accept
            keep = accept[:, None]
            return (
                jnp.where(keep, prop, x),
                jnp.where(accept, u_p, u),
                jnp.where(keep, gu_p, gu),
            ), None

        u, gu = energy_and_grad(x)
        (x, _, _), _ = jax.lax.scan(mala, (x, u, gu), jr.split(mkey, self.mala_steps))
        return x
