"""Log-likelihood of data through the probability-flow ODE (docs/math.md §5).

Along a solution of the PF-ODE dx/dt = h(x, t) = b(t, x) − ½ g(t)² s(x, t) the density of the
flow's law changes by the instantaneous change of variables d log p_t(x_t)/dt = −∇·h(x_t, t), so

    log p_ε(x_ε) = log p_T(x_T) + ∫_ε^T ∇·h(x_t, t) dt.

diffrax integrates the pair (x, Δ) with dΔ/dt = ∇·h forwards from t = ε (x_ε the data point,
Δ = 0) to t = T, then log p_ε(x_ε) = log p_T(x_T) + Δ_T, with p_T ≈ the prior. The divergence is
computed from JVPs of h on probe vectors v as vᵀ(∂h/∂x)v:

- ``exact``: the d basis vectors, ∇·h = Σ_i e_iᵀ(∂h/∂x)e_i (forward-mode Jacobian trace);
- ``hutchinson`` (Hutchinson–Skilling): K Rademacher vectors v_k, drawn once per point and held
  fixed over the solve. The K integrals Δ_T^(k) are carried in one state (one x trajectory, K
  JVPs per evaluation), so the K estimates log p_T(x_T) + Δ_T^(k) are unbiased and independent
  given x; their mean is the estimate and std/√K its standard error;
- ``auto``: exact for d ≤ 64, Hutchinson above.

Conditions: ``condition`` (one per row) gives log p_ε(x | c) of the flow of the score bound to
each row's condition (an unconditional score ignores it).

What is computed is log p_ε of the model's flow at the data point (the usual ε cut-off, as the
samplers stop at ε), with p_T replaced by the prior given: any mismatch between the prior and the
true p_T of the data is part of the result.
"""

import math
from collections.abc import Callable, Mapping
from typing import Annotated, ClassVar, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pydantic
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._custom_types import Conditions, Scalar, ScoreFn, Vector
from ._data import AbstractDataset
from ._errors import SpecFieldError
from ._metrics import AbstractMetric, Direction, EvalContext
from ._model import bind_condition
from ._prior import AbstractPrior
from ._sampler import ODE_SOLVERS, AbstractODESolver, Tsit5
from ._sde._base import AbstractSDE

Divergence = Literal["exact", "hutchinson", "auto"]
Positive = Annotated[float, pydantic.Field(gt=0)]
LogPrior = Callable[[Vector], Scalar]

EXACT_MAX_DIM = 64
"""``divergence="auto"`` computes the divergence exactly up to this dimension (d JVPs per
evaluation), by Hutchinson's estimator above it."""

FIRST_STEP = 1e-2
"""The first step tried, as a fraction of T − ε (the PID controller adapts it from there)."""


def resolve_divergence(divergence: Divergence, dim: int) -> Literal["exact", "hutchinson"]:
    """``exact`` or ``hutchinson``: ``auto`` is exact for ``dim`` ≤ :data:`EXACT_MAX_DIM`."""
    if divergence == "auto":
        return "exact" if dim <= EXACT_MAX_DIM else "hutchinson"
    return divergence


class LogLikelihood(eqx.Module):
    """Per-point log-densities log p_ε(x) in nats, their Hutchinson standard errors (zeros when
    the divergence is exact) and the NFE of one solve.

    ``nfe``: evaluations of the augmented field (x, Δ) per solve, the largest over points; each
    is one score evaluation plus d JVPs (exact) or K JVPs (Hutchinson with K probes).
    """

    log_prob: Float[Array, " n"]
    stderr: Float[Array, " n"]
    nfe: Int[Array, ""]


