"""Samplers of the reverse process (docs/math.md §4), each reporting its NFE.

A sampler turns samples x_T of p_T (or of p_noise ≈ p_T) into samples of p_ε, given a score
``score(x, t)`` of ONE point. The whole batch (n, dim) is one state: one solve, shared step sizes
(as in score_sde), the score ``jax.vmap``-ed over the rows. NFE counts evaluations of the score on
the whole batch: one call of the vmapped score is 1 NFE.

Conditions: ``sample_from(…, condition=c)`` takes one condition per row of x_T (a pytree whose
leaves have a leading axis of n rows, e.g. class indices of shape (n,)); each row's score is the
score bound to its condition (``diffsde._model.bind_condition``: a conditional score gets it, an
unconditional one ignores it). ``condition=None`` is the unconditional sampler, unchanged.

Fixed-step samplers visit the forward times of a time grid (``grid:``, diffsde/_grids.py:
uniform in t by default; log-SNR, Karras, quadratic or an expression), from T down to ε. The
reverse SDE is integrated forwards in u = T − t (diffrax's Brownian paths and SDE solvers are
tested in that direction); the probability-flow ODE backwards in t, from T to ε.
"""

import abc
import dataclasses
from collections.abc import Callable
from typing import Annotated, ClassVar, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pydantic
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._custom_types import Conditions, Scalar, ScalarLike, ScoreFn
from ._errors import SpecFieldError
from ._grids import (
    TIME_GRIDS,
    AbstractTimeGrid,
    UniformGrid,
    check_times,
    strictly_decreasing,
)
from ._model import bind_condition
from ._schedule import require_gaussian
from ._sde._base import AbstractGaussianSDE, AbstractSDE

Batch = Float[Array, "n dim"]
SaveTs = Float[Array, " k"]
MAX_SOLVER_STEPS = 1_000_000
"""The most steps a sampler may take: each is a sequential pass of the model over every sample."""
Positive = Annotated[float, pydantic.Field(gt=0)]
StepCount = Annotated[int, pydantic.Field(gt=0, le=MAX_SOLVER_STEPS)]
"""A step count, 1 to MAX_SOLVER_STEPS."""


class Samples(eqx.Module):
    """Samples of p_ε, the number of score evaluations on the batch, optionally a trajectory.

    ``trajectory[i]`` is the state at forward time ``save_ts[i]`` (None unless asked for).
    """

    x: Float[Array, "n dim"]
    nfe: Int[Array, ""]
    trajectory: Float[Array, "k n dim"] | None = None


class AbstractSampler(eqx.Module):
    """Integrates the reverse process from x_T at t = T down to t = ``eps``."""

    kind: ClassVar[str] = "sampler"
    eps: eqx.AbstractVar[float]

    @property
    def order(self) -> float | None:
        """The declared order p of the global error in the step size h, error ∝ h^p (the weak
        order for a stochastic sampler); None when none is declared (adaptive steps, or a
        corrector whose bias does not vanish with h). `diffsde check` fits it."""
        return None

    def with_steps(self, steps: int) -> "AbstractSampler":
        """This sampler on a grid of ``steps`` steps (replaces a field named ``steps``)."""
        if "steps" not in {f.name for f in dataclasses.fields(self)}:
            raise TypeError(
                f"{type(self).__name__} has no field `steps`: override with_steps to say how "
                "its step count is set"
            )
        return dataclasses.replace(self, steps=steps)

    def check_context(self, *, sde: AbstractSDE | None = None, **context) -> None:
        """On building from a spec: :meth:`check_sde` of the spec's SDE."""
        del context
        if sde is not None:
            self.check_sde(sde)

    def check_sde(self, sde: AbstractSDE) -> None:
        """SpecFieldError if this sampler cannot integrate ``sde``: ε must lie in (0, T)."""
        if not 0 < self.eps < sde.T:
            raise SpecFieldError(
                "eps",
                f"must lie in (0, T) for the SDE's horizon T = {sde.T}, got {self.eps}: lower "
                "it (1e-3 for VP, 1e-5 for VE are usual)",
            )

    @abc.abstractmethod
    def sample_from(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        x_T: Batch,
        *,
        key: PRNGKeyArray,
        save_ts: SaveTs | None = None,
        condition: Conditions = None,
    ) -> Samples:
        """Samples of p_ε from the batch ``x_T`` of (approximate) samples of p_T.

        ``save_ts``: forward times in [ε, T], decreasing (the order the reverse process visits
        them), at which to record the state. ``condition``: one condition per row of ``x_T``
        (samples of p_ε(x | c) row by row), or None.
        """


# helpers -------------------------------------------------------------------------------------


def _per_row(field_of, score: ScoreFn, condition: Conditions):
    """``field_of(score)``, a field ``(t, x)`` of one point, vmapped over the rows of a batch,
    row i's score bound to ``condition``'s row i (the one place samplers bind conditions)."""
    if condition is None:
        return jax.vmap(field_of(score), in_axes=(None, 0))
    rows = jax.vmap(lambda t, x, c: field_of(bind_condition(score, c))(t, x), in_axes=(None, 0, 0))
    return lambda t, x: rows(t, x, condition)


def batched_score(
    score: ScoreFn, condition: Conditions = None
) -> Callable[[Batch, ScalarLike], Batch]:
    field = _per_row(lambda s: lambda t, x: s(x, t), score, condition)
    return lambda x, t: field(t, x)


