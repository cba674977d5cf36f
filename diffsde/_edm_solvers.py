"""EDM's Heun sampler, DDIM and DEIS: fixed-step solvers of any SDE with a Gaussian kernel.

Each is written from its paper in the centred coordinates of diffsde/_schedule.py,
y = x − c_t = α_t x₀ + σ_t ε, with ρ_t = σ_t/α_t (EDM's σ) and the predictions of the score s
at (x, t): the noise ε̂ = −σ_t s and the data x̂₀ = (y + σ_t² s)/α_t (Tweedie). The scaled
state x̂ = y/α_t = x₀ + ρ_t ε follows the probability-flow ODE of a variance-exploding SDE in
the time ρ, whatever the SDE:

    dx̂/dρ = (x̂ − D(x̂; ρ))/ρ = ε̂,   D = x̂₀  (Karras et al. 2022, eq. 4 with s(t) = α_t,
                                                 σ(t) = ρ_t),

so d(y/α)/dt = ρ'_t ε̂. EDM's Heun integrates it with the trapezoidal rule in ρ; DDIM and DEIS
integrate it exactly in t with ε̂ frozen (DDIM) or extrapolated by a polynomial (DEIS).
"""

from typing import Annotated, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pydantic
from jaxtyping import Array, Float

from ._errors import SpecFieldError
from ._grids import AbstractTimeGrid, KarrasGrid, QuadraticGrid, UniformGrid
from ._sampler import (
    AbstractKernelSampler,
    Positive,
    Samples,
    StepCount,
    as_nfe,
    batched_score,
    interpolate_grid,
    scan_grid,
)
from ._schedule import (
    alpha_sigma,
    data_prediction,
    log_snr,
    noise_prediction,
    offset,
    sigma_ratio,
    time_at_sigma_ratio,
)

NonNegative = Annotated[float, pydantic.Field(ge=0)]
MAX_CHURN_GAMMA = float(np.sqrt(2.0) - 1.0)
"""EDM's cap on γ_i: the churn at most doubles the variance of the noise (ρ̂ ≤ √2 ρ)."""


def _eps_hat(sde, batched, x_hat, t, dim):
    """ε̂ at the scaled state x̂ = (x − c_t)/α_t and time t: one evaluation of the batch."""
    alpha, _ = alpha_sigma(sde, t)
    return noise_prediction(sde, t, batched(alpha * x_hat + offset(sde, t, dim), t))


# EDM Heun ------------------------------------------------------------------------------------


