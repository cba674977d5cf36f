"""Samplers of the reverse process (docs/math.md §4), each reporting its NFE.

A sampler turns samples x_T of p_T (or of p_noise ≈ p_T) into samples of p_ε, given a score
``score(x, t)`` of ONE point. The whole batch (n, dim) is one state: one solve, shared step sizes
(as in score_sde), the score ``jax.vmap``-ed over the rows. NFE counts evaluations of the score on
the whole batch: one call of the vmapped score is 1 NFE.

Time grids are uniform in forward time t, from T down to ε. The reverse SDE is integrated
forwards in u = T − t (diffrax's Brownian paths and SDE solvers are tested in that direction);
the probability-flow ODE backwards in t, from T to ε.
"""

import abc
from collections.abc import Callable
from typing import ClassVar, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._custom_types import Scalar, ScalarLike, ScoreFn
from ._sde._base import AbstractGaussianSDE, AbstractSDE

Batch = Float[Array, "n dim"]
SaveTs = Float[Array, " k"]


class Samples(eqx.Module):
    """Samples of p_ε, the number of score evaluations on the batch, optionally a trajectory.

    ``trajectory[i]`` is the state at forward time ``save_ts[i]`` (None unless asked for).
    """

    x: Float[Array, "n dim"]
    nfe: Int[Array, ""]
    trajectory: Float[Array, "k n dim"] | None = None


class AbstractSampler(eqx.Module):
    """Integrates the reverse process from x_T at t = T down to t = ``eps``."""

    eps: eqx.AbstractVar[float]

    @abc.abstractmethod
    def sample_from(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        x_T: Batch,
        *,
        key: PRNGKeyArray,
        save_ts: SaveTs | None = None,
    ) -> Samples:
        """Samples of p_ε from the batch ``x_T`` of (approximate) samples of p_T.

        ``save_ts``: forward times in [ε, T], decreasing (the order the reverse process visits
        them), at which to record the state.
        """


# helpers -------------------------------------------------------------------------------------


def _check_eps(sampler: AbstractSampler, sde: AbstractSDE) -> None:
    if not 0 < sampler.eps < sde.T:
        raise ValueError(
            f"{type(sampler).__name__}: eps={sampler.eps} must lie in (0, T) with T={sde.T} for "
            f"{type(sde).__name__}; choose a smaller eps (1e-3 for VP, 1e-5 for VE are usual)"
        )


def _batched_score(score: ScoreFn) -> Callable[[Batch, ScalarLike], Batch]:
    return jax.vmap(score, in_axes=(0, None))


def _flat_reverse_terms(
    sde: AbstractSDE, score: ScoreFn, shape: tuple[int, int], brownian
) -> diffrax.MultiTerm:
    """The reverse SDE of the whole batch, flattened to one state of size n·dim (diffrax terms
    in u = T − t; the noise g(T − u) I is diagonal)."""
    drift = jax.vmap(sde.reverse_drift(score), in_axes=(None, 0))
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


def _grid(sde: AbstractSDE, eps: float, steps: int) -> Float[Array, " steps_plus_one"]:
    """Forward times T = t_0 > t_1 > … > t_steps = ε, uniform."""
    return jnp.linspace(sde.T, eps, steps + 1)


def _interpolate_grid(
    states: Float[Array, "m n dim"], sde: AbstractSDE, eps: float, save_ts: SaveTs
) -> Float[Array, "k n dim"]:
    """States at ``save_ts`` from the states on the uniform grid (linear in t between nodes)."""
    steps = states.shape[0] - 1
    position = (sde.T - save_ts) / (sde.T - eps) * steps
    index = jnp.clip(jnp.floor(position).astype(jnp.int32), 0, steps - 1)
    weight = (position - index)[:, None, None]
    return (1 - weight) * states[index] + weight * states[index + 1]


def _nfe(value) -> Int[Array, ""]:
    return jnp.asarray(value, jnp.int32)