def _flat_reverse_terms(
    sde: AbstractSDE, score: ScoreFn, shape: tuple[int, int], brownian, condition=None
) -> diffrax.MultiTerm:
    """The reverse SDE of the whole batch, flattened to one state of size n·dim (diffrax terms
    in u = T − t; the noise g(T − u) I is diagonal)."""
    drift = _per_row(sde.reverse_drift, score, condition)
    return diffrax.MultiTerm(
        diffrax.ODETerm(lambda u, y, args: drift(u, y.reshape(shape)).reshape(-1)),
        diffrax.ControlTerm(
            lambda u, y, args: lx.DiagonalLinearOperator(
                jnp.broadcast_to(sde.reverse_diffusion(u), y.shape)
            ),
            brownian,
        ),
    )


def _saveat(save_ts: Array | None, to_solver_time: Callable[[Array], Array]) -> diffrax.SaveAt:
    if save_ts is None:
        return diffrax.SaveAt(t1=True)
    return diffrax.SaveAt(
        subs=(diffrax.SubSaveAt(t1=True), diffrax.SubSaveAt(ts=to_solver_time(save_ts)))
    )


def _unpack(ys, save_ts: Array | None, shape: tuple[int, ...]) -> tuple[Array, Array | None]:
    """Final state and trajectory from diffrax's ``ys`` (flattened states)."""
    if save_ts is None:
        return ys[-1].reshape(shape), None
    final, path = ys
    return final[-1].reshape(shape), path.reshape(len(save_ts), *shape)


Grid = Float[Array, " steps_plus_one"]


def interpolate_grid(
    states: Float[Array, "m n dim"], ts: Grid, save_ts: SaveTs
) -> Float[Array, "k n dim"]:
    """States at ``save_ts`` from the states on the decreasing grid ``ts`` (linear in t between
    nodes)."""
    steps = ts.shape[0] - 1
    index = jnp.clip(jnp.searchsorted(-ts, -save_ts, side="right") - 1, 0, steps - 1)
    weight = ((ts[index] - save_ts) / (ts[index] - ts[index + 1]))[:, None, None]
    return (1 - weight) * states[index] + weight * states[index + 1]


def as_nfe(value) -> Int[Array, ""]:
    return jnp.asarray(value, jnp.int32)


# Euler–Maruyama ------------------------------------------------------------------------------


def scan_grid(step, x_T: Batch, ts: Grid, key: PRNGKeyArray, save_ts):
    """Run ``step(x, (t, t_next, key))`` over the grid ``ts`` with ``lax.scan``; return the end
    state and, if ``save_ts`` is given, the states interpolated at those times."""
    steps = ts.shape[0] - 1
    x, states = jax.lax.scan(step, x_T, (ts[:-1], ts[1:], jr.split(key, steps)))
    if save_ts is None:
        return x, None
    states = jnp.concatenate([x_T[None], states])
    return x, interpolate_grid(states, ts, save_ts)


class AbstractFixedStepSampler(AbstractSampler):
    """A sampler on a time grid of ``steps`` steps (``grid``, uniform in t by default)."""

    steps: eqx.AbstractVar[int]
    grid: eqx.AbstractVar[AbstractTimeGrid]

    def __check_init__(self):
        if not 1 <= self.steps <= MAX_SOLVER_STEPS:
            raise SpecFieldError(
                "steps", f"must be an integer from 1 to {MAX_SOLVER_STEPS}, got {self.steps}"
            )

    def check_sde(self, sde: AbstractSDE) -> None:
        """Also: the grid must suit the SDE (log-SNR and Karras grids need a Gaussian kernel)."""
        super().check_sde(sde)
        self.grid.check_sde(sde)

    def check_context(self, *, sde: AbstractSDE | None = None, **context) -> None:
        """On building from a spec: also, the grid's times must strictly decrease in float32."""
        super().check_context(sde=sde, **context)
        if sde is not None:
            check_times(self.grid, sde, self.eps, self.steps)

    def times(self, sde: AbstractSDE) -> Grid:
        """The grid's forward times T = t_0 > … > t_steps = ε (a run-time error if one
        repeats)."""
        return strictly_decreasing(self.grid.times(sde, self.eps, self.steps), self.grid.tag)


class AbstractKernelSampler(AbstractFixedStepSampler):
    """A fixed-step sampler written in the schedule (α_t, σ_t, ℓ_t, ρ_t) of a Gaussian kernel
    (diffsde/_schedule.py): it refuses an SDE without one, naming itself."""

    def check_sde(self, sde: AbstractSDE) -> None:
        """Also: the SDE must have a Gaussian kernel."""
        require_gaussian(sde, f"sampler '{self.tag}'")
        super().check_sde(sde)


def _scan_times(step, x_T: Batch, ts: Grid, save_ts: SaveTs | None, carry=None):
    """Run ``step((x, carry), (t, t_next)) -> (x, carry)`` over the decreasing grid ``ts`` with
    ``lax.scan``; return the end state and, if ``save_ts`` is given, the states interpolated
    (linearly in t) at those times. States are stacked only when ``save_ts`` is given."""

    def body(state, times):
        state = step(state, times)
        return state, state[0] if save_ts is not None else None

    (x, _), states = jax.lax.scan(body, (x_T, carry), (ts[:-1], ts[1:]))
    if save_ts is None:
        return x, None
    return x, interpolate_grid(jnp.concatenate([x_T[None], states]), ts, save_ts)


