"""DPM-Solver (Lu et al. 2022), DPM-Solver++ (Lu et al. 2023) and UniPC (Zhao et al. 2023) for
any SDE with a Gaussian kernel.

In centred coordinates y = x − c_t (diffsde/_schedule.py) a sample of p_t reads
y_t = α_t x₀ + σ_t ε, and the probability-flow ODE integrated from t to s < t, in the log-SNR
ℓ = log(α/σ) with h = ℓ_s − ℓ_t > 0, is exactly (variation of constants)

    y_s = (α_s/α_t) y_t − α_s ∫_{ℓ_t}^{ℓ_s} e^{−ℓ} ε̂(ℓ) dℓ     (noise prediction, ε̂ = −σ s)
        = (σ_s/σ_t) y_t + σ_s ∫_{ℓ_t}^{ℓ_s} e^{ℓ} x̂₀(ℓ) dℓ       (data prediction, x̂₀ Tweedie's)

The solvers expand ε̂ or x̂₀ in ℓ about ℓ_t and integrate the polynomial exactly: with
φ_k(z) = ∫₀¹ e^{(1−θ)z} θ^{k−1}/(k−1)! dθ,

    y_s = (α_s/α_t) y_t − σ_s Σ_n h^{n+1} φ_{n+1}(h) ε̂⁽ⁿ⁾(ℓ_t),
    y_s = (σ_s/σ_t) y_t + α_s Σ_n h^{n+1} φ_{n+1}(−h) x̂₀⁽ⁿ⁾(ℓ_t),

and estimate the derivatives from evaluations at intermediate points (singlestep: DPM-Solver) or
at the previous grid points (multistep: DPM-Solver++ 2M/3M, UniPC). The reverse SDE in data
prediction form integrates the same way with weights e^{−2(ℓ_s−ℓ)}: with x̂₀ frozen its step is
the DDPM posterior, y_s = (σ_s/σ_t) e^{−h} y_t + α_s (1 − e^{−2h}) x̂₀ + σ_s √(1 − e^{−2h}) z.

Every multistep update is a linear combination, with coefficients that depend on the grid only,
of y_t and the last three data predictions: the coefficients are computed for all steps before
the ``lax.scan``, which then only evaluates the score and combines.
"""

import math
from typing import Annotated, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pydantic
from jaxtyping import Array, Float, Int

from ._errors import SpecFieldError
from ._grids import AbstractTimeGrid, LogSNRGrid
from ._sampler import (
    AbstractKernelSampler,
    Positive,
    Samples,
    StepCount,
    as_nfe,
    batched_score,
    interpolate_grid,
)
from ._schedule import alpha_sigma, log_snr, offset, time_at_log_snr

Order = Annotated[int, pydantic.Field(ge=1, le=3)]
LOWER_ORDER_FINAL_BELOW = 10
"""``lower_order_final`` lowers the order of the last steps of grids with fewer steps than this
(DPM-Solver's rule: on a few long steps the extrapolation from old points is unstable)."""
MAX_STEP_GROWTH = 2.0
"""With ``lower_order_final``, a step longer in ℓ than this times the previous one is first
order (see ``_lower_orders``)."""
_SERIES_BELOW = 1.0
_SERIES_TERMS = 12


# φ functions --------------------------------------------------------------------------------


def _phi(z: Array, k: int) -> Array:
    """φ_k(z) = Σ_j z^j/(j+k)! (k ≥ 1): the series where |z| < 1, else the recursion
    φ_k = (φ_{k−1} − 1/(k−1)!)/z from φ_1 = expm1(z)/z (which cancels for small z)."""
    small = jnp.abs(z) < _SERIES_BELOW
    series = sum(z**j / float(math.factorial(j + k)) for j in range(_SERIES_TERMS))
    zs = jnp.where(small, 1.0, z)
    value = jnp.expm1(zs) / zs
    for m in range(2, k + 1):
        value = (value - 1 / math.factorial(m - 1)) / zs
    return jnp.where(small, series, value)


def _weights(h: Array, k: int, rate: float = 1.0) -> Array:
    """W_k = rate ∫₀ʰ e^{−rate (h−τ)} τ^{k−1}/(k−1)! dτ = rate h^k φ_k(−rate h): the weight of
    the (k−1)-th ℓ-derivative of x̂₀ in a data-prediction step of length h (rate 1: the ODE;
    rate 2: the reverse SDE)."""
    return rate * h**k * _phi(-rate * h, k)


