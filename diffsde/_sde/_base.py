"""The abstract forward SDE dX = b(t, X) dt + g(t) dB and its time reversal (docs/math.md §1–2)."""

import abc
from typing import ClassVar

import diffrax
import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
from jaxtyping import PRNGKeyArray

from .._custom_types import Scalar, ScalarLike, ScoreFn, Vector
from .._errors import REQUIREMENTS
from .._prior import AbstractPrior


def _diagonal_noise(g: Scalar, dim: int) -> lx.DiagonalLinearOperator:
    return lx.DiagonalLinearOperator(jnp.broadcast_to(g, (dim,)))


class AbstractSDE(eqx.Module):
    """Forward SDE dX_t = b(t, X_t) dt + g(t) dB_t on R^dim for t in [0, T].

    Subclasses give ``drift`` b(t, x), ``diffusion`` g(t) (scalar, state-independent) and
    ``prior`` (the noise distribution p_noise ≈ p_T the reverse process starts from).
    """

    dim: eqx.AbstractVar[int]
    T: eqx.AbstractVar[float]
    has_gaussian_kernel: ClassVar[bool] = False

    @abc.abstractmethod
    def drift(self, t: ScalarLike, x: Vector) -> Vector:
        """b(t, x)."""

    @abc.abstractmethod
    def diffusion(self, t: ScalarLike) -> Scalar:
        """g(t)."""

    @abc.abstractmethod
    def prior(self) -> AbstractPrior:
        """p_noise, the approximation of p_T sampled to start the reverse process."""

    # declarations read by `diffsde check` (diffsde.testing) -----------------------------------
    def prior_bias(self) -> float:
        """How far ``prior()`` may lie from the law of X_T for data N(½·1, I) (unit variance,
        means half a standard deviation from 0): the largest gap in mean and in standard
        deviation, per coordinate, in units of that law's standard deviation. 0.02 unless an SDE
        declares more (a prior that drops the kernel's mean term, as the contractive SDEs' does,
        declares its noise-approximation bias: :func:`mean_dropping_bias`)."""
        return 0.02

    def stationary_law(self) -> AbstractPrior | None:
        """A law the forward SDE leaves invariant (a stationary solution of its Fokker–Planck
        equation), or None when none is declared: Langevin's Gibbs law e^{−U}/Z, OU's
        N(0, σ²/(2θ) I), VP's N(0, I)."""
        return None

    # forward process ------------------------------------------------------------------------
    def forward_terms(self, brownian: diffrax.AbstractBrownianPath) -> diffrax.MultiTerm:
        """diffrax terms of the forward SDE in t (Brownian motion of shape (dim,))."""
        drift = diffrax.ODETerm(lambda t, x, args: self.drift(t, x))
        noise = diffrax.ControlTerm(
            lambda t, x, args: _diagonal_noise(self.diffusion(t), self.dim), brownian
        )
        return diffrax.MultiTerm(drift, noise)

    # time reversal --------------------------------------------------------------------------
    def reverse_drift(self, score: ScoreFn):
        """Drift of the reverse SDE in reversed time u = T − t (Anderson 1982):

        −b(T−u, x) + g(T−u)² s(x, T−u).
        """

        def drift(u: ScalarLike, x: Vector) -> Vector:
            t = self.T - u
            return -self.drift(t, x) + self.diffusion(t) ** 2 * score(x, t)

        return drift

    def reverse_diffusion(self, u: ScalarLike) -> Scalar:
        """g(T − u): diffusion of the reverse SDE in reversed time u."""
        return self.diffusion(self.T - u)

    def reverse_terms(
        self, score: ScoreFn, brownian: diffrax.AbstractBrownianPath
    ) -> diffrax.MultiTerm:
        """diffrax terms of the reverse SDE, integrated forwards in u from 0 to T − ε.

        Integrating forwards in u (rather than backwards in t) keeps diffrax's Brownian paths and
        SDE solvers in the direction they are tested in.
        """
        drift = self.reverse_drift(score)
        return diffrax.MultiTerm(
            diffrax.ODETerm(lambda u, x, args: drift(u, x)),
            diffrax.ControlTerm(
                lambda u, x, args: _diagonal_noise(self.reverse_diffusion(u), self.dim), brownian
            ),
        )

    def probability_flow(self, score: ScoreFn):
        """Vector field of the probability-flow ODE in forward time t: b − ½ g² s."""

        def field(t: ScalarLike, x: Vector) -> Vector:
            return self.drift(t, x) - 0.5 * self.diffusion(t) ** 2 * score(x, t)

        return field

    def probability_flow_term(self, score: ScoreFn) -> diffrax.ODETerm:
        """diffrax term of the PF-ODE, to integrate from t0=T to t1=ε (diffrax allows t1 < t0)."""
        field = self.probability_flow(score)
        return diffrax.ODETerm(lambda t, x, args: field(t, x))


