"""SDEs written as spec expressions: affine (f(t), g(t)), Langevin (U(x)), general (b(t, x)).


Each takes its expressions as strings (with ``params``) and compiles them through the safe
evaluator, checking them by tracing; an ``Expression`` already compiled is taken as it is.
"""

from typing import Annotated, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pydantic

from .._custom_types import Scalar, ScalarLike, Vector
from .._errors import SpecFieldError, first_line
from .._expression import Expression
from .._fields import Expr, Params, compile_fields
from .._prior import AbstractPrior, GaussianPrior, GibbsPrior
from ._base import AbstractGaussianSDE, AbstractSDE, mean_dropping_bias

Positive = Annotated[float, pydantic.Field(gt=0)]


def _compiled(dim: int, params: Params | None, **fields) -> dict[str, Expression]:
    """``{name: (source, variables, output)}`` compiled (strings) or kept (Expressions)."""
    sources = {k: v[0] for k, v in fields.items() if isinstance(v[0], str)}
    compiled = compile_fields(
        sources,
        {k: fields[k][1:] for k in sources},
        dim=dim,
        params=params or {},
    )
    return {k: compiled.get(k, v[0]) for k, v in fields.items()}


def _check_horizon(T: float) -> None:
    if not T > 0:
        raise SpecFieldError("T", f"the time horizon must be positive, got T={T}")


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

    tag: ClassVar[str] = "affine"
    dim: int = eqx.field(static=True)
    f: Expression
    g: Expression
    T: float = eqx.field(static=True)
    solution: diffrax.Solution

    def __init__(
        self,
        dim: int,
        f: Expr | Expression,
        g: Expr | Expression,
        params: Params = {},  # noqa: B006  (read, never changed)
        T: Positive = 1.0,
        rtol: Annotated[float, pydantic.Field(gt=0, lt=1)] = 1e-7,
    ):
        _check_horizon(T)
        e = _compiled(dim, params, f=(f, ("t",), "scalar"), g=(g, ("t",), "scalar"))
        self.dim, self.f, self.g, self.T = dim, e["f"], e["g"], T
        times = np.linspace(0.0, T, 9, dtype=np.float32)
        # before the kernel solve, which a NaN would run to max_steps
        on_grid = jax.jit(
            lambda f, g: (jax.vmap(lambda t: f(t=t))(times), jax.vmap(lambda t: g(t=t))(times))
        )
        for name, values in zip(("f", "g"), on_grid(self.f, self.g), strict=True):
            values = np.asarray(values)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise SpecFieldError(
                    name,
                    f"gives {values[bad[0]]} at t={times[bad[0]]:g} (of [0, T={T:g}]): fix the "
                    "expression or its params so it is finite on the whole interval",
                )
        try:
            self.solution = diffrax.diffeqsolve(
                diffrax.ODETerm(_kernel_moments),
                diffrax.Tsit5(),
                t0=0.0,
                t1=T,
                dt0=T * 1e-4,
                y0=jnp.zeros(2),
                args=(self.f, self.g),
                saveat=diffrax.SaveAt(dense=True),
                stepsize_controller=diffrax.PIDController(rtol=rtol, atol=1e-10),
                max_steps=16384,
            )
        except Exception as err:  # diffrax's max_steps on a stiff or exploding f
            why = "the solver ran out of steps" if "max_steps" in str(err) else first_line(err)
            raise SpecFieldError(
                "f",
                f"the kernel ODE d log λ/dt = f, dσ²/dt = 2fσ² + g² cannot be solved on "
                f"[0, {T:g}] ({why}): make f and g smaller or smoother",
            ) from None

    def drift(self, t: ScalarLike, x: Vector) -> Vector:
        return self.f(t=t) * x

    def diffusion(self, t: ScalarLike) -> Scalar:
        return self.g(t=t)

    def kernel(self, t: ScalarLike) -> tuple[Scalar, Scalar]:
        # clipped into [0, T] without halving d/dt at the ends (jnp.clip's derivative at a bound
        # is ½, which `diffsde check`'s moment-ODE comparison caught at t = T)
        t = t + jax.lax.stop_gradient(jnp.clip(t, 0.0, self.T) - t)
        log_lam, var = self.solution.evaluate(t)
        return jnp.exp(log_lam), jnp.sqrt(jnp.maximum(var, 0.0))

    def prior(self) -> GaussianPrior:
        return GaussianPrior(self.dim, 0.0, self.marginal_std(self.T))

    def prior_bias(self) -> float:
        """The prior drops the mean λ_T x₀: for data N(0, I) the law of X_T has standard
        deviation √(λ_T² + σ_T²) against the prior's σ_T (plus the default 0.02)."""
        return mean_dropping_bias(self)


class Langevin(AbstractSDE):
    """Overdamped Langevin dX = −∇U(X) dt + √2 dB for a potential U(x) given as an expression.

    Its stationary law e^{−U}/Z is the prior; the kernel is Gaussian only for quadratic U, so
    this SDE is treated as having none.
    """

    tag: ClassVar[str] = "langevin"
    dim: int = eqx.field(static=True)
    potential: Expression
    T: float = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        potential: Expr | Expression = "0.5 * sum(x**2)",
        params: Params = {},  # noqa: B006  (read, never changed)
        T: Positive = 5.0,
    ):
        _check_horizon(T)
        self.dim, self.T = dim, T
        self.potential = _compiled(dim, params, potential=(potential, ("x",), "scalar"))[
            "potential"
        ]

    def drift(self, t: ScalarLike, x: Vector) -> Vector:
        del t
        return -jax.grad(lambda y: self.potential(x=y))(x)

    def diffusion(self, t: ScalarLike) -> Scalar:
        del t
        return jnp.sqrt(jnp.asarray(2.0, jnp.float32))

    def prior(self) -> GibbsPrior:
        return GibbsPrior(self.dim, self.potential)

    def stationary_law(self) -> GibbsPrior:
        return self.prior()


class General(AbstractSDE):
    """dX = b(t, X) dt + g(t) dB for any drift expression b(t, x) and diffusion g(t).

    No transition kernel is known, so there is no default prior (a spec must declare one);
    objectives that need only samples of p_t (simulating this SDE forwards) can train it.
    """

    tag: ClassVar[str] = "general"
    dim: int = eqx.field(static=True)
    b: Expression
    g: Expression
    T: float = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        drift: Expr | Expression,
        diffusion: Expr | Expression,
        params: Params = {},  # noqa: B006  (read, never changed)
        T: Positive = 1.0,
    ):
        _check_horizon(T)
        e = _compiled(
            dim,
            params,
            drift=(drift, ("t", "x"), "vector"),
            diffusion=(diffusion, ("t",), "scalar"),
        )
        self.dim, self.b, self.g, self.T = dim, e["drift"], e["diffusion"], T

    def drift(self, t: ScalarLike, x: Vector) -> Vector:
        return jnp.broadcast_to(self.b(t=t, x=x), x.shape)

    def diffusion(self, t: ScalarLike) -> Scalar:
        return self.g(t=t)

    def prior(self) -> AbstractPrior:
        raise ValueError(
            "a general SDE has no closed-form p_T, so no default prior: declare one, e.g. "
            "`prior: {type: gaussian, std: 1.0}`"
        )