class EulerMaruyama(AbstractFixedStepSampler):
    """Euler–Maruyama on the reverse SDE, ``steps`` steps on ``grid``. NFE = steps.

    A ``lax.scan`` over the grid (in u = T − t), the increments drawn from diffrax's
    ``UnsafeBrownianPath``: each interval is queried once, so its increments are exact
    N(0, h I) draws at O(1) cost per step. The draws and the update are those of diffrax's
    ``Euler`` on ``StepTo`` (the same samples, to float32 round-off), without diffrax's loop
    machinery (its while loop, step-size controller and dense output cost ~30 % at d = 32,
    bench/loop_overhead.py).
    """

    tag: ClassVar[str] = "euler_maruyama"
    steps: StepCount = eqx.field(static=True, default=1000)
    eps: Positive = eqx.field(static=True, default=1e-3)
    grid: AbstractTimeGrid = UniformGrid()

    def __check_init__(self):
        if self.steps < 1:
            raise SpecFieldError("steps", f"must be at least 1, got {self.steps}")

    order: ClassVar[float] = 1.0  # weak order 1

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None) -> Samples:
        self.check_sde(sde)
        drift = _per_row(sde.reverse_drift, score, condition)
        brownian = diffrax.UnsafeBrownianPath(shape=(x_T.size,), key=key)

        def step(state, times):
            x, _ = state
            u, u_next = sde.T - times[0], sde.T - times[1]
            dw = brownian.evaluate(u, u_next).reshape(x.shape)
            return x + (u_next - u) * drift(u, x) + sde.reverse_diffusion(u) * dw, None

        x, trajectory = _scan_times(step, x_T, self.times(sde), save_ts)
        return Samples(x, as_nfe(self.steps), trajectory)


# adaptive reverse SDE ------------------------------------------------------------------------


class AbstractSDESolver(eqx.Module):
    """A part of the adaptive reverse-SDE sampler: a diffrax stochastic Runge–Kutta solver for
    additive noise with an embedded error estimate, and its drift evaluations per step."""

    kind: ClassVar[str] = "sde_solver"
    stages: ClassVar[int]

    @abc.abstractmethod
    def solver(self) -> diffrax.AbstractSolver:
        """The diffrax solver."""


class ShARK(AbstractSDESolver):
    """ShARK (strong order 1.5 for additive noise, space-time Lévy area), 2 drift stages."""

    tag: ClassVar[str] = "shark"
    stages: ClassVar[int] = 2

    def solver(self) -> diffrax.AbstractSolver:
        return diffrax.ShARK()


class SRA1(AbstractSDESolver):
    """SRA1 (strong order 1.5 for additive noise), 2 drift stages."""

    tag: ClassVar[str] = "sra1"
    stages: ClassVar[int] = 2

    def solver(self) -> diffrax.AbstractSolver:
        return diffrax.SRA1()


class AdaptiveReverseSDE(AbstractSampler):
    """The reverse SDE with adaptive steps: an additive-noise SRK (ShARK or SRA1, strong order
    1.5, embedded error estimate), a ``PIDController`` and a ``VirtualBrownianTree`` (so that
    rejected steps re-query the same Brownian path).

    NFE = 2 × (accepted + rejected steps): both solvers evaluate the drift at 2 stages per step
    attempt, with no stage shared between steps (the first stage is shifted by the space-time
    Lévy area), and the initial step is ``dt0`` (no evaluations to choose it).
    """

    tag: ClassVar[str] = "reverse_sde_adaptive"
    solver: AbstractSDESolver = ShARK()
    rtol: Positive = eqx.field(static=True, default=1e-2)
    atol: Positive = eqx.field(static=True, default=1e-2)
    dt0: Positive = eqx.field(static=True, default=1e-2)
    brownian_tol: Positive = eqx.field(static=True, default=1e-5)
    max_steps: StepCount = eqx.field(static=True, default=4096)
    eps: Positive = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        for name in ("rtol", "atol", "dt0", "brownian_tol"):
            if not getattr(self, name) > 0:
                raise SpecFieldError(name, f"must be positive, got {getattr(self, name)}")

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None) -> Samples:
        """diffrax's adaptive loop (kept: steps are chosen at run time). Cost: each step
        walks the Brownian tree twice (at t₀ and t₁) down to ``brownian_tol``, drawing W and H
        over the whole flattened batch at every level, so an NFE costs 10-30× one of
        Euler–Maruyama in d = 32 (bench/loop_overhead.py --adaptive-variants). A looser tree
        (1e-2: ~12×) is exact only for steps longer than its leaves, one solve per sample
        under vmap is dearer (~20-30×), and diffrax refuses UnsafeBrownianPath under an
        adaptive controller (a rejected step would draw fresh noise, biasing the law)."""
        self.check_sde(sde)
        U = sde.T - self.eps
        brownian = diffrax.VirtualBrownianTree(
            0.0,
            U,
            tol=self.brownian_tol,
            shape=(x_T.size,),
            key=key,
            levy_area=diffrax.SpaceTimeLevyArea,
        )
        sol = diffrax.diffeqsolve(
            _flat_reverse_terms(sde, score, x_T.shape, brownian, condition),
            self.solver.solver(),
            t0=0.0,
            t1=U,
            dt0=self.dt0,
            y0=x_T.reshape(-1),
            saveat=_saveat(save_ts, lambda t: sde.T - t),
            stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol),
            max_steps=self.max_steps,
        )
        x, trajectory = _unpack(sol.ys, save_ts, x_T.shape)
        return Samples(x, as_nfe(self.solver.stages * sol.stats["num_steps"]), trajectory)


# probability-flow ODE ------------------------------------------------------------------------

# Classical RK4 as data (as diffrax defines Heun and Bosh3). diffrax needs an embedded method for
# its error estimate; RK4 has no distinct embedded 3rd-order weights on these stages, so the
# estimate is against the 2nd-order midpoint rule (b = (0, 1, 0, 0)). diffsde uses RK4 only on
# fixed grids, where the estimate is unused.
_rk4_tableau = diffrax.ButcherTableau(
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.array([1 / 6, 1 / 3 - 1, 1 / 3, 1 / 6]),
    c=np.array([0.5, 0.5, 1.0]),
)