class AbstractGaussianSDE(AbstractSDE):
    """An SDE whose transition kernel is Gaussian: X_t | X_0 ~ N(m_t(X_0), σ_t² I).

    Subclasses give ``kernel(t) = (λ_t, σ_t)``; the kernel mean is λ_t x₀ unless overridden
    (the contractive OU has mean μ + λ_t (x₀ − μ)). This is what denoising score matching and
    exact scores of Gaussian mixtures need.
    """

    has_gaussian_kernel: ClassVar[bool] = True

    @abc.abstractmethod
    def kernel(self, t: ScalarLike) -> tuple[Scalar, Scalar]:
        """(λ_t, σ_t): scale of the mean and standard deviation of X_t | X_0."""

    def marginal_mean(self, t: ScalarLike, x0: Vector) -> Vector:
        """E[X_t | X_0 = x0]."""
        lam, _ = self.kernel(t)
        return lam * x0

    def marginal_std(self, t: ScalarLike) -> Scalar:
        """σ_t, the standard deviation of X_t | X_0."""
        return self.kernel(t)[1]

    def sample_marginal(
        self, t: ScalarLike, x0: Vector, *, key: PRNGKeyArray
    ) -> tuple[Vector, Vector]:
        """A draw x_t = m_t(x0) + σ_t z of X_t | X_0 = x0, and the noise z ~ N(0, I)."""
        z = jr.normal(key, jnp.shape(x0))
        return self.marginal_mean(t, x0) + self.marginal_std(t) * z, z

    def conditional_score(self, t: ScalarLike, xt: Vector, x0: Vector) -> Vector:
        """∇ log p(x_t | x_0) = −(x_t − m_t(x0)) / σ_t²."""
        return -(xt - self.marginal_mean(t, x0)) / self.marginal_std(t) ** 2


def mean_dropping_bias(sde: AbstractGaussianSDE) -> float:
    """The noise-approximation bias of a Gaussian prior N(μ, σ_T² I) that drops the kernel's
    mean term λ_T x₀, for data N(½·1, I): X_T ~ N(m_T(0) + ½λ_T, s² I) with s = √(λ_T² + σ_T²),
    so the prior is 1 − σ_T/s too narrow and |μ − m_T(0) − ½λ_T|/s off in mean (units of s);
    the default 0.02 of every SDE is added."""
    lam, sigma = (float(v) for v in sde.kernel(sde.T))
    spread = (lam**2 + sigma**2) ** 0.5
    prior = sde.prior()
    mean = getattr(prior, "mean", None)
    shift = 0.5 * abs(lam)
    if mean is not None:
        kept = sde.marginal_mean(sde.T, 0.5 + 0 * mean)  # m_T of the data's mean, ½·1
        shift = float(jnp.max(jnp.abs(mean - kept)))
    return max(1.0 - sigma / spread, shift / spread) + 0.02


REQUIREMENTS[AbstractGaussianSDE] = (
    "an SDE with a Gaussian transition kernel (ou, ve, vp, subvp, affine, or a plugin's)"
)