# Euler–Maruyama ------------------------------------------------------------------------------


def _scan_grid(step, x_T: Batch, ts, key: PRNGKeyArray, sde: AbstractSDE, eps: float, save_ts):
    """Run ``step(x, (t, t_next, key))`` over the grid ``ts`` with ``lax.scan``; return the end
    state and, if ``save_ts`` is given, the states interpolated at those times."""
    steps = ts.shape[0] - 1
    x, states = jax.lax.scan(step, x_T, (ts[:-1], ts[1:], jr.split(key, steps)))
    if save_ts is None:
        return x, None
    states = jnp.concatenate([x_T[None], states])
    return x, _interpolate_grid(states, sde, eps, save_ts)


class EulerMaruyama(AbstractSampler):
    """Euler–Maruyama on the reverse SDE, ``steps`` uniform steps. NFE = steps.

    diffrax's Euler on a fixed grid (``StepTo``), driven by ``UnsafeBrownianPath``: each interval
    is queried once, so its increments are exact N(0, h I) draws at O(1) cost per step (and
    only forward-mode differentiation goes through it).
    """

    steps: int = eqx.field(static=True)
    eps: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        if self.steps < 1:
            raise ValueError(f"EulerMaruyama needs steps >= 1, got {self.steps}")

    def sample_from(self, sde, score, x_T, *, key, save_ts=None) -> Samples:
        _check_eps(self, sde)
        U = sde.T - self.eps
        brownian = diffrax.UnsafeBrownianPath(shape=(x_T.size,), key=key)
        sol = diffrax.diffeqsolve(
            _flat_reverse_terms(sde, score, x_T.shape, brownian),
            diffrax.Euler(),
            t0=0.0,
            t1=U,
            dt0=None,
            y0=x_T.reshape(-1),
            saveat=_saveat(save_ts, lambda t: sde.T - t),
            stepsize_controller=diffrax.StepTo(jnp.linspace(0.0, U, self.steps + 1)),
            max_steps=self.steps,
            adjoint=diffrax.ForwardMode(),  # UnsafeBrownianPath cannot be replayed backwards
        )
        x, trajectory = _unpack(sol.ys, save_ts, x_T.shape)
        return Samples(x, _nfe(self.steps), trajectory)


# adaptive reverse SDE ------------------------------------------------------------------------

_SRK_SOLVERS = {"shark": diffrax.ShARK, "sra1": diffrax.SRA1}
SRKSolver = Literal["shark", "sra1"]


class AdaptiveReverseSDE(AbstractSampler):
    """The reverse SDE with adaptive steps: an additive-noise SRK (ShARK or SRA1, strong order
    1.5, embedded error estimate), a ``PIDController`` and a ``VirtualBrownianTree`` (so that
    rejected steps re-query the same Brownian path).

    NFE = 2 × (accepted + rejected steps): both solvers evaluate the drift at 2 stages per step
    attempt, with no stage shared between steps (the first stage is shifted by the space-time
    Lévy area), and the initial step is ``dt0`` (no evaluations to choose it).
    """

    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    dt0: float = eqx.field(static=True)
    brownian_tol: float = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    solver: SRKSolver = eqx.field(static=True, default="shark")
    eps: float = eqx.field(static=True, default=1e-3)
    stages: ClassVar[int] = 2

    def __check_init__(self):
        if self.solver not in _SRK_SOLVERS:
            raise ValueError(
                f"unknown solver {self.solver!r}; choose one of {sorted(_SRK_SOLVERS)}"
            )
        if not (self.rtol > 0 and self.atol > 0 and self.dt0 > 0 and self.brownian_tol > 0):
            raise ValueError(
                f"rtol, atol, dt0 and brownian_tol must be positive, got rtol={self.rtol}, "
                f"atol={self.atol}, dt0={self.dt0}, brownian_tol={self.brownian_tol}"
            )

    def sample_from(self, sde, score, x_T, *, key, save_ts=None) -> Samples:
        _check_eps(self, sde)
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
            _flat_reverse_terms(sde, score, x_T.shape, brownian),
            _SRK_SOLVERS[self.solver](),
            t0=0.0,
            t1=U,
            dt0=self.dt0,
            y0=x_T.reshape(-1),
            saveat=_saveat(save_ts, lambda t: sde.T - t),
            stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol),
            max_steps=self.max_steps,
        )
        x, trajectory = _unpack(sol.ys, save_ts, x_T.shape)
        return Samples(x, _nfe(self.stages * sol.stats["num_steps"]), trajectory)


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