class RK4(diffrax.AbstractERK):
    """The classical 4th-order Runge–Kutta method (4 stages, no FSAL)."""

    tableau: ClassVar[diffrax.ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar[Callable[..., diffrax.ThirdOrderHermitePolynomialInterpolation]] = (
        diffrax.ThirdOrderHermitePolynomialInterpolation.from_k
    )

    def order(self, terms):
        del terms
        return 4


class AbstractODESolver(eqx.Module):
    """A part of the probability-flow sampler: a diffrax ODE solver and what one step costs,
    NFE = ``init`` + ``per_step`` × steps attempted. ``error_estimate``: the solver has an
    embedded error estimate, which an adaptive step-size controller needs."""

    kind: ClassVar[str] = "ode_solver"
    per_step: ClassVar[int]
    init: ClassVar[int] = 0
    error_estimate: ClassVar[bool]
    order: ClassVar[int]
    """The method's order: its global error on a fixed grid ∝ h^order."""

    @abc.abstractmethod
    def solver(self) -> diffrax.AbstractSolver:
        """The diffrax solver."""


class Euler(AbstractODESolver):
    """Euler's method (1 stage, order 1)."""

    tag: ClassVar[str] = "euler"
    per_step: ClassVar[int] = 1
    error_estimate: ClassVar[bool] = False
    order: ClassVar[int] = 1

    def solver(self) -> diffrax.AbstractSolver:
        return diffrax.Euler()


class Heun(AbstractODESolver):
    """Heun's method (2 stages, order 2, embedded Euler error estimate)."""

    tag: ClassVar[str] = "heun"
    per_step: ClassVar[int] = 2
    error_estimate: ClassVar[bool] = True
    order: ClassVar[int] = 2

    def solver(self) -> diffrax.AbstractSolver:
        return diffrax.Heun()


class ClassicalRK4(AbstractODESolver):
    """Classical 4th-order Runge–Kutta (4 stages, a diffrax Butcher tableau; fixed grids only)."""

    tag: ClassVar[str] = "rk4"
    per_step: ClassVar[int] = 4
    error_estimate: ClassVar[bool] = False
    order: ClassVar[int] = 4

    def solver(self) -> diffrax.AbstractSolver:
        return RK4()


# FSAL solvers (Tsit5, Dopri5: 7 stages, the last equal to the next step's first) evaluate the
# field once at initialisation and 6 times per step attempt (a rejected step keeps its first
# stage). The initial step is given (dt0), so diffrax's initial-step heuristic is not run.
class Tsit5(AbstractODESolver):
    """Tsitouras' 5(4) method (7 stages, FSAL)."""

    tag: ClassVar[str] = "tsit5"
    per_step: ClassVar[int] = 6
    init: ClassVar[int] = 1
    error_estimate: ClassVar[bool] = True
    order: ClassVar[int] = 5

    def solver(self) -> diffrax.AbstractSolver:
        return diffrax.Tsit5()


class Dopri5(AbstractODESolver):
    """Dormand–Prince 5(4) (7 stages, FSAL)."""

    tag: ClassVar[str] = "dopri5"
    per_step: ClassVar[int] = 6
    init: ClassVar[int] = 1
    error_estimate: ClassVar[bool] = True
    order: ClassVar[int] = 5

    def solver(self) -> diffrax.AbstractSolver:
        return diffrax.Dopri5()


ODE_SOLVERS: tuple[type[AbstractODESolver], ...] = (Euler, Heun, ClassicalRK4, Tsit5, Dopri5)


Steps = Annotated[int, pydantic.Field(gt=0, le=MAX_SOLVER_STEPS)]


class AbstractStepController(eqx.Module):
    """A part: how an ODE solver chooses its steps from T down to ε. ``needs_error_estimate``:
    the controller adapts steps to the solver's embedded error estimate."""

    kind: ClassVar[str] = "step_controller"
    needs_error_estimate: ClassVar[bool]

    def check_sde(self, sde: AbstractSDE) -> None:
        """SpecFieldError if this controller cannot step ``sde`` (by default it can)."""
        del sde

    @abc.abstractmethod
    def setup(
        self, sde: AbstractSDE, eps: float
    ) -> tuple[diffrax.AbstractStepSizeController, float | None, int]:
        """(diffrax controller, dt0 of a solve from T to ε, max_steps)."""


class FixedSteps(AbstractStepController):
    """``steps`` steps on a time grid (``StepTo``): no tolerances, NFE known in advance."""

    tag: ClassVar[str] = "fixed"
    needs_error_estimate: ClassVar[bool] = False
    steps: Steps = eqx.field(static=True, default=100)
    grid: AbstractTimeGrid = UniformGrid()

    def check_sde(self, sde):
        self.grid.check_sde(sde)

    def setup(self, sde, eps):
        return diffrax.StepTo(self.grid.times(sde, eps, self.steps)), None, self.steps


Tolerance = Annotated[float, pydantic.Field(gt=0)]


class PIDSteps(AbstractStepController):
    """Adaptive steps: a diffrax ``PIDController(rtol, atol)`` from a first step ``dt0``, at
    most ``max_steps`` steps."""

    tag: ClassVar[str] = "pid"
    needs_error_estimate: ClassVar[bool] = True
    rtol: Tolerance = eqx.field(static=True, default=1e-5)
    atol: Tolerance = eqx.field(static=True, default=1e-5)
    dt0: Tolerance = eqx.field(static=True, default=1e-2)
    max_steps: Steps = eqx.field(static=True, default=4096)

    def setup(self, sde, eps):
        del sde, eps
        controller = diffrax.PIDController(rtol=self.rtol, atol=self.atol)
        return controller, self.dt0, self.max_steps


def check_solver(solver: AbstractODESolver, controller: AbstractStepController) -> None:
    """SpecFieldError where an adaptive controller is paired with a solver that has no error
    estimate."""
    if controller.needs_error_estimate and not solver.error_estimate:
        adaptive = ", ".join(c.tag for c in ODE_SOLVERS if c.error_estimate)
        raise SpecFieldError(
            "solver",
            f"solver '{solver.tag}' has no embedded error estimate, so controller "
            f"'{controller.tag}' cannot adapt its steps: choose one with an estimate "
            f"({adaptive}), or `controller: {{type: fixed, steps: …}}`",
        )


_OLD_FLAT_KEYS = ("steps", "grid", "rtol", "atol", "dt0", "max_steps")
_FIXED_BY_DEFAULT = ("euler", "heun", "rk4")


class _Stages(NamedTuple):
    """An explicit Runge–Kutta method as numbers: rows of the lower triangle ``a``, weights
    ``b``, nodes ``c`` (of stages 2…), and ``fsal``: the last stage is f(t₁, y₁), the next
    step's first."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    fsal: bool


def _explicit_stages(solver: diffrax.AbstractSolver) -> _Stages | None:
    """The tableau of diffrax's ``Euler`` or of an explicit diffrax RK solver; None otherwise."""
    if isinstance(solver, diffrax.Euler):
        return _Stages((), (1.0,), (), False)
    if isinstance(solver, diffrax.AbstractERK) and not solver.tableau.implicit:
        tableau = solver.tableau
        a = tuple(tuple(float(v) for v in row) for row in tableau.a_lower)
        b = tuple(float(v) for v in tableau.b_sol)
        return _Stages(a, b, tuple(float(v) for v in tableau.c), bool(tableau.fsal))
    return None


def _combine(x, h, weights, fields):
    """x + h Σ_j w_j f_j over the nonzero weights."""
    terms = [w * f for w, f in zip(weights, fields) if w != 0.0]
    return x if not terms else x + h * sum(terms[1:], terms[0])


def _runge_kutta_scan(field, stages: _Stages, x_T: Batch, ts: Grid, save_ts: SaveTs | None):
    """An explicit RK method on the grid ``ts`` by ``lax.scan``: the end state, the trajectory
    at ``save_ts`` (None without) and the NFE (an FSAL method evaluates once at t_0, then
    reuses its last stage as the next step's first)."""

    def step(state, times):
        x, first = state
        t, t_next = times
        h = t_next - t
        fields = [first if stages.fsal else field(t, x)]
        for a, c in zip(stages.a, stages.c):
            fields.append(field(t + c * h, _combine(x, h, a, fields)))
        return _combine(x, h, stages.b, fields), fields[-1] if stages.fsal else None

    first = field(ts[0], x_T) if stages.fsal else None
    x, trajectory = _scan_times(step, x_T, ts, save_ts, first)
    steps = ts.shape[0] - 1
    nfe = 1 + (len(stages.b) - 1) * steps if stages.fsal else len(stages.b) * steps
    return x, trajectory, nfe


class ProbabilityFlow(AbstractSampler):
    """Probability-flow ODE dx/dt = b − ½ g² s from T to ε: a diffrax solver × a step-size
    controller (a fixed time grid, or PID on the solver's error estimate).

    NFE: euler steps, heun 2·steps, rk4 4·steps on a fixed grid; tsit5/dopri5 1 + 6·(accepted
    + rejected steps), heun 2·(accepted + rejected) under PID.
    """

    tag: ClassVar[str] = "pf_ode"
    solver: AbstractODESolver = Tsit5()
    controller: AbstractStepController = PIDSteps()
    eps: Positive = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        check_solver(self.solver, self.controller)

    def check_sde(self, sde: AbstractSDE) -> None:
        """Also: the controller's grid must suit the SDE."""
        super().check_sde(sde)
        self.controller.check_sde(sde)

    def check_context(self, *, sde: AbstractSDE | None = None, **context) -> None:
        """On building from a spec: also, a fixed grid's times must strictly decrease."""
        super().check_context(sde=sde, **context)
        if sde is not None and isinstance(self.controller, FixedSteps):
            check_times(self.controller.grid, sde, self.eps, self.controller.steps)

    @property
    def order(self) -> float | None:
        """The solver's order on a fixed grid; None under an adaptive controller."""
        return float(self.solver.order) if isinstance(self.controller, FixedSteps) else None

    def with_steps(self, steps: int) -> "ProbabilityFlow":
        """On a fixed grid of ``steps`` steps (the controller's grid kept, if fixed)."""
        grid = self.controller.grid if isinstance(self.controller, FixedSteps) else UniformGrid()
        return eqx.tree_at(lambda s: s.controller, self, FixedSteps(steps, grid))

    @classmethod
    def spec_aliases(cls, data: dict) -> dict:
        """The flat keys of diffsde 0.1, still read: ``steps`` (default 100 for euler, heun and
        rk4 when no controller is given) is ``controller: {type: fixed, steps: …}``, and so
        is ``grid`` (the key every fixed-step sampler has);
        ``rtol``/``atol``/``dt0``/``max_steps`` are the PID controller's (tsit5, dopri5). Flat
        keys update a given controller, so ``--set sampler.steps=20`` works on any spec."""
        flat = {k: data.pop(k) for k in _OLD_FLAT_KEYS if k in data}
        flat = {k: v for k, v in flat.items() if v is not None}  # 0.1 stored unused keys as null
        controller = data.get("controller")
        if isinstance(controller, str):
            controller = {"type": controller}
        if controller is not None and not isinstance(controller, dict):
            return data  # reported by the controller's own validation
        if not flat:
            if controller is None and data.get("solver", "tsit5") in _FIXED_BY_DEFAULT:
                data["controller"] = {"type": "fixed"}
            return data
        controller = dict(controller or {})
        fixed_solver = data.get("solver", "tsit5") in _FIXED_BY_DEFAULT
        if "steps" in flat or "grid" in flat or (not controller and fixed_solver):
            if controller.get("type") != "fixed":
                controller = {"type": "fixed"}
        elif controller.get("type", "pid") != "pid":
            controller = {"type": "pid"}
        controller.setdefault("type", "pid")
        data["controller"] = {**controller, **flat}
        return data

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None) -> Samples:
        """On a fixed grid with an explicit Runge–Kutta solver (euler, heun, rk4, tsit5,
        dopri5): a ``lax.scan`` of the solver's Butcher tableau over the grid, the same update as
        diffrax's on ``StepTo`` (same samples to float32 round-off) without its loop machinery;
        the trajectory at ``save_ts`` is interpolated linearly in t between grid states.
        Otherwise (adaptive steps, other solvers): diffrax's ``diffeqsolve``."""
        del key  # deterministic
        self.check_sde(sde)
        field = _per_row(sde.probability_flow, score, condition)
        stages = _explicit_stages(self.solver.solver())
        if isinstance(self.controller, FixedSteps) and stages is not None:
            grid = self.controller.grid
            ts = strictly_decreasing(grid.times(sde, self.eps, self.controller.steps), grid.tag)
            x, trajectory, nfe = _runge_kutta_scan(field, stages, x_T, ts, save_ts)
            return Samples(x, as_nfe(nfe), trajectory)
        term = diffrax.ODETerm(lambda t, y, args: field(t, y.reshape(x_T.shape)).reshape(-1))
        controller, dt0, max_steps = self.controller.setup(sde, self.eps)
        sol = diffrax.diffeqsolve(
            term,
            self.solver.solver(),
            t0=sde.T,
            t1=self.eps,
            dt0=None if dt0 is None else -dt0,
            y0=x_T.reshape(-1),
            saveat=_saveat(save_ts, lambda t: t),
            stepsize_controller=controller,
            max_steps=max_steps,
        )
        x, trajectory = _unpack(sol.ys, save_ts, x_T.shape)
        nfe = self.solver.init + self.solver.per_step * sol.stats["num_steps"]
        return Samples(x, as_nfe(nfe), trajectory)


