"""Time grids: the forward times T = t_0 > t_1 > … > t_N = ε a fixed-step sampler visits.

A grid is a part (kind ``time_grid``) of every fixed-step sampler, the spec key ``grid:``
(``grid: karras`` or ``grid: {type: karras, rho: 7}``). Uniform and quadratic grids are spaced in
t and work on any SDE; log-SNR and Karras grids are spaced in the schedule of a Gaussian kernel
(ℓ_t = log(α_t/σ_t), ρ_t = σ_t/α_t, diffsde/_schedule.py) and map back to t through its inverse.
On data with structure at every scale these put the steps where the score changes, near t = ε.
"""

import abc
from typing import Annotated, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pydantic
from jaxtyping import Array, Float

from ._errors import SpecFieldError, first_line
from ._expression import Expression, ExpressionError, compile_expression
from ._fields import Expr
from ._schedule import (
    log_snr,
    require_gaussian,
    sigma_ratio,
    time_at_log_snr,
    time_at_sigma_ratio,
)
from ._sde._base import AbstractGaussianSDE, AbstractSDE

Times = Float[Array, " steps_plus_one"]


def _pinned(ts: Array, T: float, eps: float) -> Times:
    """``ts`` with its endpoints set to exactly T and ε (the inverse maps are bisections)."""
    return ts.at[0].set(T).at[-1].set(eps)


class AbstractTimeGrid(eqx.Module):
    """A part: the forward times T = t_0 > t_1 > … > t_steps = ε a fixed-step solver visits.

    ``needs_kernel``: the grid is spaced in the schedule of a Gaussian kernel (α_t, σ_t)."""

    kind: ClassVar[str] = "time_grid"
    needs_kernel: ClassVar[bool] = False

    @abc.abstractmethod
    def times(self, sde: AbstractSDE, eps: float, steps: int) -> Times:
        """The ``steps + 1`` strictly decreasing times from T to ε, endpoints exact."""

    def check_sde(self, sde: AbstractSDE) -> None:
        """SpecFieldError at ``grid`` if this grid needs a Gaussian kernel that ``sde`` lacks."""
        if self.needs_kernel and not isinstance(sde, AbstractGaussianSDE):
            try:
                require_gaussian(sde, f"grid '{self.tag}'")
            except SpecFieldError as err:
                raise SpecFieldError(
                    "grid", f"{err.message}; `grid: uniform` or `grid: quadratic` need none"
                ) from None


class UniformGrid(AbstractTimeGrid):
    """Uniform in t: t_k = T − k (T − ε)/N."""

    tag: ClassVar[str] = "uniform"

    def times(self, sde, eps, steps):
        return jnp.linspace(sde.T, eps, steps + 1)


class QuadraticGrid(AbstractTimeGrid):
    """Quadratic in t, dense near ε (DDIM's "quad" schedule): t_k = ε + (T − ε)(1 − k/N)²."""

    tag: ClassVar[str] = "quadratic"

    def times(self, sde, eps, steps):
        u = jnp.linspace(0.0, 1.0, steps + 1)
        return _pinned(eps + (sde.T - eps) * (1 - u) ** 2, sde.T, eps)


class LogSNRGrid(AbstractTimeGrid):
    """Uniform in the log-SNR ℓ_t = log(α_t/σ_t) (DPM-Solver's "logSNR" schedule)."""

    tag: ClassVar[str] = "log_snr"
    needs_kernel: ClassVar[bool] = True

    def times(self, sde, eps, steps):
        ell = jnp.linspace(log_snr(sde, sde.T), log_snr(sde, eps), steps + 1)
        return _pinned(time_at_log_snr(sde, ell), sde.T, eps)


Rho = Annotated[float, pydantic.Field(gt=0, le=100)]


class KarrasGrid(AbstractTimeGrid):
    """Karras et al. (2022), eq. 5: uniform in ρ^{1/rho}, ρ_t = σ_t/α_t (EDM's σ), from ρ_T down
    to ρ_ε; ``rho`` = 7 is EDM's choice (larger: denser near ε)."""

    tag: ClassVar[str] = "karras"
    needs_kernel: ClassVar[bool] = True
    rho: Rho = eqx.field(static=True, default=7.0)

    def __check_init__(self):
        if not 0 < self.rho <= 100:
            raise SpecFieldError("rho", f"must lie in (0, 100], got {self.rho}: EDM uses 7")

    def times(self, sde, eps, steps):
        top, bottom = sigma_ratio(sde, sde.T), sigma_ratio(sde, eps)
        u = jnp.linspace(0.0, 1.0, steps + 1)
        power = 1 / self.rho
        rho = (top**power + u * (bottom**power - top**power)) ** self.rho
        return _pinned(time_at_sigma_ratio(sde, rho), sde.T, eps)


_CHECK_POINTS = np.linspace(0.0, 1.0, 1025, dtype=np.float32)
_SPACES = ("t", "log_snr", "sigma_ratio")


