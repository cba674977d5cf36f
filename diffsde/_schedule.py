"""The noise schedule of an SDE with a Gaussian kernel, as the fixed-step solvers see it.

X_t | X_0 ~ N(c_t + α_t X_0, σ_t² I): α_t is the kernel's mean scale (``sde.kernel(t)[0]``,
written λ_t elsewhere), σ_t its standard deviation, c_t = m_t(0) the mean's offset (zero unless
the drift has a constant term). In centred coordinates y = x − c_t a sample reads

    y_t = α_t x_0 + σ_t ε,

the form in which DDIM, DPM-Solver, UniPC, DEIS and EDM are written. Two reparametrisations of
time carry the schedule: the log signal-to-noise ratio ℓ_t = log(α_t/σ_t), decreasing from +∞ at
t = 0, and ρ_t = σ_t/α_t = e^{−ℓ_t} (EDM's σ), increasing (ρ_t² = ∫₀ᵗ g²/α², docs/math.md §2).
Their inverses are computed by bisection on [0, T], so any Gaussian-kernel SDE has them.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._custom_types import Scalar, ScalarLike, Vector
from ._errors import SpecFieldError
from ._sde._base import AbstractGaussianSDE, AbstractSDE

BISECTION_STEPS = 48
"""Halvings of [0, T] in the inverse maps: below float32's resolution of t for T ≤ 10⁶."""


def alpha_sigma(sde: AbstractGaussianSDE, t: ScalarLike) -> tuple[Scalar, Scalar]:
    """(α_t, σ_t): the mean scale and the standard deviation of X_t | X_0."""
    return sde.kernel(t)


def log_snr(sde: AbstractGaussianSDE, t: ScalarLike) -> Scalar:
    """ℓ_t = log(α_t/σ_t), decreasing in t (+∞ at t = 0)."""
    alpha, sigma = sde.kernel(t)
    return jnp.log(alpha) - jnp.log(sigma)


def sigma_ratio(sde: AbstractGaussianSDE, t: ScalarLike) -> Scalar:
    """ρ_t = σ_t/α_t, increasing in t (EDM's σ)."""
    alpha, sigma = sde.kernel(t)
    return sigma / alpha


def _invert_decreasing(fn, target: Array, T: float) -> Array:
    """t in [0, T] with fn(t) = target, for fn decreasing in t (vectorised over ``target``)."""
    target = jnp.asarray(target, jnp.float32)

    def halve(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) / 2
        above = jax.vmap(fn)(mid) > target  # fn(mid) above the target: the root is later
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = jnp.zeros_like(target), jnp.full_like(target, T)
    lo, hi = jax.lax.fori_loop(0, BISECTION_STEPS, halve, (lo, hi))
    return (lo + hi) / 2


def time_at_log_snr(
    sde: AbstractGaussianSDE, ell: Float[Array, "*k"] | ScalarLike
) -> Float[Array, "*k"]:
    """The time t in [0, T] at which ℓ_t = ``ell`` (T beyond the range, 0 before it)."""
    ell = jnp.asarray(ell, jnp.float32)
    flat = _invert_decreasing(lambda t: log_snr(sde, t), ell.reshape(-1), sde.T)
    return flat.reshape(ell.shape)


def time_at_sigma_ratio(
    sde: AbstractGaussianSDE, rho: Float[Array, "*k"] | ScalarLike
) -> Float[Array, "*k"]:
    """The time t in [0, T] at which ρ_t = ``rho`` (clamped to [0, T])."""
    return time_at_log_snr(sde, -jnp.log(jnp.asarray(rho, jnp.float32)))


def offset(sde: AbstractGaussianSDE, t: ScalarLike, dim: int) -> Vector:
    """c_t = m_t(0), the mean of X_t | X_0 = 0."""
    return sde.marginal_mean(t, jnp.zeros(dim, jnp.float32))


def data_prediction(
    sde: AbstractGaussianSDE,
    x: Float[Array, "*n dim"],
    t: ScalarLike,
    score: Float[Array, "*n dim"],
) -> Float[Array, "*n dim"]:
    """Tweedie's x̂₀ = (x − c_t + σ_t² s)/α_t from the score s at (x, t)."""
    alpha, sigma = sde.kernel(t)
    return (x - offset(sde, t, x.shape[-1]) + sigma**2 * score) / alpha


def noise_prediction(
    sde: AbstractGaussianSDE, t: ScalarLike, score: Float[Array, "*n dim"]
) -> Float[Array, "*n dim"]:
    """ε̂ = −σ_t s from the score s at time t."""
    return -sde.kernel(t)[1] * score


def require_gaussian(sde: AbstractSDE, who: str) -> None:
    """SpecFieldError at the SDE's ``type`` unless it has a Gaussian kernel, naming ``who`` (the
    sampler or grid that needs α_t and σ_t) and the fix."""
    if not isinstance(sde, AbstractGaussianSDE):
        raise SpecFieldError(
            "type",
            f"{who} needs the SDE's Gaussian kernel (α_t, σ_t), but {type(sde).__name__} has no "
            "Gaussian transition kernel: use an SDE with one (ou, ve, vp, subvp, affine), or a "
            "sampler and grid that need none (euler_maruyama, pc, reverse_sde_adaptive or pf_ode "
            "on a uniform grid)",
        )