# schedule at the nodes --------------------------------------------------------------------------


class _Nodes(eqx.Module):
    """α, σ, ℓ and the offset c at a set of times."""

    t: Array
    alpha: Array
    sigma: Array
    ell: Array
    c: Array


def _nodes(sde, ts: Array, dim: int) -> _Nodes:
    alpha, sigma = jax.vmap(lambda t: alpha_sigma(sde, t))(ts)
    ell = jax.vmap(lambda t: log_snr(sde, t))(ts)
    c = jax.vmap(lambda t: offset(sde, t, dim))(ts)
    return _Nodes(ts, alpha, sigma, ell, c)


def _lower_orders(history: int, ell: Array, lower_order_final: bool) -> Int[Array, " steps"]:
    """The order of each step between the log-SNR nodes ``ell``: min(history, i + 1) (warm-up:
    the first steps lack old points), and, with ``lower_order_final``,

    - on fewer than LOWER_ORDER_FINAL_BELOW steps, at most steps − i (the last step first
      order, the one before second order: the papers' rule);
    - first order on a step more than MAX_STEP_GROWTH times as long (in ℓ) as the one before:
      extrapolating from old points across a much longer step is unstable. Only grids spaced
      unevenly in ℓ have such steps (the last step of a uniform-in-t grid on VP is 3–5× the
      one before it, at 6 to 64 steps; log-SNR, Karras and quadratic grids grow by ≤ 1.8×):
      on (a) d = 2 with 12 uniform steps, 3M's sliced W2² went from 44× the floor to 1.2×
      (bench/sampling_limit.py's problem a2, n = 3000)."""
    h = jnp.diff(ell)
    steps = h.shape[0]
    i = jnp.arange(steps)
    order = jnp.minimum(history, i + 1)
    if lower_order_final:
        if steps < LOWER_ORDER_FINAL_BELOW:
            order = jnp.minimum(order, steps - i)
        growth = h / jnp.concatenate([h[:1], h[:-1]])
        order = jnp.where(growth > MAX_STEP_GROWTH, 1, order)
    return order


def _trajectory(x_T, states, ts, save_ts):
    if save_ts is None:
        return None
    return interpolate_grid(jnp.concatenate([x_T[None], states]), ts, save_ts)


def _check_order(name: str, value: int) -> None:
    if value not in (1, 2, 3):
        raise SpecFieldError(name, f"must be 1, 2 or 3, got {value!r}")


# DPM-Solver (singlestep, noise prediction) ----------------------------------------------------

_SINGLESTEP_FRACTIONS = {1: (), 2: (1 / 2,), 3: (1 / 3, 2 / 3)}
"""The log-SNR fractions r of the intermediate points of DPM-Solver-k (Lu et al. 2022,
Algorithms 1 and 2: r₁ = 1/2 for k = 2; r₁ = 1/3, r₂ = 2/3 for k = 3)."""