class EDMHeun(AbstractKernelSampler):
    """Karras et al. (2022), Algorithm 2, on any SDE with a Gaussian kernel: Heun's method in
    ρ = σ_t/α_t for x̂ = (x − c_t)/α_t, dx̂/dρ = (x̂ − D(x̂; ρ))/ρ (the form EDM's Table 1 calls
    s(t) = α_t, σ(t) = ρ_t), with optional stochastic churn. NFE = 2·steps.

    Step i, from t_i to t_{i+1} (ρ_i > ρ_{i+1}):

    1. churn (if ``churn`` > 0 and ``churn_tmin`` ≤ ρ_i ≤ ``churn_tmax``): γ_i =
       min(churn/steps, √2 − 1), ρ̂ = min(ρ_i (1 + γ_i), ρ_T), x̂ ← x̂ + √(ρ̂² − ρ_i²)·S z with
       z ~ N(0, I), S = ``churn_noise``; the time of ρ̂ is ``time_at_sigma_ratio``. ρ̂ is clamped
       to ρ_T because the score is defined on [0, T] only: at t_0 = T the churn is void.
    2. Euler: d = (x̂ − D(x̂; ρ̂))/ρ̂ = ε̂(x̂, t̂), x̂' = x̂ + (ρ_{i+1} − ρ̂) d.
    3. Heun: d' = ε̂(x̂', t_{i+1}), x̂ ← x̂ + (ρ_{i+1} − ρ̂)(d + d')/2.

    The paper skips the correction only where σ_{i+1} = 0 (its last step goes to σ = 0, where
    d' is undefined). The grid here ends at ε > 0, so ρ_N = ρ_ε > 0 and every step, the last
    included, is corrected: NFE = 2·steps exactly.

    Defaults: EDM's Karras grid (ρ = 7); 32 steps, the fewest of 18, 24, 32 with which
    ``diffsde check sampler edm_heun`` returns the target on vp, ve and subvp.

    Order: 2 without churn. With churn and S = 1 the added noise maps p at ρ_i exactly to p at
    ρ̂ (x̂ = x₀ + ρ ε), so only the Heun steps err, each by O(H³) with H = ρ̂ − ρ_{i+1} =
    O(1/steps) once γ_i = churn/steps is below its cap: weak order 2 (measured on a Gaussian
    target, VP, churn 2: second-moment errors 8.9e-2, 2.2e-2, 4.7e-3 at 16, 32, 64 steps). While
    the cap √2 − 1 binds (steps < churn/(√2 − 1)) γ_i does not shrink with the step and the
    observed order is lower (1.1 at 16–64 steps with churn 40). With S ≠ 1 the excess noise
    Σ (S² − 1)(ρ̂² − ρ²) stays finite as steps grow and the error stalls (0.2 at S = 1.1): no
    order is declared.
    """

    tag: ClassVar[str] = "edm_heun"
    steps: StepCount = eqx.field(static=True, default=32)
    grid: AbstractTimeGrid = KarrasGrid()
    churn: NonNegative = eqx.field(static=True, default=0.0)
    churn_tmin: NonNegative = eqx.field(static=True, default=0.0)
    churn_tmax: NonNegative | None = eqx.field(static=True, default=None)
    churn_noise: Positive = eqx.field(static=True, default=1.0)
    eps: Positive = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        if self.steps < 1:
            raise SpecFieldError("steps", f"must be at least 1, got {self.steps}")
        if not self.churn >= 0:
            raise SpecFieldError(
                "churn", f"must be ≥ 0 (EDM's S_churn; 0 is deterministic), got {self.churn}"
            )
        if not self.churn_noise > 0:
            raise SpecFieldError(
                "churn_noise", f"must be > 0 (EDM's S_noise, 1 is exact), got {self.churn_noise}"
            )
        if not self.churn_tmin >= 0:
            raise SpecFieldError(
                "churn_tmin", f"must be ≥ 0 (in units of ρ = σ/α), got {self.churn_tmin}"
            )
        if self.churn_tmax is not None and not self.churn_tmax >= self.churn_tmin:
            raise SpecFieldError(
                "churn_tmax",
                f"must be ≥ churn_tmin = {self.churn_tmin} (in units of ρ = σ/α), got "
                f"{self.churn_tmax}: raise it, or leave it out for no upper bound",
            )

    @property
    def order(self) -> float | None:
        """2 (deterministic, or churn with churn_noise = 1: weak order 2 once churn/steps is
        below the cap √2 − 1); None with churn_noise ≠ 1."""
        return 2.0 if self.churn == 0 or self.churn_noise == 1 else None

    def gamma(self, rho: Float[Array, "*k"]) -> Float[Array, "*k"]:
        """γ_i at ρ_i: min(churn/steps, √2 − 1) inside [churn_tmin, churn_tmax], else 0."""
        top = jnp.inf if self.churn_tmax is None else self.churn_tmax
        inside = (rho >= self.churn_tmin) & (rho <= top)
        return jnp.where(inside, min(self.churn / self.steps, MAX_CHURN_GAMMA), 0.0)

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None) -> Samples:
        self.check_sde(sde)
        batched = batched_score(score, condition)
        dim = x_T.shape[-1]
        ts = self.times(sde)
        rho_T = sigma_ratio(sde, sde.T)

        def step(x, inputs):
            t, t_next, key = inputs
            alpha, _ = alpha_sigma(sde, t)
            x_hat = (x - offset(sde, t, dim)) / alpha
            rho, rho_next = sigma_ratio(sde, t), sigma_ratio(sde, t_next)
            if self.churn > 0:
                rho_hat = jnp.minimum(rho * (1 + self.gamma(rho)), rho_T)
                churned = rho_hat > rho
                t = jnp.where(churned, time_at_sigma_ratio(sde, rho_hat), t)
                rho_hat = jnp.where(churned, rho_hat, rho)
                z = jr.normal(key, x.shape)
                # ≥ 0 by construction; the maximum guards an FMA's rounding when ρ̂ = ρ
                added = jnp.sqrt(jnp.maximum(rho_hat**2 - rho**2, 0.0))
                x_hat = x_hat + self.churn_noise * added * z
                rho = rho_hat
            h = rho_next - rho
            d = _eps_hat(sde, batched, x_hat, t, dim)
            d_next = _eps_hat(sde, batched, x_hat + h * d, t_next, dim)
            x_hat = x_hat + h * (d + d_next) / 2
            x = alpha_sigma(sde, t_next)[0] * x_hat + offset(sde, t_next, dim)
            return x, x if save_ts is not None else None

        x, trajectory = scan_grid(step, x_T, ts, key, save_ts)
        return Samples(x, as_nfe(2 * self.steps), trajectory)


