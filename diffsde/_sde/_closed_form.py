"""SDEs with closed-form Gaussian kernels: OU, VE, VP, sub-VP (docs/math.md §2 table)."""

from typing import Annotated, ClassVar

import equinox as eqx
import jax.numpy as jnp
import pydantic

from .._custom_types import Scalar, ScalarLike, Vector
from .._errors import SpecFieldError
from .._prior import GaussianPrior
from ._base import AbstractGaussianSDE

Positive = Annotated[float, pydantic.Field(gt=0)]
NonNegative = Annotated[float, pydantic.Field(ge=0)]


class LinearBeta(eqx.Module):
    """β(t) = β_min + (t/T)(β_max − β_min) and its integral B(t) = ∫₀ᵗ β."""

    beta_min: float
    beta_max: float
    T: float

    def __check_init__(self):
        if not 0 <= self.beta_min:
            raise SpecFieldError("beta_min", f"must be non-negative, got {self.beta_min}")
        if not self.beta_min <= self.beta_max:
            raise SpecFieldError(
                "beta_min",
                f"{self.beta_min} exceeds beta_max {self.beta_max}: swap them",
            )

    def beta(self, t: ScalarLike) -> Scalar:
        return jnp.asarray(self.beta_min + (t / self.T) * (self.beta_max - self.beta_min))

    def integral(self, t: ScalarLike) -> Scalar:
        return jnp.asarray(
            self.beta_min * t + (self.beta_max - self.beta_min) * t**2 / (2 * self.T)
        )


def _check_horizon(T: float):
    if not T > 0:
        raise SpecFieldError("T", f"the time horizon must be positive, got T={T}")


class OU(AbstractGaussianSDE):
    """Ornstein–Uhlenbeck dX = −θ X dt + σ dB: λ_t = e^{−θt}, σ_t² = σ²/(2θ)(1 − e^{−2θt}).

    The defaults θ = 1, σ = √2 have stationary law N(0, I).
    """

    tag: ClassVar[str] = "ou"
    dim: int = eqx.field(static=True)
    theta: Positive = 1.0
    sigma: Positive = 2.0**0.5
    T: Positive = eqx.field(static=True, default=5.0)

    def __check_init__(self):
        _check_horizon(self.T)
        for name in ("theta", "sigma"):
            if not getattr(self, name) > 0:
                raise SpecFieldError(name, f"must be positive, got {getattr(self, name)}")

    def drift(self, t: ScalarLike, x: Vector) -> Vector:
        del t
        return -self.theta * x

    def diffusion(self, t: ScalarLike) -> Scalar:
        del t
        return jnp.asarray(self.sigma, jnp.float32)

    def kernel(self, t: ScalarLike) -> tuple[Scalar, Scalar]:
        lam = jnp.exp(-self.theta * t)
        var = -(self.sigma**2) / (2 * self.theta) * jnp.expm1(-2 * self.theta * t)
        return lam, jnp.sqrt(var)

    def prior(self) -> GaussianPrior:
        return GaussianPrior(self.dim, 0.0, self.sigma / (2 * self.theta) ** 0.5)

    def stationary_law(self) -> GaussianPrior:
        return self.prior()


class VE(AbstractGaussianSDE):
    """Variance exploding (SMLD): σ(t) = σ_min (σ_max/σ_min)^{t/T}, b = 0, g = σ(t)√(2 log r / T).

    λ_t = 1, σ_t² = σ(t)² − σ_min²; prior N(0, σ_max² I).
    """

    tag: ClassVar[str] = "ve"
    dim: int = eqx.field(static=True)
    sigma_min: Positive = 0.01
    sigma_max: Positive = 50.0
    T: Positive = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        _check_horizon(self.T)
        if not 0 < self.sigma_min:
            raise SpecFieldError("sigma_min", f"must be positive, got {self.sigma_min}")
        if not self.sigma_min < self.sigma_max:
            raise SpecFieldError(
                "sigma_min", f"{self.sigma_min} is not below sigma_max {self.sigma_max}: swap them"
            )

    @property
    def _log_ratio(self) -> Scalar:
        return jnp.log(self.sigma_max / self.sigma_min)

    def drift(self, t: ScalarLike, x: Vector) -> Vector:
        del t
        return jnp.zeros_like(x)

    def diffusion(self, t: ScalarLike) -> Scalar:
        sigma_t = self.sigma_min * jnp.exp(t / self.T * self._log_ratio)
        return sigma_t * jnp.sqrt(2 * self._log_ratio / self.T)

    def kernel(self, t: ScalarLike) -> tuple[Scalar, Scalar]:
        var = self.sigma_min**2 * jnp.expm1(2 * t / self.T * self._log_ratio)
        return jnp.ones_like(var), jnp.sqrt(var)

    def prior(self) -> GaussianPrior:
        return GaussianPrior(self.dim, 0.0, self.sigma_max)


class AbstractLinearBetaSDE(AbstractGaussianSDE):
    """The VP drift b = −½β(t) x with a linear β schedule; subclasses give g and the kernel."""

    dim: int = eqx.field(static=True)
    schedule: LinearBeta
    T: float = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        beta_min: NonNegative = 0.1,
        beta_max: Positive = 20.0,
        T: Positive = 1.0,
    ):
        _check_horizon(T)
        self.dim = dim
        self.T = T
        self.schedule = LinearBeta(beta_min, beta_max, T)

    def drift(self, t: ScalarLike, x: Vector) -> Vector:
        return -0.5 * self.schedule.beta(t) * x

    def prior(self) -> GaussianPrior:
        return GaussianPrior(self.dim, 0.0, 1.0)


class VP(AbstractLinearBetaSDE):
    """Variance preserving (DDPM): b = −½β(t) x, g = √β(t); λ_t = e^{−B/2}, σ_t² = 1 − e^{−B}.

    N(0, I) is stationary: its variance v solves dv/dt = −βv + β, whose fixed point is 1.
    """

    tag: ClassVar[str] = "vp"

    def stationary_law(self) -> GaussianPrior:
        return self.prior()

    def diffusion(self, t: ScalarLike) -> Scalar:
        return jnp.sqrt(self.schedule.beta(t))

    def kernel(self, t: ScalarLike) -> tuple[Scalar, Scalar]:
        B = self.schedule.integral(t)
        return jnp.exp(-0.5 * B), jnp.sqrt(-jnp.expm1(-B))


class SubVP(AbstractLinearBetaSDE):
    """sub-VP: b = −½β(t) x, g = √(β(t)(1 − e^{−2B(t)})); λ_t = e^{−B/2}, σ_t = 1 − e^{−B}."""

    tag: ClassVar[str] = "subvp"

    def diffusion(self, t: ScalarLike) -> Scalar:
        B = self.schedule.integral(t)
        return jnp.sqrt(-self.schedule.beta(t) * jnp.expm1(-2 * B))

    def kernel(self, t: ScalarLike) -> tuple[Scalar, Scalar]:
        B = self.schedule.integral(t)
        return jnp.exp(-0.5 * B), -jnp.expm1(-B)