# predictor–corrector -------------------------------------------------------------------------


class PredictorCorrector(AbstractFixedStepSampler):
    """Predictor–corrector (Song et al. 2021): per step, one Euler–Maruyama step of the reverse
    SDE from t_k to t_{k+1}, then ``corrector_steps`` Langevin steps at t_{k+1}

        x ← x + ε s + √(2ε) z,   ε = 2 (snr · mean‖z‖ / mean‖s‖)²,

    norms per sample over the whole vector, averaged over the batch (as score_sde).
    NFE = steps × (1 + corrector_steps).
    """

    tag: ClassVar[str] = "pc"
    steps: StepCount = eqx.field(static=True, default=1000)
    corrector_steps: Annotated[int, pydantic.Field(ge=0, le=100)] = eqx.field(
        static=True, default=1
    )
    snr: Positive = eqx.field(static=True, default=0.16)
    eps: Positive = eqx.field(static=True, default=1e-3)
    grid: AbstractTimeGrid = UniformGrid()

    def __check_init__(self):
        if self.steps < 1 or self.corrector_steps < 0 or not self.snr > 0:
            raise ValueError(
                f"PredictorCorrector needs steps >= 1, corrector_steps >= 0, snr > 0; got "
                f"steps={self.steps}, corrector_steps={self.corrector_steps}, snr={self.snr}"
            )

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None) -> Samples:
        self.check_sde(sde)
        batched = batched_score(score, condition)
        drift = _per_row(sde.reverse_drift, score, condition)
        ts = self.times(sde)

        def langevin(x, key, t):
            s = batched(x, t)
            z = jr.normal(key, x.shape)
            ratio = jnp.mean(jnp.linalg.norm(z, axis=-1)) / jnp.mean(jnp.linalg.norm(s, axis=-1))
            step = 2 * (self.snr * ratio) ** 2
            return x + step * s + jnp.sqrt(2 * step) * z, None

        def step(x, inputs):
            t, t_next, key = inputs
            predictor_key, corrector_key = jr.split(key)
            u, h = sde.T - t, t - t_next
            noise = jr.normal(predictor_key, x.shape)
            x = x + h * drift(u, x) + sde.reverse_diffusion(u) * jnp.sqrt(h) * noise
            corrector_keys = jr.split(corrector_key, self.corrector_steps)
            x, _ = jax.lax.scan(lambda x, k: langevin(x, k, t_next), x, corrector_keys)
            return x, x if save_ts is not None else None

        x, trajectory = scan_grid(step, x_T, ts, key, save_ts)
        return Samples(x, as_nfe(self.steps * (1 + self.corrector_steps)), trajectory)