# DDIM ----------------------------------------------------------------------------------------


class DDIM(AbstractKernelSampler):
    """Song, Meng & Ermon (2021), DDIM, eq. 12 on any SDE with a Gaussian kernel. NFE = steps.

    On a step from t to s < t, with ε̂ = −σ_t s(x_t, t) and x̂₀ = (y_t − σ_t ε̂)/α_t,

        y_s = α_s x̂₀ + √(σ_s² − σ_η²) ε̂ + σ_η z,
        σ_η = η σ_s √(1 − e^{2(ℓ_t − ℓ_s)}),   e^{ℓ_t − ℓ_s} = α_t σ_s / (α_s σ_t),

    which is the paper's σ_τ(η) (eq. 16) with ᾱ = α², 1 − ᾱ = σ² on VP. σ_η² at η = 1 is the
    variance σ_s² σ_{t|s}²/σ_t² of the forward posterior q(y_s | y_t, x₀), and the mean is then
    its mean: η = 1 is the DDPM ancestral step, identical step for step (same draws) to
    ``ExponentialIntegrator(frozen=FrozenData())``. η = 0 is deterministic: the exponential
    integrator of the probability-flow ODE with ε̂ held fixed over each step (DEIS of order 1),
    exact for any steps when ε̂ is constant along the path (one-point data).

    Order 1: the global error at η = 0, the weak error for η > 0. Default 200 uniform steps
    (50 miss ``diffsde check``'s target test by 8 standard errors: first order is slow).
    """

    tag: ClassVar[str] = "ddim"
    steps: StepCount = eqx.field(static=True, default=200)
    grid: AbstractTimeGrid = UniformGrid()
    eta: Annotated[float, pydantic.Field(ge=0, le=1)] = eqx.field(static=True, default=0.0)
    eps: Positive = eqx.field(static=True, default=1e-3)

    order: ClassVar[float] = 1.0

    def __check_init__(self):
        if self.steps < 1:
            raise SpecFieldError("steps", f"must be at least 1, got {self.steps}")
        if not 0 <= self.eta <= 1:
            raise SpecFieldError(
                "eta",
                f"must lie in [0, 1] (0: deterministic DDIM, 1: the DDPM ancestral step), got "
                f"{self.eta}",
            )

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None) -> Samples:
        self.check_sde(sde)
        batched = batched_score(score, condition)
        dim = x_T.shape[-1]
        ts = self.times(sde)

        def step(x, inputs):
            t, s, key = inputs
            (alpha_t, sigma_t), (alpha_s, sigma_s) = alpha_sigma(sde, t), alpha_sigma(sde, s)
            value = batched(x, t)
            x0 = data_prediction(sde, x, t, value)
            eps_hat = noise_prediction(sde, t, value)
            y = alpha_s * x0
            if self.eta > 0:
                ratio = (alpha_t * sigma_s) / (alpha_s * sigma_t)
                std = self.eta * sigma_s * jnp.sqrt(jnp.maximum(1 - ratio**2, 0.0))
                kept = jnp.sqrt(jnp.maximum(sigma_s**2 - std**2, 0.0))
                y = y + kept * eps_hat + std * jr.normal(key, x.shape)
            else:
                y = y + sigma_s * eps_hat
            x = y + offset(sde, s, dim)
            return x, x if save_ts is not None else None

        x, trajectory = scan_grid(step, x_T, ts, key, save_ts)
        return Samples(x, as_nfe(self.steps), trajectory)