class DPMSolver(AbstractKernelSampler):
    """Singlestep DPM-Solver-k (Lu et al. 2022), noise prediction ε̂ = −σ_t s, k = ``stages``.

    One step from t to s, h = ℓ_s − ℓ_t, ε₀ = ε̂(y_t, t), and the DDIM step
    Φ(u) = (α_u/α_t) y_t − σ_u (e^{ℓ_u−ℓ_t} − 1) ε₀ to any u:

    - k = 1 (DDIM): y_s = Φ(s).
    - k = 2 (Algorithm 1, r₁ = 1/2): u₁ = Φ(s₁) at ℓ_{s₁} = ℓ_t + r₁h,
      y_s = Φ(s) − σ_s/(2r₁) (e^h − 1) (ε̂(u₁, s₁) − ε₀).
    - k = 3 (Algorithm 2, r₁ = 1/3, r₂ = 2/3): D₁ = ε̂(Φ(s₁), s₁) − ε₀,
      u₂ = Φ(s₂) − σ_{s₂} (r₂/r₁) ((e^{r₂h} − 1)/(r₂h) − 1) D₁, D₂ = ε̂(u₂, s₂) − ε₀,
      y_s = Φ(s) − σ_s/r₂ ((e^h − 1)/h − 1) D₂.

    The intermediate times are ℓ's inverse (bisection) at ℓ_t + r h, found for the whole grid
    before the scan. Order k; NFE = stages × steps. Exact for any steps when ε̂ is constant along
    the path (one-point data).
    """

    tag: ClassVar[str] = "dpm_solver"
    steps: StepCount = eqx.field(static=True, default=30)
    stages: Order = eqx.field(static=True, default=2)
    grid: AbstractTimeGrid = LogSNRGrid()
    eps: Positive = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        _check_order("stages", self.stages)

    @property
    def order(self) -> float:
        """k = ``stages``."""
        return float(self.stages)

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None) -> Samples:
        del key  # deterministic
        self.check_sde(sde)
        batched = batched_score(score, condition)
        dim = x_T.shape[-1]
        ts = self.times(sde)
        grid = _nodes(sde, ts, dim)
        fractions = _SINGLESTEP_FRACTIONS[self.stages]
        h = grid.ell[1:] - grid.ell[:-1]
        inner = [_nodes(sde, time_at_log_snr(sde, grid.ell[:-1] + r * h), dim) for r in fractions]
        here = jax.tree.map(lambda a: a[:-1], grid)
        there = jax.tree.map(lambda a: a[1:], grid)

        def noise(y, node):
            return node.sigma * batched(y + node.c, node.t) * -1.0

        def step(x, nodes):
            t, s, *mid = nodes
            y = x - t.c
            eps0 = noise(y, t)

            def ddim(u):
                return (u.alpha / t.alpha) * y - u.sigma * jnp.expm1(u.ell - t.ell) * eps0

            h = s.ell - t.ell
            y_s = ddim(s)
            if self.stages == 2:
                (r1,) = fractions
                d1 = noise(ddim(mid[0]), mid[0]) - eps0
                y_s = y_s - s.sigma / (2 * r1) * jnp.expm1(h) * d1
            elif self.stages == 3:
                r1, r2 = fractions
                d1 = noise(ddim(mid[0]), mid[0]) - eps0
                h2 = mid[1].ell - t.ell
                u2 = ddim(mid[1]) - mid[1].sigma * (r2 / r1) * h2 * _phi(h2, 2) * d1
                d2 = noise(u2, mid[1]) - eps0
                y_s = y_s - s.sigma / r2 * h * _phi(h, 2) * d2
            x = y_s + s.c
            return x, x if save_ts is not None else None

        x, states = jax.lax.scan(step, x_T, (here, there, *inner))
        trajectory = _trajectory(x_T, states, ts, save_ts)
        return Samples(x, as_nfe(self.stages * self.steps), trajectory)


# multistep data-prediction core ---------------------------------------------------------------


def _past_ells(ell: Array) -> tuple[Array, Array, Array]:
    """ℓ at the current node and the two before it, for each step (before the first nodes the
    grid is continued by its first step, so that every difference below is finite; those values
    are never selected)."""
    first = ell[1] - ell[0]
    padded = jnp.concatenate([ell[:1] - 2 * first, ell[:1] - first, ell])
    steps = ell.shape[0] - 1
    return padded[2 : 2 + steps], padded[1 : 1 + steps], padded[:steps]


def _taylor_combination(h1, h2, w1, w2, w3=None) -> Array:
    """Coefficients (steps, 3) on (x̂₀ at the node, one back, two back) of
    W₁ x̂₀ + W₂ x̂₀' + W₃ x̂₀'', the derivatives in ℓ from the polynomial through the last two
    points (``w3`` None: x̂₀' = d₀) or three (x̂₀' = d₀ + h₁ d₂, x̂₀'' = 2 d₂), with the divided
    differences d₀ = (m₀ − m₁)/h₁, d₁ = (m₁ − m₂)/h₂, d₂ = (d₀ − d₁)/(h₁ + h₂)."""
    zero = 0 * h1
    d0 = jnp.stack([1 / h1, -1 / h1, zero], -1)
    coef = jnp.stack([w1, zero, zero], -1)
    if w3 is None:
        return coef + w2[:, None] * d0
    d1 = jnp.stack([zero, 1 / h2, -1 / h2], -1)
    d2 = (d0 - d1) / (h1 + h2)[:, None]
    return coef + w2[:, None] * (d0 + h1[:, None] * d2) + 2 * w3[:, None] * d2


