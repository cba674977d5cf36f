"""The contractive SDEs COU, CVP and CsubVP (docs/math.md §2 table), on diffsde's public API only.

Each is affine, dX = f(t)(X − μ) dt + g(t) dB with f(t) > 0, so its transition kernel is
Gaussian, X_t | X_0 ~ N(μ + λ_t (X_0 − μ), σ_t² I) with λ_t = exp(∫₀ᵗ f) growing in t. The
forward drift is expansive, hence the reverse drift −f(T−u)(x − μ) is contractive: score and
discretisation errors made early in the reverse run are damped instead of amplified.

The price is the prior. p_T = N(μ + λ_T (x₀ − μ), σ_T² I) depends on the data through its mean,
and λ_T > 1 does not vanish; the noise prior N(μ, σ_T² I) drops that mean. This is the CDPM
"noise approximation bias": it is small relative to σ_T when λ_T |x₀ − μ| ≪ σ_T, which is why
CDPM uses moderate drifts (COU θ = 1, σ = 1; CVP/CsubVP β from 1 to 8).
"""

from typing import Annotated, ClassVar

import equinox as eqx
import jax.numpy as jnp
import pydantic
from jaxtyping import Array, ArrayLike, Float

import diffsde

Scalar = Float[Array, ""]
ScalarLike = float | Float[ArrayLike, ""]
Vector = Float[Array, " dim"]
Positive = Annotated[float, pydantic.Field(gt=0)]
NonNegative = Annotated[float, pydantic.Field(ge=0)]

# log of the largest kernel variance σ_T² allowed: float32 overflows at about e^88.7, and
# scores divide by σ_t², so keep a margin.
_MAX_LOG_VARIANCE = 80.0


def _check_horizon(name: str, T: float):
    if not T > 0:
        raise diffsde.SpecFieldError(
            "T", f"{name}: the time horizon must be positive, got T={T}: use e.g. T=1.0"
        )


def _check_growth(name: str, log_variance: float, field: str, fix: str):
    if not log_variance <= _MAX_LOG_VARIANCE:
        raise diffsde.SpecFieldError(
            field,
            f"{name}: the kernel variance at T grows like e^{log_variance:.4g}, beyond float32 "
            f"(e^{_MAX_LOG_VARIANCE:g} at most): {fix}",
        )


def _check_schedule(name: str, schedule: diffsde.LinearBeta, T: float):
    if schedule.T != T:
        raise ValueError(
            f"{name}: the β schedule has horizon {schedule.T} but the SDE has T={T}: build "
            f"both from the same T"
        )


class COU(diffsde.AbstractGaussianSDE):
    """Contractive Ornstein–Uhlenbeck dX = θ(X − μ) dt + σ dB with θ > 0 (expansive forward).

    Kernel mean μ + (x₀ − μ) e^{θt}, so λ_t = e^{θt}; σ_t² = σ²/(2θ)(e^{2θt} − 1).
    Prior N(μ, σ_T² I), which ignores the mean term (x₀ − μ) e^{θT} (noise approximation bias).
    """

    tag: ClassVar[str] = "cou"
    dim: int = eqx.field(static=True)
    theta: Positive = 1.0
    sigma: Positive = 1.0
    mu: float = 0.0
    T: Positive = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        _check_horizon("COU", self.T)
        if not self.theta > 0:
            raise diffsde.SpecFieldError(
                "theta",
                f"COU: theta must be positive (the forward drift expands), got "
                f"theta={self.theta}: for an ordinary, contracting OU use the built-in 'ou'",
            )
        if not self.sigma > 0:
            raise diffsde.SpecFieldError(
                "sigma", f"COU: sigma must be positive, got sigma={self.sigma}: use e.g. 1.0"
            )
        _check_growth("COU", 2 * self.theta * self.T, "theta", "lower theta or T (2·theta·T <= 80)")

    def drift(self, t: ScalarLike, x: Vector) -> Vector:
        del t
        return self.theta * (x - self.mu)

    def diffusion(self, t: ScalarLike) -> Scalar:
        del t
        return jnp.asarray(self.sigma, jnp.float32)

    def kernel(self, t: ScalarLike) -> tuple[Scalar, Scalar]:
        lam = jnp.exp(self.theta * t)
        var = self.sigma**2 / (2 * self.theta) * jnp.expm1(2 * self.theta * t)
        return lam, jnp.sqrt(var)

    def marginal_mean(self, t: ScalarLike, x0: Vector) -> Vector:
        lam, _ = self.kernel(t)
        return self.mu + lam * (x0 - self.mu)

    def prior(self) -> diffsde.GaussianPrior:
        return diffsde.GaussianPrior(self.dim, self.mu, self.marginal_std(self.T))

    def prior_bias(self) -> float:
        """The noise-approximation bias the prior declares (``diffsde check`` allows it)."""
        return diffsde.mean_dropping_bias(self)