# exponential integrator ----------------------------------------------------------------------

# Gauss–Legendre nodes and weights on [0, 1] for ∫ g²/λ over one step (``frozen="score"``)
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)
_GL_NODES, _GL_WEIGHTS = (_GL_NODES + 1) / 2, _GL_WEIGHTS / 2


class AbstractFrozenQuantity(eqx.Module):
    """A part of the exponential integrator: what is held fixed over a step, given the score at
    (x_t, t), and the step's coefficients (a, κ, std) that follow from it."""

    kind: ClassVar[str] = "frozen_quantity"

    @abc.abstractmethod
    def coefficients(
        self, sde: AbstractGaussianSDE, t: ScalarLike, s: ScalarLike
    ) -> tuple[Scalar, Scalar, Scalar]:
        """(a, κ, std) of one step from t down to s."""


def _step_kernel(sde: AbstractGaussianSDE, t: ScalarLike, s: ScalarLike):
    """a = λ_s/λ_t, the noise std √(a²σ_t² − σ_s²), λ_s, σ_t, σ_s of a step from t to s."""
    lam_t, sigma_t = sde.kernel(t)
    lam_s, sigma_s = sde.kernel(s)
    a = lam_s / lam_t
    std = jnp.sqrt(jnp.maximum((a * sigma_t) ** 2 - sigma_s**2, 0.0))
    return a, std, lam_s, sigma_t, sigma_s