class _ODESolver(eqx.Module):
    """A diffrax solver and what one step costs: NFE = init + per_step × steps attempted."""

    make: Callable[[], diffrax.AbstractSolver]
    adaptive: bool
    per_step: int
    init: int


# FSAL solvers (Tsit5, Dopri5: 7 stages, the last equal to the next step's first) evaluate the
# field once at initialisation and 6 times per step attempt (a rejected step keeps its first
# stage). The initial step is given (dt0), so diffrax's initial-step heuristic is not run.
ODE_SOLVERS: dict[str, _ODESolver] = {
    "euler": _ODESolver(diffrax.Euler, adaptive=False, per_step=1, init=0),
    "heun": _ODESolver(diffrax.Heun, adaptive=False, per_step=2, init=0),
    "rk4": _ODESolver(RK4, adaptive=False, per_step=4, init=0),
    "tsit5": _ODESolver(diffrax.Tsit5, adaptive=True, per_step=6, init=1),
    "dopri5": _ODESolver(diffrax.Dopri5, adaptive=True, per_step=6, init=1),
}
ODESolverName = Literal["euler", "heun", "rk4", "tsit5", "dopri5"]
FIXED_STEP_SOLVERS = tuple(k for k, v in ODE_SOLVERS.items() if not v.adaptive)
ADAPTIVE_SOLVERS = tuple(k for k, v in ODE_SOLVERS.items() if v.adaptive)


class ProbabilityFlow(AbstractSampler):
    """The probability-flow ODE dx/dt = b − ½ g² s from T to ε.

    Fixed-step solvers (euler, heun, rk4) take ``steps`` uniform steps and need no tolerances;
    adaptive ones (tsit5, dopri5) use a ``PIDController(rtol, atol)`` from a first step ``dt0``
    and need no ``steps``.
    NFE: euler steps, heun 2·steps, rk4 4·steps; tsit5/dopri5 1 + 6·(accepted + rejected steps).
    """

    solver: ODESolverName = eqx.field(static=True)
    steps: int | None = eqx.field(static=True, default=None)
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)
    dt0: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=4096)
    eps: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        if self.solver not in ODE_SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {list(ODE_SOLVERS)}")
        if ODE_SOLVERS[self.solver].adaptive:
            if None in (self.rtol, self.atol, self.dt0) or self.steps is not None:
                raise ValueError(
                    f"solver {self.solver!r} is adaptive: give rtol, atol and dt0, not steps "
                    f"(got steps={self.steps}, rtol={self.rtol}, atol={self.atol}, "
                    f"dt0={self.dt0}); "
                    f"or choose a fixed-step solver ({', '.join(FIXED_STEP_SOLVERS)})"
                )
        elif (
            self.steps is None or self.steps < 1 or (self.rtol, self.atol, self.dt0) != (None,) * 3
        ):
            raise ValueError(
                f"solver {self.solver!r} takes fixed steps: give steps >= 1 and no rtol/atol/dt0 "
                f"(got steps={self.steps}, rtol={self.rtol}, atol={self.atol}); or choose an "
                f"adaptive solver ({', '.join(ADAPTIVE_SOLVERS)})"
            )

    def sample_from(self, sde, score, x_T, *, key, save_ts=None) -> Samples:
        del key  # deterministic
        _check_eps(self, sde)
        spec = ODE_SOLVERS[self.solver]
        field = jax.vmap(sde.probability_flow(score), in_axes=(None, 0))
        term = diffrax.ODETerm(lambda t, y, args: field(t, y.reshape(x_T.shape)).reshape(-1))
        if spec.adaptive:
            controller = diffrax.PIDController(rtol=self.rtol, atol=self.atol)
            max_steps, dt0 = self.max_steps, -self.dt0
        else:
            controller = diffrax.StepTo(_grid(sde, self.eps, self.steps))
            max_steps, dt0 = self.steps, None
        sol = diffrax.diffeqsolve(
            term,
            spec.make(),
            t0=sde.T,
            t1=self.eps,
            dt0=dt0,
            y0=x_T.reshape(-1),
            saveat=_saveat(save_ts, lambda t: t),
            stepsize_controller=controller,
            max_steps=max_steps,
        )
        x, trajectory = _unpack(sol.ys, save_ts, x_T.shape)
        return Samples(x, _nfe(spec.init + spec.per_step * sol.stats["num_steps"]), trajectory)