class AbstractContractiveBetaSDE(diffsde.AbstractGaussianSDE):
    """The expansive drift +½β(t) x with a linear β (1 → 8 by default) and the prior
    N(0, σ_T² I); subclasses give g(t) and the kernel."""

    dim: int = eqx.field(static=True)
    schedule: diffsde.LinearBeta
    T: float = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        beta_min: NonNegative = 1.0,
        beta_max: Positive = 8.0,
        T: Positive = 1.0,
    ):
        _check_horizon(type(self).__name__, T)
        self.dim = dim
        self.T = T
        self.schedule = diffsde.LinearBeta(beta_min, beta_max, T)

    def drift(self, t: ScalarLike, x: Vector) -> Vector:
        return 0.5 * self.schedule.beta(t) * x

    def prior(self) -> diffsde.GaussianPrior:
        return diffsde.GaussianPrior(self.dim, 0.0, self.marginal_std(self.T))

    def prior_bias(self) -> float:
        """The noise-approximation bias the prior declares (``diffsde check`` allows it)."""
        return diffsde.mean_dropping_bias(self)


class CVP(AbstractContractiveBetaSDE):
    """Contractive VP: dX = +½β(t) X dt + √β(t) dB, linear β (the VP drift with its sign flipped).

    λ_t = e^{½B(t)}, σ_t² = e^{B(t)} − 1 with B(t) = ∫₀ᵗ β. Prior N(0, (e^{B(T)} − 1) I), which
    ignores the mean λ_T x₀ (noise approximation bias).
    """

    tag: ClassVar[str] = "cvp"

    def __check_init__(self):
        _check_horizon("CVP", self.T)
        _check_schedule("CVP", self.schedule, self.T)
        _check_growth(
            "CVP",
            float(self.schedule.integral(self.T)),
            "beta_max",
            "lower beta_max or T (B(T) = (beta_min + beta_max)·T/2 <= 80)",
        )

    def diffusion(self, t: ScalarLike) -> Scalar:
        return jnp.sqrt(self.schedule.beta(t))

    def kernel(self, t: ScalarLike) -> tuple[Scalar, Scalar]:
        B = self.schedule.integral(t)
        return jnp.exp(0.5 * B), jnp.sqrt(jnp.expm1(B))


class CSubVP(AbstractContractiveBetaSDE):
    """Contractive sub-VP: dX = +½β(t) X dt + √(β(t)(e^{2B(t)} − 1)) dB, linear β.

    λ_t = e^{½B(t)}, σ_t = e^{B(t)} − 1 (so σ_t² = (e^{B(t)} − 1)², below the CVP variance).
    Prior N(0, (e^{B(T)} − 1)² I), which ignores the mean λ_T x₀ (noise approximation bias).
    """

    tag: ClassVar[str] = "csubvp"

    def __check_init__(self):
        _check_horizon("CsubVP", self.T)
        _check_schedule("CsubVP", self.schedule, self.T)
        _check_growth(
            "CsubVP",
            2 * float(self.schedule.integral(self.T)),
            "beta_max",
            "lower beta_max or T (2·B(T) = (beta_min + beta_max)·T <= 80)",
        )

    def diffusion(self, t: ScalarLike) -> Scalar:
        B = self.schedule.integral(t)
        return jnp.sqrt(self.schedule.beta(t) * jnp.expm1(2 * B))

    def kernel(self, t: ScalarLike) -> tuple[Scalar, Scalar]:
        B = self.schedule.integral(t)
        return jnp.exp(0.5 * B), jnp.expm1(B)