class ProbabilityFlowLikelihood(eqx.Module):
    """The likelihood solve through the probability-flow ODE, with its settings.

    An adaptive diffrax ``solver`` (one with an error estimate: tsit5, dopri5, heun) with a
    ``PIDController(rtol, atol)`` on the state (x, Δ),
    from t = ``eps`` to T, first step (T − ε)·:data:`FIRST_STEP`, at most ``max_steps`` steps
    (more is an error); ``divergence`` and ``probes`` (K, Hutchinson only, at least 2 so the
    standard error exists). A part (kind ``likelihood_estimator``) of the ``log_likelihood``
    metric; its defaults are the metric's and ``diffsde eval --likelihood``'s.

    NFE per solve: 1 + 6 × (accepted + rejected steps) for tsit5/dopri5, as for the PF-ODE
    sampler. The solve uses ``diffrax.ForwardMode`` (a plain while loop, half the compile time
    of the checkpointed one): the result can be differentiated in forward mode only.
    """

    kind: ClassVar[str] = "likelihood_estimator"
    tag: ClassVar[str] = "probability_flow"
    rtol: Positive = eqx.field(static=True, default=1e-5)
    atol: Positive = eqx.field(static=True, default=1e-5)
    eps: Positive = eqx.field(static=True, default=1e-3)
    divergence: Divergence = eqx.field(static=True, default="auto")
    probes: Annotated[int, pydantic.Field(ge=2)] = eqx.field(static=True, default=16)
    solver: AbstractODESolver = Tsit5()
    max_steps: Annotated[int, pydantic.Field(gt=0)] = eqx.field(static=True, default=4096)

    def __check_init__(self):
        if not self.solver.error_estimate:
            adaptive = ", ".join(c.tag for c in ODE_SOLVERS if c.error_estimate)
            raise SpecFieldError(
                "solver",
                f"'{self.solver.tag}' has no error estimate, and the divergence integral needs "
                f"error control: choose one of {adaptive}",
            )
        if self.divergence not in ("exact", "hutchinson", "auto"):
            raise SpecFieldError(
                "divergence",
                f"must be 'exact', 'hutchinson' or 'auto', got {self.divergence!r}",
            )
        for name in ("rtol", "atol", "eps"):
            if not getattr(self, name) > 0:
                raise SpecFieldError(name, f"must be positive, got {getattr(self, name)}")
        if self.probes < 2:
            raise SpecFieldError(
                "probes",
                f"must be at least 2 (Hutchinson's standard error needs two estimates), "
                f"got {self.probes}",
            )
        if self.max_steps < 1:
            raise SpecFieldError("max_steps", f"must be positive, got {self.max_steps}")

    def check(self, sde: AbstractSDE) -> None:
        """ValueError unless ε < T."""
        if not self.eps < sde.T:
            raise ValueError(
                f"eps={self.eps} must lie below the horizon T={sde.T} of {type(sde).__name__}; "
                "choose a smaller eps (1e-3 for VP, 1e-5 for VE are usual)"
            )

    def solve(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        x: Float[Array, "n dim"],
        *,
        log_prior: LogPrior,
        key: PRNGKeyArray,
        condition: Conditions = None,
    ) -> LogLikelihood:
        """log p_ε at each row of ``x``: one solve per row (``jax.vmap``-ed, each row with its
        own step sizes), p_T replaced by ``log_prior``; given ``condition`` (one per row), log
        p_ε(x | c) of the score bound to each row's condition."""
        self.check(sde)
        n, dim = x.shape
        method = resolve_divergence(self.divergence, dim)
        if method == "exact":
            del key
            probes, probe_axis = jnp.eye(dim, dtype=x.dtype), None  # the same d probes everywhere
        else:
            probes, probe_axis = jr.rademacher(key, (n, self.probes, dim), dtype=x.dtype), 0
        spec = self.solver

        def one(x0, v, c):
            # v: this point's probes, closed over, so they stay fixed along its solve
            field = sde.probability_flow(bind_condition(score, c))

            def vector_field(t, y, args):
                del args
                h, jvp = jax.linearize(lambda z: field(t, z), y[0])
                quadratic = jnp.sum(v * jax.vmap(jvp)(v), axis=-1)  # vᵀ(∂h/∂x)v per probe
                return h, jnp.sum(quadratic) if method == "exact" else quadratic

            delta0 = jnp.zeros(() if method == "exact" else (self.probes,), x0.dtype)
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(vector_field),
                spec.solver(),
                t0=self.eps,
                t1=sde.T,
                dt0=FIRST_STEP * (sde.T - self.eps),
                y0=(x0, delta0),
                stepsize_controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol),
                max_steps=self.max_steps,
                adjoint=diffrax.ForwardMode(),
            )
            x_T, delta = sol.ys[0][-1], sol.ys[1][-1]
            estimates = log_prior(x_T) + delta
            if method == "exact":
                return estimates, jnp.zeros_like(estimates), sol.stats["num_steps"]
            stderr = jnp.std(estimates, ddof=1) / math.sqrt(self.probes)
            return jnp.mean(estimates), stderr, sol.stats["num_steps"]

        condition_axis = None if condition is None else 0
        log_prob, stderr, steps = jax.vmap(one, in_axes=(0, probe_axis, condition_axis))(
            x, probes, condition
        )
        nfe = spec.init + spec.per_step * jnp.max(steps)
        return LogLikelihood(log_prob, stderr, jnp.asarray(nfe, jnp.int32))


@eqx.filter_jit
def _solve_chunk(estimator, sde, score, log_prior, x, key, condition):
    return estimator.solve(sde, score, x, log_prior=log_prior, key=key, condition=condition)