# predictor–corrector -------------------------------------------------------------------------


class PredictorCorrector(AbstractSampler):
    """Predictor–corrector (Song et al. 2021): per step, one Euler–Maruyama step of the reverse
    SDE from t_k to t_{k+1}, then ``corrector_steps`` Langevin steps at t_{k+1}

        x ← x + ε s + √(2ε) z,   ε = 2 (snr · mean‖z‖ / mean‖s‖)²,

    norms per sample over the whole vector, averaged over the batch (as score_sde).
    NFE = steps × (1 + corrector_steps).
    """

    steps: int = eqx.field(static=True)
    corrector_steps: int = eqx.field(static=True)
    snr: float = eqx.field(static=True)
    eps: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        if self.steps < 1 or self.corrector_steps < 0 or not self.snr > 0:
            raise ValueError(
                f"PredictorCorrector needs steps >= 1, corrector_steps >= 0, snr > 0; got "
                f"steps={self.steps}, corrector_steps={self.corrector_steps}, snr={self.snr}"
            )

    def sample_from(self, sde, score, x_T, *, key, save_ts=None) -> Samples:
        _check_eps(self, sde)
        batched = _batched_score(score)
        drift = jax.vmap(sde.reverse_drift(score), in_axes=(None, 0))
        ts = _grid(sde, self.eps, self.steps)

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

        x, trajectory = _scan_grid(step, x_T, ts, key, sde, self.eps, save_ts)
        return Samples(x, _nfe(self.steps * (1 + self.corrector_steps)), trajectory)


# exponential integrator ----------------------------------------------------------------------

# Gauss–Legendre nodes and weights on [0, 1] for ∫ g²/λ over one step (``frozen="score"``)
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)
_GL_NODES, _GL_WEIGHTS = (_GL_NODES + 1) / 2, _GL_WEIGHTS / 2