class FrozenNoise(AbstractFrozenQuantity):
    """ε = −σ_r s(x, r) fixed (DEIS-style): κ = 2σ_t(aσ_t − σ_s)."""

    tag: ClassVar[str] = "noise"

    def coefficients(self, sde, t, s):
        a, std, _, sigma_t, sigma_s = _step_kernel(sde, t, s)
        return a, 2 * sigma_t * (a * sigma_t - sigma_s), std


class FrozenScore(AbstractFrozenQuantity):
    """s fixed: κ = λ_s ∫_s^t g²/λ_r dr by 8-point Gauss–Legendre (on VP: 2(a − 1))."""

    tag: ClassVar[str] = "score"

    def coefficients(self, sde, t, s):
        a, std, lam_s, _, _ = _step_kernel(sde, t, s)
        r = s + (t - s) * jnp.asarray(_GL_NODES, jnp.float32)
        lam_r = jax.vmap(lambda r: sde.kernel(r)[0])(r)
        g2 = jax.vmap(sde.diffusion)(r) ** 2
        kappa = lam_s * (t - s) * jnp.sum(jnp.asarray(_GL_WEIGHTS, jnp.float32) * g2 / lam_r)
        return a, kappa, std


class FrozenData(AbstractFrozenQuantity):
    """Tweedie's x̂₀ fixed (the DDPM ancestral step): κ = aσ_{t|s}², std² = σ_{t|s}²σ_s²/σ_t²."""

    tag: ClassVar[str] = "data"

    def coefficients(self, sde, t, s):
        a, _, _, sigma_t, sigma_s = _step_kernel(sde, t, s)
        bridge = jnp.maximum(sigma_t**2 - (sigma_s / a) ** 2, 0.0)
        return a, a * bridge, jnp.sqrt(bridge) * sigma_s / sigma_t


class ExponentialIntegrator(AbstractKernelSampler):
    """Exponential integrator of the reverse SDE of a Gaussian-kernel (affine) SDE. NFE = steps.

    The forward drift is affine, so m_t(x₀) = c_t + λ_t x₀ (c_t = m_t(0)), and with ρ = σ/λ,
    σ_r² = λ_r² ∫₀ʳ g²/λ² (docs/math.md §2), g²/λ² = 2ρρ'. On a step from t down to s < t the score
    is evaluated once, at (x_t, t); one quantity built from it is held fixed over the step, and
    the reverse SDE, linear given that quantity, is integrated exactly. Every variant reads

        x_s = c_s + a (x_t − c_t) + κ s_θ(x_t, t) + std · z,   a = λ_s / λ_t,

    and ``frozen`` chooses what is held fixed:

    - ``"noise"`` (DEIS-style): ε = −σ_r s(x, r) fixed at −σ_t s_θ(x_t, t). The linear part is
      −f x, so std² = λ_s² ∫_s^t g²/λ_r² dr = a² σ_t² − σ_s², and
      κ = λ_s σ_t ∫_s^t g²/(λ_r σ_r) dr = 2 σ_t (a σ_t − σ_s)  (g²/(λσ) = 2ρ').
    - ``"score"``: s fixed at s_θ(x_t, t); std as for ``"noise"``,
      κ = λ_s ∫_s^t g²/λ_r dr by 8-point Gauss–Legendre (on VP: 2(a − 1)).
    - ``"data"`` (DDPM ancestral step): Tweedie's x̂₀ = (x_t − c_t + σ_t² s_θ)/λ_t fixed, so the
      score −(x − m_r(x̂₀))/σ_r² is affine in x and its linear part is integrated too; the step
      is the forward process's posterior given (x_t, x̂₀): with σ_{t|s}² = σ_t² − σ_s²/a²,
      κ = a σ_{t|s}², std² = σ_{t|s}² σ_s²/σ_t².

    Each variant is exact, for any number of steps, when what it freezes is truly constant
    (constant ε, constant score, one-point data). All reduce to Euler–Maruyama as h → 0
    (κ ≈ g(t)² h) and are weakly first order; none is uniformly more accurate than
    Euler–Maruyama on a uniform grid (see tests/test_samplers.py for measurements).
    """

    tag: ClassVar[str] = "exponential"
    steps: StepCount = eqx.field(static=True, default=100)
    frozen: AbstractFrozenQuantity = FrozenNoise()
    eps: Positive = eqx.field(static=True, default=1e-3)
    grid: AbstractTimeGrid = UniformGrid()

    order: ClassVar[float] = 1.0  # weak order 1, every frozen quantity

    def __check_init__(self):
        if self.steps < 1:
            raise ValueError(f"ExponentialIntegrator needs steps >= 1, got {self.steps}")
        if not isinstance(self.frozen, AbstractFrozenQuantity):
            raise SpecFieldError("frozen", f"must be a frozen-quantity part, got {self.frozen!r}")

    def coefficients(
        self, sde: AbstractGaussianSDE, t: ScalarLike, s: ScalarLike
    ) -> tuple[Scalar, Scalar, Scalar]:
        """(a, κ, std) of one step from t down to s (``frozen``'s)."""
        return self.frozen.coefficients(sde, t, s)

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None) -> Samples:
        self.check_sde(sde)
        batched = batched_score(score, condition)
        ts = self.times(sde)
        zero = jnp.zeros(x_T.shape[-1], x_T.dtype)

        def step(x, inputs):
            t, s, key = inputs
            a, kappa, std = self.coefficients(sde, t, s)
            c_t, c_s = sde.marginal_mean(t, zero), sde.marginal_mean(s, zero)
            noise = jr.normal(key, x.shape)
            x = c_s + a * (x - c_t) + kappa * batched(x, t) + std * noise
            return x, x if save_ts is not None else None

        x, trajectory = scan_grid(step, x_T, ts, key, save_ts)
        return Samples(x, as_nfe(self.steps), trajectory)


