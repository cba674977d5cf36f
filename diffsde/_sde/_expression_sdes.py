"""SDEs written as spec expressions: affine (f(t), g(t)), Langevin (U(x)), general (b(t, x))."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Scalar, ScalarLike, Vector
from .._expression import Expression
from .._prior import AbstractPrior, GaussianPrior, GibbsPrior
from ._base import AbstractGaussianSDE, AbstractSDE


def _kernel_moments(t, y, args):
    """d/dt (log λ_t, σ_t²) = (f, 2 f σ² + g²). Module level, so every Affine with the same
    expressions reuses diffrax's compiled solve (only the parameter values differ)."""
    f, g = args
    f_t = f(t=t)
    return jnp.stack([f_t, 2 * f_t * y[1] + g(t=t) ** 2])


class Affine(AbstractGaussianSDE):
    """dX = f(t) X dt + g(t) dB with f, g expressions in t.

    The kernel (λ_t, σ_t) has no closed form in general: it comes from one dense diffrax solve
    of d log λ/dt = f, dσ²/dt = 2 f σ² + g² on [0, T] (Tsit5, PID control, rtol ``rtol``),
    evaluated through the solver's own 4th-order dense interpolant. The prior is N(0, σ_T² I),
    which ignores the mean λ_T x₀ (the noise-approximation bias, small when λ_T ≈ 0).
    """

    dim: int = eqx.field(static=True)
    f: Expression
    g: Expression
    T: float = eqx.field(static=True)
    solution: diffrax.Solution

    def __init__(self, dim: int, f: Expression, g: Expression, T: float = 1.0, rtol: float = 1e-7):
        if not T > 0:
            raise ValueError(f"the time horizon T must be positive, got T={T}")
        self.dim, self.f, self.g, self.T = dim, f, g, T

        self.solution = diffrax.diffeqsolve(
            diffrax.ODETerm(_kernel_moments),
            diffrax.Tsit5(),
            t0=0.0,
            t1=T,
            dt0=T * 1e-4,
            y0=jnp.zeros(2),
            args=(f, g),
            saveat=diffrax.SaveAt(dense=True),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=1e-10),
            max_steps=16384,
        )

    def drift(self, t: ScalarLike, x: Vector) -> Vector:
        return self.f(t=t) * x

    def diffusion(self, t: ScalarLike) -> Scalar:
        return self.g(t=t)

    def kernel(self, t: ScalarLike) -> tuple[Scalar, Scalar]:
        log_lam, var = self.solution.evaluate(jnp.clip(t, 0.0, self.T))
        return jnp.exp(log_lam), jnp.sqrt(jnp.maximum(var, 0.0))

    def prior(self) -> GaussianPrior:
        return GaussianPrior(self.dim, 0.0, self.marginal_std(self.T))


class Langevin(AbstractSDE):
    """Overdamped Langevin dX = −∇U(X) dt + √2 dB for a potential U(x) given as an expression.

    Its stationary law e^{−U}/Z is the prior; the kernel is Gaussian only for quadratic U, so
    this SDE is treated as having none.
    """

    dim: int = eqx.field(static=True)
    potential: Expression
    T: float = eqx.field(static=True, default=5.0)

    def __check_init__(self):
        if not self.T > 0:
            raise ValueError(f"the time horizon T must be positive, got T={self.T}")

    def drift(self, t: ScalarLike, x: Vector) -> Vector:
        del t
        return -jax.grad(lambda y: self.potential(x=y))(x)

    def diffusion(self, t: ScalarLike) -> Scalar:
        del t
        return jnp.sqrt(jnp.asarray(2.0, jnp.float32))

    def prior(self) -> GibbsPrior:
        return GibbsPrior(self.dim, self.potential)


class General(AbstractSDE):
    """dX = b(t, X) dt + g(t) dB for any drift expression b(t, x) and diffusion g(t).

    No transition kernel is known, so there is no default prior (a spec must declare one);
    objectives that need only samples of p_t (simulating this SDE forwards) can train it.
    """

    dim: int = eqx.field(static=True)
    b: Expression
    g: Expression
    T: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not self.T > 0:
            raise ValueError(f"the time horizon T must be positive, got T={self.T}")

    def drift(self, t: ScalarLike, x: Vector) -> Vector:
        return jnp.broadcast_to(self.b(t=t, x=x), x.shape)

    def diffusion(self, t: ScalarLike) -> Scalar:
        return self.g(t=t)

    def prior(self) -> AbstractPrior:
        raise ValueError(
            "a general SDE has no closed-form p_T, so no default prior: declare one, e.g. "
            "`prior: {type: gaussian, std: 1.0}`"
        )