class ExponentialIntegrator(AbstractSampler):
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

    steps: int = eqx.field(static=True)
    frozen: Literal["noise", "score", "data"] = eqx.field(static=True, default="noise")
    eps: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        if self.steps < 1:
            raise ValueError(f"ExponentialIntegrator needs steps >= 1, got {self.steps}")
        if self.frozen not in ("noise", "score", "data"):
            raise ValueError(f"frozen must be 'noise', 'score' or 'data', got {self.frozen!r}")

    def coefficients(
        self, sde: AbstractGaussianSDE, t: ScalarLike, s: ScalarLike
    ) -> tuple[Scalar, Scalar, Scalar]:
        """(a, κ, std) of one step from t down to s."""
        lam_t, sigma_t = sde.kernel(t)
        lam_s, sigma_s = sde.kernel(s)
        a = lam_s / lam_t
        std = jnp.sqrt(jnp.maximum((a * sigma_t) ** 2 - sigma_s**2, 0.0))
        if self.frozen == "noise":
            kappa = 2 * sigma_t * (a * sigma_t - sigma_s)
        elif self.frozen == "score":
            r = s + (t - s) * jnp.asarray(_GL_NODES, jnp.float32)
            lam_r = jax.vmap(lambda r: sde.kernel(r)[0])(r)
            g2 = jax.vmap(sde.diffusion)(r) ** 2
            kappa = lam_s * (t - s) * jnp.sum(jnp.asarray(_GL_WEIGHTS, jnp.float32) * g2 / lam_r)
        else:
            bridge = jnp.maximum(sigma_t**2 - (sigma_s / a) ** 2, 0.0)
            kappa = a * bridge
            std = jnp.sqrt(bridge) * sigma_s / sigma_t
        return a, kappa, std

    def sample_from(self, sde, score, x_T, *, key, save_ts=None) -> Samples:
        check_gaussian(sde, type(self).__name__)
        _check_eps(self, sde)
        batched = _batched_score(score)
        ts = _grid(sde, self.eps, self.steps)
        zero = jnp.zeros(x_T.shape[-1], x_T.dtype)

        def step(x, inputs):
            t, s, key = inputs
            a, kappa, std = self.coefficients(sde, t, s)
            c_t, c_s = sde.marginal_mean(t, zero), sde.marginal_mean(s, zero)
            noise = jr.normal(key, x.shape)
            x = c_s + a * (x - c_t) + kappa * batched(x, t) + std * noise
            return x, x if save_ts is not None else None

        x, trajectory = _scan_grid(step, x_T, ts, key, sde, self.eps, save_ts)
        return Samples(x, _nfe(self.steps), trajectory)


def check_gaussian(sde: AbstractSDE, who: str) -> None:
    """ValueError unless ``sde`` has a Gaussian transition kernel (λ_t, σ_t)."""
    if not (sde.has_gaussian_kernel and isinstance(sde, AbstractGaussianSDE)):
        raise ValueError(
            f"{who} integrates the linear part of an affine SDE exactly with its Gaussian kernel "
            f"(λ_t, σ_t), but {type(sde).__name__} has no Gaussian transition kernel; use an SDE "
            "with one (ou, ve, vp, subvp, affine) or another sampler (euler_maruyama, pc, "
            "reverse_sde_adaptive, pf_ode)"
        )


# chunked sampling ----------------------------------------------------------------------------


@eqx.filter_jit
def _sample_chunk(sampler, sde, score, x_T, key, save_ts):
    return sampler.sample_from(sde, score, x_T, key=key, save_ts=save_ts)


def sample(
    sampler: AbstractSampler,
    sde: AbstractSDE,
    score: ScoreFn,
    x_T: Batch,
    *,
    key: PRNGKeyArray,
    chunk_size: int = 10_000,
    save_ts: SaveTs | None = None,
) -> Samples:
    """``sampler.sample_from`` over chunks of ``chunk_size`` rows of ``x_T``, concatenated.

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
    size = min(chunk_size, n)
    outputs = []
    for i, start in enumerate(range(0, n, size)):
        chunk = x_T[start : start + size]
        rows = chunk.shape[0]
        if rows < size:
            chunk = chunk[np.arange(size) % rows]
        out = _sample_chunk(sampler, sde, score, chunk, jr.fold_in(key, i), save_ts)
        outputs.append((out, rows))
    x = jnp.concatenate([out.x[:rows] for out, rows in outputs])
    nfe = jnp.max(jnp.stack([out.nfe for out, _ in outputs]))
    trajectory = None
    if save_ts is not None:
        trajectory = jnp.concatenate([out.trajectory[:, :rows] for out, rows in outputs], axis=1)
    return Samples(x, nfe, trajectory)