class DPMSolverPP(AbstractKernelSampler):
    """Multistep DPM-Solver++ (Lu et al. 2023), data prediction x̂₀ = (y + σ_t² s)/α_t.

    One evaluation per step, at the current node t; h = ℓ_s − ℓ_t, h₁, h₂ the two previous
    steps, m₀, m₁, m₂ the data predictions at t and the two nodes before, W_k = h^k φ_k(−h):

    - order 1 (DDIM): y_s = (σ_s/σ_t) y_t + α_s W₁ m₀, W₁ = 1 − e^{−h}.
    - order 2 (2M, Algorithm 2): D = (1 + 1/(2r)) m₀ − 1/(2r) m₁, r = h₁/h;
      y_s = (σ_s/σ_t) y_t + α_s W₁ D.
    - order 3 (3M): y_s = (σ_s/σ_t) y_t + α_s (W₁ m₀ + W₂ x̂₀' + W₃ x̂₀''), the derivatives in ℓ
      of the quadratic through (ℓ, m) at the three nodes.

    ``history`` is the order; the first steps use the order their past allows (warm-up), and
    with ``lower_order_final`` grids of fewer than 10 steps end with order ≤ steps − i
    (the paper's stabilisation for few steps). NFE = steps.

    ``noise: true`` is the SDE variant (DPM-Solver++ SDE; k-diffusion's dpmpp_2m_sde/3m_sde): the
    reverse SDE's exact integration with weights e^{−2(ℓ_s−ℓ)}, W_k = 2h^k φ_k(−2h),
    y_s = (σ_s/σ_t) e^{−h} y_t + α_s (W₁ m₀ + W₂ x̂₀' + W₃ x̂₀'') + σ_s √(1 − e^{−2h}) z (order 1
    is the DDPM ancestral step); its weak order is 1 (a multistep extrapolation of x̂₀ along a
    Brownian path gains no weak order, as measured in tests/test_dpm_solvers.py).
    """

    tag: ClassVar[str] = "dpm_solver_pp"
    steps: StepCount = eqx.field(static=True, default=25)
    history: Order = eqx.field(static=True, default=2)
    lower_order_final: bool = eqx.field(static=True, default=True)
    noise: bool = eqx.field(static=True, default=False)
    grid: AbstractTimeGrid = LogSNRGrid()
    eps: Positive = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        _check_order("history", self.history)

    @property
    def order(self) -> float:
        """``history`` for the ODE; weak order 1 for the SDE variant."""
        return 1.0 if self.noise else float(self.history)

    def coefficients(self, ell: Float[Array, " steps_plus_one"]):
        """(a, b, std) per step: y_s = a y_t + α_s (b · (m₀, m₁, m₂)) + σ_s std z."""
        ell0, ell1, ell2 = _past_ells(ell)
        h, h1, h2 = ell[1:] - ell0, ell0 - ell1, ell1 - ell2
        rate = 2.0 if self.noise else 1.0
        w = [_weights(h, k, rate) for k in (1, 2, 3)]
        zero = 0 * h
        first = jnp.stack([w[0], zero, zero], -1)
        if self.noise:  # Taylor form throughout
            second = _taylor_combination(h1, h2, w[0], w[1])
        else:  # the paper's 2M: W₁ ((1 + 1/(2r)) m₀ − 1/(2r) m₁)
            half = h / (2 * h1)
            second = w[0][:, None] * jnp.stack([1 + half, -half, zero], -1)
        third = _taylor_combination(h1, h2, *w)
        order = _lower_orders(self.history, ell, self.lower_order_final)
        b = jnp.select([order[:, None] == 1, order[:, None] == 2], [first, second], default=third)
        a = jnp.exp(-h * rate)  # σ_s/σ_t = e^{−h} α_s/α_t; the α ratio is applied in the step
        std = jnp.sqrt(-jnp.expm1(-2 * h)) if self.noise else zero
        return a, b, std

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None) -> Samples:
        self.check_sde(sde)
        batched = batched_score(score, condition)
        ts = self.times(sde)
        grid = _nodes(sde, ts, x_T.shape[-1])
        a, b, std = self.coefficients(grid.ell)
        here = jax.tree.map(lambda v: v[:-1], grid)
        there = jax.tree.map(lambda v: v[1:], grid)
        keys = jr.split(key, self.steps)

        def step(carry, inputs):
            x, m1, m2 = carry
            t, s, a, b, std, key = inputs
            y = x - t.c
            m0 = (y + t.sigma**2 * batched(x, t.t)) / t.alpha
            combined = b[0] * m0 + b[1] * m1 + b[2] * m2
            y_s = a * (s.alpha / t.alpha) * y + s.alpha * combined
            if self.noise:
                y_s = y_s + s.sigma * std * jr.normal(key, x.shape)
            x = y_s + s.c
            return (x, m0, m1), x if save_ts is not None else None

        zeros = jnp.zeros_like(x_T)
        (x, _, _), states = jax.lax.scan(step, (x_T, zeros, zeros), (here, there, a, b, std, keys))
        trajectory = _trajectory(x_T, states, ts, save_ts)
        return Samples(x, as_nfe(self.steps), trajectory)