SAMPLERS = (
    EulerMaruyama,
    AdaptiveReverseSDE,
    ProbabilityFlow,
    PredictorCorrector,
    ExponentialIntegrator,
)
"""The built-in samplers (registered by ``diffsde._builtin``)."""
SAMPLER_PARTS = (
    *ODE_SOLVERS,
    *TIME_GRIDS,
    FixedSteps,
    PIDSteps,
    ShARK,
    SRA1,
    FrozenNoise,
    FrozenScore,
    FrozenData,
)
"""The built-in parts of samplers."""


# chunked sampling ----------------------------------------------------------------------------


@eqx.filter_jit
def _sample_chunk(sampler, sde, score, x_T, key, index, save_ts, condition):
    """Chunk ``index`` (a traced int32, so every chunk shares one compilation) of ``sample``,
    with key ``fold_in(key, index)``."""
    key = jr.fold_in(key, index)
    if condition is None:  # samplers of plugins written before conditions need not take one
        return sampler.sample_from(sde, score, x_T, key=key, save_ts=save_ts)
    return sampler.sample_from(sde, score, x_T, key=key, save_ts=save_ts, condition=condition)


def sample(
    sampler: AbstractSampler,
    sde: AbstractSDE,
    score: ScoreFn,
    x_T: Batch,
    *,
    key: PRNGKeyArray,
    chunk_size: int = 10_000,
    save_ts: SaveTs | None = None,
    condition: Conditions = None,
) -> Samples:
    """``sampler.sample_from`` over chunks of ``chunk_size`` rows of ``x_T``, concatenated.

    ``condition``: one condition per row of ``x_T`` (a pytree of arrays with n rows, e.g. class
    indices of shape (n,)), chunked with the rows; None samples unconditionally.

    One jitted function is compiled once (the last chunk is padded by repeating its rows) and
    called per chunk, chunk i with key ``fold_in(key, i)``. ``nfe`` is the largest over chunks
    (adaptive solvers choose steps per chunk). Fixed-step ODE samplers give the same samples as
    one chunk; adaptive and stochastic ones give samples of the same law.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n = x_T.shape[0]
    if n == 0:
        raise ValueError("x_T is empty: give at least one starting point")
    if save_ts is not None:
        times = np.asarray(save_ts)
        if times.ndim != 1 or np.any(times > sde.T) or np.any(times < sampler.eps):
            raise ValueError(
                f"save_ts must be a 1-D array of times in [eps, T] = [{sampler.eps}, {sde.T}], "
                f"got {times}"
            )
        if np.any(np.diff(times) >= 0):
            raise ValueError(
                f"save_ts must be strictly decreasing (the order the reverse process visits "
                f"them, from T to eps), got {times}"
            )
        save_ts = jnp.asarray(times, jnp.float32)
    if condition is not None:
        condition = jax.tree.map(jnp.asarray, condition)
        bad = [c.shape for c in jax.tree.leaves(condition) if c.ndim < 1 or c.shape[0] != n]
        if bad:
            raise ValueError(
                f"condition must have one row per row of x_T ({n}), got leaves of shape "
                f"{bad[0]}: give e.g. jnp.full(({n},), label)"
            )
    size = min(chunk_size, n)
    if size == n:  # one chunk: no slicing, padding or concatenation
        return _sample_chunk(
            sampler, sde, score, x_T, key, np.zeros((), np.int32), save_ts, condition
        )
    outputs = []
    for i, start in enumerate(range(0, n, size)):
        chunk = x_T[start : start + size]
        rows = chunk.shape[0]
        chunk_condition = jax.tree.map(lambda c: c[start : start + size], condition)
        if rows < size:
            chunk = chunk[np.arange(size) % rows]
            chunk_condition = jax.tree.map(lambda c: c[np.arange(size) % rows], chunk_condition)
        index = np.asarray(i, np.int32)
        out = _sample_chunk(sampler, sde, score, chunk, key, index, save_ts, chunk_condition)
        outputs.append((out, rows))
    x = jnp.concatenate([out.x[:rows] for out, rows in outputs])
    nfe = jnp.max(jnp.stack([out.nfe for out, _ in outputs]))
    trajectory = None
    if save_ts is not None:
        trajectory = jnp.concatenate([out.trajectory[:, :rows] for out, rows in outputs], axis=1)
    return Samples(x, nfe, trajectory)