# DEIS ----------------------------------------------------------------------------------------

# Gauss–Legendre nodes and weights on [0, 1] for the DEIS coefficients
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)
_GL_NODES, _GL_WEIGHTS = (_GL_NODES + 1) / 2, _GL_WEIGHTS / 2
MAX_HISTORY = 4
Space = Literal["t", "log_snr", "sigma_ratio"]
_SPACES = ("t", "log_snr", "sigma_ratio")


def _lagrange(v: Array, nodes: Float[Array, " H"], order: Array) -> Float[Array, " H"]:
    """The Lagrange basis L_j(v), j < H, through the first ``order`` of ``nodes`` (L_j = 0 for
    j ≥ order)."""
    H = nodes.shape[0]
    index = jnp.arange(H)
    used = index < order
    pair = used[None, :] & used[:, None] & (index[None, :] != index[:, None])  # (j, m)
    gap = jnp.where(pair, nodes[:, None] - nodes[None, :], 1.0)
    factor = jnp.where(pair, (v - nodes[None, :]) / gap, 1.0)
    return jnp.where(used, jnp.prod(factor, axis=1), 0.0)


class DEIS(AbstractKernelSampler):
    """Zhang & Chen (2022), DEIS (the multistep "AB-DEIS"), on any SDE with a Gaussian kernel.
    NFE = steps.

    The probability-flow ODE reads d(y/α)/dt = ρ'_t ε̂(x_t, t), so a step from t_i to t_{i+1} is

        y_{i+1} = (α_{i+1}/α_i) y_i + α_{i+1} Σ_{j<k} C_ij ε̂_{i−j},
        C_ij = ∫_{t_i}^{t_{i+1}} L_j(v(τ)) dρ_τ,

    with ε̂ extrapolated by the polynomial through the last k = min(``history``, i + 1)
    evaluations (the first steps are of lower order: the warm-up), L_j its Lagrange basis in
    the variable v of ``space``: ``t`` (tAB-DEIS), ``sigma_ratio`` (polynomial in ρ: ρAB-DEIS)
    or ``log_snr`` (in ℓ = −log ρ). The coefficients are computed once per call by 16-point
    Gauss–Legendre quadrature in ρ (``t``: the grid's times of the nodes by
    ``time_at_sigma_ratio``; t(ρ) is smooth, ∝ ρ² near 0, where ρ(t) is not) or in ℓ
    (``log_snr``: dρ = −e^{−ℓ} dℓ); for ``sigma_ratio`` the rule is exact. history = 1 is DDIM
    (η = 0) for every space.

    Exact, for any steps, when ε̂ along the exact path is a polynomial of degree < history in
    v (past the warm-up, whose first steps err by O(h²)·ε̂' near T, where ε̂ barely moves);
    order ``history``. Defaults as the authors' code: tAB-DEIS of order 3 on the quadratic grid
    (``ts_order=2``), 25 steps. On a uniform grid, tAB is slow to show its order on VP (ε̂ ∝ √t
    near ε: fitted 1.3 at 64–256 steps); ρAB and the quadratic grid have none of that.
    """

    tag: ClassVar[str] = "deis"
    steps: StepCount = eqx.field(static=True, default=25)
    grid: AbstractTimeGrid = QuadraticGrid()
    history: Annotated[int, pydantic.Field(ge=1, le=MAX_HISTORY)] = eqx.field(
        static=True, default=3
    )
    space: Space = eqx.field(static=True, default="t")
    eps: Positive = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        if self.steps < 1:
            raise SpecFieldError("steps", f"must be at least 1, got {self.steps}")
        if not 1 <= self.history <= MAX_HISTORY:
            raise SpecFieldError(
                "history",
                f"must be 1 to {MAX_HISTORY} (the evaluations the polynomial goes through, the "
                f"order), got {self.history}",
            )
        if self.space not in _SPACES:
            raise SpecFieldError(
                "space",
                f"must be one of {', '.join(_SPACES)} (the variable ε̂ is a polynomial in), got "
                f"{self.space!r}",
            )

    @property
    def order(self) -> float:
        """``history``: the degree of the extrapolation plus one."""
        return float(self.history)

    def coefficients(self, sde, ts: Float[Array, " N1"]) -> Float[Array, "N H"]:
        """C_ij of every step i of the grid ``ts`` (zero for j ≥ min(history, i + 1))."""
        H, steps = self.history, ts.shape[0] - 1
        rho = jax.vmap(lambda t: sigma_ratio(sde, t))(ts)
        if self.space == "log_snr":
            v = jax.vmap(lambda t: log_snr(sde, t))(ts)
            lo, hi = v[:-1], v[1:]  # quadrature in ℓ, dρ = −e^{−ℓ} dℓ
        else:
            v = ts if self.space == "t" else rho
            lo, hi = rho[:-1], rho[1:]  # quadrature in ρ
        index = jnp.arange(steps)
        nodes = v[jnp.maximum(index[:, None] - jnp.arange(H)[None, :], 0)]  # (N, H)
        order = jnp.minimum(index + 1, H)
        q = lo[:, None] + (hi - lo)[:, None] * jnp.asarray(_GL_NODES, jnp.float32)  # (N, Q)
        weights = (hi - lo)[:, None] * jnp.asarray(_GL_WEIGHTS, jnp.float32)
        if self.space == "log_snr":
            at, weights = q, -weights * jnp.exp(-q)
        elif self.space == "t":
            at = time_at_sigma_ratio(sde, q)
        else:
            at = q
        basis = jax.vmap(jax.vmap(_lagrange, in_axes=(0, None, None)))(at, nodes, order)
        return jnp.sum(weights[:, :, None] * basis, axis=1)

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None) -> Samples:
        del key  # deterministic
        self.check_sde(sde)
        batched = batched_score(score, condition)
        dim = x_T.shape[-1]
        ts = self.times(sde)
        coefficients = self.coefficients(sde, ts)

        def step(carry, inputs):
            x, history = carry
            t, s, c = inputs
            (alpha_t, _), (alpha_s, _) = alpha_sigma(sde, t), alpha_sigma(sde, s)
            eps_hat = noise_prediction(sde, t, batched(x, t))
            history = jnp.concatenate([eps_hat[None], history[:-1]])
            y = (alpha_s / alpha_t) * (x - offset(sde, t, dim))
            y = y + alpha_s * jnp.tensordot(c, history, axes=1)
            x = y + offset(sde, s, dim)
            return (x, history), x if save_ts is not None else None

        start = (x_T, jnp.zeros((self.history, *x_T.shape), x_T.dtype))
        (x, _), states = jax.lax.scan(step, start, (ts[:-1], ts[1:], coefficients))
        trajectory = None
        if save_ts is not None:
            trajectory = interpolate_grid(jnp.concatenate([x_T[None], states]), ts, save_ts)
        return Samples(x, as_nfe(self.steps), trajectory)


SAMPLERS = (EDMHeun, DDIM, DEIS)
"""EDM's Heun, DDIM and DEIS (registered by ``diffsde._builtin``)."""