# UniPC ----------------------------------------------------------------------------------------


def _unified_weights(r: Array, g: Array, size: int) -> Array:
    """ρ solving Σ_m ρ_m r_m^{n−1} = g_n, n = 1…size (per step; r: (steps, size)), or the
    paper's ρ = 1/2 for a single difference (the h → 0 limit of g₁)."""
    if size == 0:
        return jnp.zeros((r.shape[0], 0))
    if size == 1:
        return jnp.full((r.shape[0], 1), 0.5)
    vander = jnp.stack([r**n for n in range(size)], axis=-2)  # (steps, n, m)
    return jnp.linalg.solve(vander, g[:, :size, None])[..., 0]


class UniPC(AbstractKernelSampler):
    """UniPC-p (Zhao et al. 2023): the multistep predictor UniP-p and the corrector UniC-p, data
    prediction x̂₀, p = ``history``, B(h) = h (``bh1``) or e^h − 1 (``bh2``, written 1 − e^{−h}
    in data-prediction form).

    On a step from t to s (h = ℓ_s − ℓ_t), with m₀ the data prediction at t, m_k the one k nodes
    before (ℓ_k, r_k = (ℓ_k − ℓ_t)/h < 0), and D_k = (m_k − m₀)/r_k:

        UniP-p: ỹ_s = (σ_s/σ_t) y_t + α_s (1 − e^{−h}) m₀ + α_s B(h) Σ_{k<p} ρ_k D_k
        UniC-p: y_s = (σ_s/σ_t) y_t + α_s (1 − e^{−h}) m₀ + α_s B(h) Σ_{k≤p} ρᶜ_k D_k,

    where the corrector's last difference is the new evaluation, D_p = x̂₀(ỹ_s, s) − m₀ (r_p = 1),
    which is also the next step's m₀ (so the corrector costs no evaluation). ρ solves the order
    conditions Σ_k ρ_k r_k^{n−1} = n! h φ_{n+1}(−h)/B(h), n = 1 … (number of differences), and
    a single difference uses ρ = 1/2 (its h → 0 limit; the choice of B(h) only matters there).
    UniP-p has order p and UniC-p raises it to p + 1 (the paper's Theorems 3.1, 3.3). The last
    step is not corrected: NFE = steps. Warm-up and ``lower_order_final`` as in
    :class:`DPMSolverPP`.
    """

    tag: ClassVar[str] = "unipc"
    steps: StepCount = eqx.field(static=True, default=20)
    history: Order = eqx.field(static=True, default=2)
    variant: Literal["bh1", "bh2"] = eqx.field(static=True, default="bh2")
    lower_order_final: bool = eqx.field(static=True, default=True)
    grid: AbstractTimeGrid = LogSNRGrid()
    eps: Positive = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        _check_order("history", self.history)
        if self.variant not in ("bh1", "bh2"):
            raise SpecFieldError("variant", f"must be bh1 or bh2, got {self.variant!r}")

    @property
    def order(self) -> float:
        """history + 1 (UniC raises UniP-p's order p by one)."""
        return float(self.history + 1)

    def coefficients(self, ell: Float[Array, " steps_plus_one"]):
        """(a, predictor, corrector) per step: ỹ_s = a y_t + α_s (predictor · (m₀, m₁, m₂)),
        y_s = a y_t + α_s (corrector · (m₀, m₁, m₂, x̂₀(ỹ_s, s)))."""
        ell0, ell1, ell2 = _past_ells(ell)
        h = ell[1:] - ell0
        r = jnp.stack([(ell1 - ell0) / h, (ell2 - ell0) / h, jnp.ones_like(h)], -1)
        bh = h if self.variant == "bh1" else -jnp.expm1(-h)
        g = jnp.stack([math.factorial(n) * _weights(h, n + 1) / h**n / bh for n in (1, 2, 3)], -1)
        w1 = _weights(h, 1)
        order = _lower_orders(self.history, ell, self.lower_order_final)

        def combination(columns: list[int]):
            """Coefficients on (m₀, m₁, m₂, m_new) of W₁ m₀ + B Σ ρ_k (m_k − m₀)/r_k over the
            differences ``columns`` (indices into (m₁, m₂, m_new))."""
            rho = _unified_weights(r[:, columns], g, len(columns))
            coef = jnp.zeros((h.shape[0], 4)).at[:, 0].set(w1)
            for j, col in enumerate(columns):
                weight = bh * rho[:, j] / r[:, col]
                coef = coef.at[:, 1 + col].add(weight).at[:, 0].add(-weight)
            return coef

        predictors = [combination(list(range(p - 1))) for p in (1, 2, 3)]
        correctors = [combination([*range(p - 1), 2]) for p in (1, 2, 3)]
        pick = [order[:, None] == 1, order[:, None] == 2]
        predictor = jnp.select(pick, predictors[:2], default=predictors[2])[:, :3]
        corrector = jnp.select(pick, correctors[:2], default=correctors[2])
        return jnp.exp(-h), predictor, corrector

    def sample_from(self, sde, score, x_T, *, key, save_ts=None, condition=None) -> Samples:
        del key  # deterministic
        self.check_sde(sde)
        batched = batched_score(score, condition)
        ts = self.times(sde)
        grid = _nodes(sde, ts, x_T.shape[-1])
        a, predictor, corrector = self.coefficients(grid.ell)

        def data(x, node):
            return (x - node.c + node.sigma**2 * batched(x, node.t)) / node.alpha

        def predict(x, t, s, a, p, m0, m1, m2):
            y = a * (s.alpha / t.alpha) * (x - t.c)
            return y, y + s.alpha * (p[0] * m0 + p[1] * m1 + p[2] * m2)

        def step(carry, inputs):
            x, m0, m1, m2 = carry
            t, s, a, p, q = inputs
            y, y_pred = predict(x, t, s, a, p, m0, m1, m2)
            m_new = data(y_pred + s.c, s)
            y_s = y + s.alpha * (q[0] * m0 + q[1] * m1 + q[2] * m2 + q[3] * m_new)
            x = y_s + s.c
            return (x, m_new, m0, m1), x if save_ts is not None else None

        first = jax.tree.map(lambda v: v[0], grid)
        m0 = data(x_T, first)
        zeros = jnp.zeros_like(x_T)
        corrected = (
            jax.tree.map(lambda v: v[:-2], grid),
            jax.tree.map(lambda v: v[1:-1], grid),
            a[:-1],
            predictor[:-1],
            corrector[:-1],
        )
        (x, m0, m1, m2), states = jax.lax.scan(step, (x_T, m0, zeros, zeros), corrected)
        t, s = (jax.tree.map(lambda v, i=i: v[i], grid) for i in (-2, -1))
        _, y_s = predict(x, t, s, a[-1], predictor[-1], m0, m1, m2)
        x = y_s + s.c
        trajectory = None
        if save_ts is not None:
            states = jnp.concatenate([states, x[None]])
            trajectory = _trajectory(x_T, states, ts, save_ts)
        return Samples(x, as_nfe(self.steps), trajectory)


SAMPLERS = (DPMSolver, DPMSolverPP, UniPC)
"""The DPM-Solver family and UniPC (registered by ``diffsde._builtin``)."""