def log_likelihood(
    estimator: ProbabilityFlowLikelihood,
    sde: AbstractSDE,
    score: ScoreFn,
    x: Float[Array, "n dim"],
    *,
    key: PRNGKeyArray,
    log_prior: LogPrior | None = None,
    batch_size: int = 256,
    condition: Conditions = None,
) -> LogLikelihood:
    """log p_ε(x) of each row of ``x`` under the model's probability flow, in batches of
    ``batch_size`` rows (one jitted function, compiled once; the last batch is padded by repeating
    its rows), batch i with key ``fold_in(key, i)``.

    ``log_prior``: log-density of p_T for one point; default the SDE's prior
    (``sde.prior().log_prob``). ``nfe`` is the largest over batches. ``condition``: one per
    row of ``x`` (log p_ε(x | c)), or None.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("x is empty: give at least one point")
    estimator.check(sde)
    if log_prior is None:
        log_prior = sde.prior().log_prob
    size = min(batch_size, n)
    outputs = []
    for i, start in enumerate(range(0, n, size)):
        chunk = x[start : start + size]
        rows = chunk.shape[0]
        chunk_condition = jax.tree.map(lambda c: jnp.asarray(c)[start : start + size], condition)
        if rows < size:
            chunk = chunk[np.arange(size) % rows]
            chunk_condition = jax.tree.map(lambda c: c[np.arange(size) % rows], chunk_condition)
        out = _solve_chunk(
            estimator, sde, score, log_prior, chunk, jr.fold_in(key, i), chunk_condition
        )
        outputs.append((out, rows))
    return LogLikelihood(
        jnp.concatenate([out.log_prob[:rows] for out, rows in outputs]),
        jnp.concatenate([out.stderr[:rows] for out, rows in outputs]),
        jnp.max(jnp.stack([out.nfe for out, _ in outputs])),
    )


# summaries ------------------------------------------------------------------------------------


def nats_per_dim(log_prob: Float[Array, " n"], dim: int) -> float:
    """−mean(log p) / d: the negative log-likelihood in nats per dimension."""
    return float(-jnp.mean(log_prob) / dim)


def bits_per_dim(log_prob: Float[Array, " n"], dim: int, step: float) -> float:
    """Bits per dimension of lattice data from log-densities at dequantised points:

        bits/dim = (−mean(log p(y)) − d·log Δ) / (d·ln 2).

    The data are quantised on a lattice x = b + Δk, k ∈ Z^d (the digits: pixels 0..16 mapped to
    [−1, 1] with Δ = 1/8). The model's continuous density p gives the discrete model
    P(k) = ∫_{C_k} p(y) dy over the cell C_k = x + Δ[−½, ½)^d (volume Δ^d; the cells are
    disjoint, so Σ_k P(k) ≤ 1), and by Jensen's inequality with y = x + Δ(u − ½), u ~ U[0, 1)^d,

        log P(k) = log E_u[Δ^d p(y)] ≥ E_u[log p(y)] + d·log Δ,

    so −log₂ P(k)/d ≤ (−E_u[log p(y)] − d·log Δ)/(d ln 2): the value returned, with E_u
    estimated by one draw per point (:func:`dequantise`), is an upper bound on the bits per
    dimension of the discrete data, counted in lattice units (8 bits/dim for pixels with 256
    levels, log₂ 17 ≈ 4.09 for 17 uniform levels). The −d·log Δ term is the change of variables
    from lattice units (cells of volume 1) to the data's scale (cells of volume Δ^d).
    The bound is tight when p is nearly constant on each cell; a model trained on the lattice
    points themselves, whose p_ε (σ_ε ≪ Δ) may concentrate near them, pays for that here.
    """
    if not step > 0:
        raise ValueError(f"the quantisation step must be positive, got {step}")
    return float((-jnp.mean(log_prob) - dim * math.log(step)) / (dim * math.log(2)))


def dequantise(
    x: Float[Array, "n dim"], step: float, *, key: PRNGKeyArray
) -> Float[Array, "n dim"]:
    """Uniform dequantisation y = x + Δ(u − ½), u ~ U[0, 1)^d: a uniform draw from the lattice
    cell centred on each point (the model was trained on the lattice points themselves)."""
    return x + step * (jr.uniform(key, x.shape, x.dtype) - 0.5)


def quantisation_step(values: Float[Array, "..."], max_levels: int = 65536) -> float | None:
    """Δ if every entry of ``values`` lies on one lattice b + Δk (the smallest gap between
    distinct values, at most ``max_levels`` levels, within 1e-3 Δ), else None."""
    levels = np.unique(np.asarray(values, np.float64))
    if levels.size < 2 or levels.size > max_levels:
        return None
    step = float(np.min(np.diff(levels)))
    position = (levels - levels[0]) / step
    if np.max(np.abs(position - np.round(position))) > 1e-3:
        return None
    return step


# the metric ----------------------------------------------------------------------------------


class LikelihoodMetric(AbstractMetric):
    """``nll``: −mean log p_ε / d in nats per dimension of ``n`` held-out points through the
    model's probability flow (``estimator``), p_T replaced by the context's prior (default the
    SDE's). Image data quantised on a lattice (the step ``quantisation``, or found from the
    held-out data when None) are dequantised first (:func:`dequantise`), and ``bpd`` (bits per
    dimension, :func:`bits_per_dim`) is reported too; ``nll_se`` (nats per dimension) is
    Hutchinson's standard error of ``nll`` when the divergence is estimated.
    Nothing (``{}``) without a score.
    """

    tag: ClassVar[str] = "log_likelihood"
    # nll_se (the standard error of nll) has no better side.
    directions: ClassVar[Mapping[str, Direction]] = {"nll": "min", "bpd": "min"}

    estimator: ProbabilityFlowLikelihood = ProbabilityFlowLikelihood()
    n: Annotated[int, pydantic.Field(gt=0)] = eqx.field(static=True, default=256)
    quantisation: Positive | None = eqx.field(static=True, default=None)
    batch_size: Annotated[int, pydantic.Field(gt=0)] = eqx.field(static=True, default=256)

    @classmethod
    def spec_aliases(cls, data: dict) -> dict:
        """The estimator's settings may be written flat, as in diffsde 0.1 (``{type:
        log_likelihood, rtol: 1e-4}``), and update a given ``estimator``."""
        names = ("rtol", "atol", "eps", "divergence", "probes", "solver", "max_steps")
        flat = {k: data.pop(k) for k in names if k in data}
        if flat:
            estimator = data.get("estimator") or {}
            estimator = {"type": estimator} if isinstance(estimator, str) else dict(estimator)
            data["estimator"] = {**estimator, **flat}
        return data

    def __check_init__(self):
        if self.n < 1 or self.batch_size < 1:
            raise ValueError(
                f"n and batch_size must be positive, got n={self.n}, batch_size={self.batch_size}"
            )
        if self.quantisation is not None and not self.quantisation > 0:
            raise ValueError(f"quantisation must be positive (or None), got {self.quantisation}")

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        if ctx.score is None:
            return {}
        prior = ctx.prior if ctx.prior is not None else ctx.sde.prior()
        values, _ = self.evaluate(
            ctx.dataset,
            ctx.sde,
            prior,
            ctx.score,
            ctx.reference,
            key=ctx.key,
            condition=ctx.reference_conditions,
        )
        return values

    def lattice_step(
        self, dataset: AbstractDataset, reference: Float[Array, "m dim"]
    ) -> float | None:
        """The quantisation step used: ``quantisation``, else the lattice of ``reference`` for
        image data, else None (no dequantisation, no ``bpd``)."""
        if self.quantisation is not None:
            return self.quantisation
        if dataset.image_shape is None:
            return None
        return quantisation_step(reference)

    def evaluate(
        self,
        dataset: AbstractDataset,
        sde: AbstractSDE,
        prior: AbstractPrior,
        score: ScoreFn,
        reference: Float[Array, "m dim"],
        *,
        key: PRNGKeyArray,
        condition: Conditions = None,
    ) -> tuple[dict[str, float], LogLikelihood]:
        """The metric's values and the per-point result on ``n`` rows of ``reference`` (given
        their ``condition``, one per row, if not None)."""
        pick_key, dequantise_key, probe_key = jr.split(key, 3)
        m = reference.shape[0]
        pick = jr.choice(pick_key, m, (self.n,), replace=False) if m > self.n else slice(None)
        x = reference[pick]
        condition = jax.tree.map(lambda c: jnp.asarray(c)[pick], condition)
        dim = x.shape[1]
        step = self.lattice_step(dataset, reference)
        if step is not None:
            x = dequantise(x, step, key=dequantise_key)
        result = log_likelihood(
            self.estimator,
            sde,
            score,
            x,
            key=probe_key,
            log_prior=prior.log_prob,
            batch_size=self.batch_size,
            condition=condition,
        )
        values = {"nll": nats_per_dim(result.log_prob, dim)}
        if step is not None:
            values["bpd"] = bits_per_dim(result.log_prob, dim, step)
        if resolve_divergence(self.estimator.divergence, dim) == "hutchinson":
            stderr = jnp.sqrt(jnp.sum(result.stderr**2)) / (x.shape[0] * dim)
            values["nll_se"] = float(stderr)
        return values, result