class ExpressionGrid(AbstractTimeGrid):
    """A grid from an expression: ``w(u)``, u = k/N in [0, 1], increasing from w(0) = 0 to
    w(1) = 1, interpolates ``space`` (t, log_snr or sigma_ratio) from its value at T to its value
    at ε; e.g. ``w: "u**2"``, ``space: t`` puts the steps near T. Checked at construction on
    1025 points of [0, 1]: finite, strictly increasing, endpoints within 1e-5."""

    tag: ClassVar[str] = "expression"
    w: Expression
    space: Literal["t", "log_snr", "sigma_ratio"] = eqx.field(static=True)

    def __init__(self, w: Expr | Expression, space: Literal["t", "log_snr", "sigma_ratio"] = "t"):
        if space not in _SPACES:
            raise SpecFieldError("space", f"must be one of {', '.join(_SPACES)}, got {space!r}")
        if isinstance(w, str):
            try:
                w = compile_expression(w, ("u",))
            except ExpressionError as err:
                raise SpecFieldError("w", f"{err.message}: write w as an expression in u") from None
        try:
            values = np.asarray(jax.jit(jax.vmap(lambda u: w(u=u)))(_CHECK_POINTS))
        except Exception as err:  # a shape or name the evaluator lets through but jax refuses
            raise SpecFieldError("w", f"cannot be evaluated at u in [0, 1]: {first_line(err)}")
        self.w, self.space = w, space
        self._check(values)

    @property
    def needs_kernel(self) -> bool:  # type: ignore[override]
        return self.space != "t"

    def _check(self, values: np.ndarray) -> None:
        source = self.w.source
        if values.shape != _CHECK_POINTS.shape or not np.all(np.isfinite(values)):
            bad = np.flatnonzero(~np.isfinite(values.reshape(-1)))
            where = f" (at u = {_CHECK_POINTS[bad[0]]:g})" if bad.size else ""
            raise SpecFieldError(
                "w", f"{source!r} must give one finite number per u in [0, 1]{where}"
            )
        if abs(values[0]) > 1e-5 or abs(values[-1] - 1) > 1e-5:
            raise SpecFieldError(
                "w",
                f"{source!r} gives w(0) = {values[0]:g} and w(1) = {values[-1]:g}: it must go "
                "from 0 at u = 0 (time T) to 1 at u = 1 (time ε), e.g. 'u**2'",
            )
        steps = np.diff(values)
        if np.any(steps <= 0):
            at = _CHECK_POINTS[np.flatnonzero(steps <= 0)[0]]
            raise SpecFieldError(
                "w",
                f"{source!r} is not strictly increasing (it stops rising at u = {at:g}): the "
                "times must strictly decrease from T to ε",
            )

    def times(self, sde, eps, steps):
        w = jax.vmap(lambda u: self.w(u=u))(jnp.linspace(0.0, 1.0, steps + 1))
        w = w.at[0].set(0.0).at[-1].set(1.0)
        if self.space == "t":
            return _pinned(sde.T + (eps - sde.T) * w, sde.T, eps)
        if self.space == "log_snr":
            start, end = log_snr(sde, sde.T), log_snr(sde, eps)
            return _pinned(time_at_log_snr(sde, start + (end - start) * w), sde.T, eps)
        start, end = sigma_ratio(sde, sde.T), sigma_ratio(sde, eps)
        return _pinned(time_at_sigma_ratio(sde, start + (end - start) * w), sde.T, eps)


def check_times(grid: AbstractTimeGrid, sde: AbstractSDE, eps: float, steps: int) -> None:
    """SpecFieldError at ``grid`` unless the grid's float32 times for ``steps`` steps strictly
    decrease (a grid that bunches its times below float32's resolution, e.g. ``w: u**8`` over
    many steps, repeats a time, and the multistep solvers divide by the zero step). Run
    eagerly, where the spec is built."""
    ts = np.asarray(grid.times(sde, eps, steps))
    repeated = np.flatnonzero(np.diff(ts) >= 0)
    if repeated.size:
        k = int(repeated[0])
        raise SpecFieldError(
            "grid",
            f"grid '{grid.tag}' gives {repeated.size} repeated float32 time(s) at {steps} steps "
            f"(t_{k} = t_{k + 1} = {ts[k]:.9g}): spread it (a gentler expression) or take fewer "
            "steps",
        )


def strictly_decreasing(ts: Times, tag: str) -> Times:
    """``ts``, with a run-time error under jit if two times are equal or out of order (the
    check of :func:`check_times`, for grids built from traced parameters)."""
    return eqx.error_if(
        ts,
        jnp.any(jnp.diff(ts) >= 0),
        f"time grid '{tag}' repeats a time in float32: spread it or take fewer steps",
    )


TIME_GRIDS: tuple[type[AbstractTimeGrid], ...] = (
    UniformGrid,
    QuadraticGrid,
    LogSNRGrid,
    KarrasGrid,
    ExpressionGrid,
)
"""The built-in time grids."""
