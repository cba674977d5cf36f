"""Spec sections of the built-in samplers: euler_maruyama, reverse_sde_adaptive, pf_ode, pc,
exponential. ``build(sde=…)`` returns a :class:`diffsde.AbstractSampler`."""

from typing import Annotated, Literal

import pydantic

from .._config import SamplerConfig, SpecFieldError
from .._sampler import (
    ADAPTIVE_SOLVERS,
    FIXED_STEP_SOLVERS,
    AdaptiveReverseSDE,
    EulerMaruyama,
    ExponentialIntegrator,
    PredictorCorrector,
    ProbabilityFlow,
    check_gaussian,
)
from .._sde._base import AbstractSDE

Positive = pydantic.PositiveFloat
MAX_SOLVER_STEPS = 1_000_000
"""The most steps a sampler may take: each is a sequential pass of the model over every sample."""
PositiveInt = Annotated[int, pydantic.Field(gt=0, le=MAX_SOLVER_STEPS)]
"""A step count, 1 to MAX_SOLVER_STEPS."""


def _check_eps(eps: float, sde: AbstractSDE) -> None:
    if not eps < sde.T:
        raise SpecFieldError(
            "eps", f"must be below the SDE's horizon T = {sde.T}, got {eps}: lower it"
        )


class EulerMaruyamaConfig(SamplerConfig):
    """Euler–Maruyama on the reverse SDE with `steps` uniform steps (NFE = steps)."""

    type: Literal["euler_maruyama"] = "euler_maruyama"
    steps: PositiveInt = 1000
    eps: Positive = 1e-3

    def build(self, *, sde: AbstractSDE) -> EulerMaruyama:
        _check_eps(self.eps, sde)
        return EulerMaruyama(steps=self.steps, eps=self.eps)


class AdaptiveReverseSDEConfig(SamplerConfig):
    """Reverse SDE with adaptive steps: ShARK/SRA1, PID control, Brownian tree."""

    type: Literal["reverse_sde_adaptive"] = "reverse_sde_adaptive"
    solver: Literal["shark", "sra1"] = "shark"
    rtol: Positive = 1e-2
    atol: Positive = 1e-2
    dt0: Positive = 1e-2
    brownian_tol: Positive = 1e-5
    max_steps: PositiveInt = 4096
    eps: Positive = 1e-3

    def build(self, *, sde: AbstractSDE) -> AdaptiveReverseSDE:
        _check_eps(self.eps, sde)
        return AdaptiveReverseSDE(
            rtol=self.rtol,
            atol=self.atol,
            dt0=self.dt0,
            brownian_tol=self.brownian_tol,
            max_steps=self.max_steps,
            solver=self.solver,
            eps=self.eps,
        )


DEFAULT_ODE_STEPS = 100
DEFAULT_ODE_TOLERANCE = 1e-5


class PFODEConfig(SamplerConfig):
    """Probability-flow ODE: euler/heun/rk4 on `steps`, or adaptive tsit5/dopri5 (rtol/atol)."""

    type: Literal["pf_ode"] = "pf_ode"
    solver: Literal["euler", "heun", "rk4", "tsit5", "dopri5"] = "tsit5"
    steps: PositiveInt | None = None
    rtol: Positive | None = None
    atol: Positive | None = None
    dt0: Positive | None = None
    max_steps: PositiveInt = 4096
    eps: Positive = 1e-3

    @pydantic.model_validator(mode="before")
    @classmethod
    def _fill_for_solver(cls, data):
        """Fill the solver's own settings (printed in the resolved spec); reject the others."""
        if not isinstance(data, dict):
            return data
        solver = data.get("solver", "tsit5")
        if solver in FIXED_STEP_SOLVERS:
            given = [k for k in ("rtol", "atol", "dt0") if data.get(k) is not None]
            if given:
                raise ValueError(
                    f"solver '{solver}' takes fixed steps, so {' and '.join(given)} do not "
                    f"apply: set `steps` instead (default {DEFAULT_ODE_STEPS}), or choose an "
                    f"adaptive solver ({', '.join(ADAPTIVE_SOLVERS)}) to use rtol/atol/dt0"
                )
            return {"steps": DEFAULT_ODE_STEPS, **{k: v for k, v in data.items() if v is not None}}
        if solver in ADAPTIVE_SOLVERS:
            if data.get("steps") is not None:
                raise ValueError(
                    f"solver '{solver}' is adaptive and chooses its own steps from rtol/atol "
                    f"(default {DEFAULT_ODE_TOLERANCE}), so `steps` does not apply: remove it, "
                    f"or choose a fixed-step solver ({', '.join(FIXED_STEP_SOLVERS)})"
                )
            defaults = {"rtol": DEFAULT_ODE_TOLERANCE, "atol": DEFAULT_ODE_TOLERANCE, "dt0": 1e-2}
            return {**defaults, **{k: v for k, v in data.items() if v is not None}}
        return data  # an unknown solver is reported by the Literal

    def build(self, *, sde: AbstractSDE) -> ProbabilityFlow:
        _check_eps(self.eps, sde)
        return ProbabilityFlow(
            solver=self.solver,
            steps=self.steps,
            rtol=self.rtol,
            atol=self.atol,
            dt0=self.dt0,
            max_steps=self.max_steps,
            eps=self.eps,
        )


class PCConfig(SamplerConfig):
    """Predictor–corrector: Euler–Maruyama predictor, Langevin corrector at a target snr."""

    type: Literal["pc"] = "pc"
    steps: PositiveInt = 1000
    corrector_steps: int = pydantic.Field(1, ge=0, le=100)
    snr: Positive = 0.16
    eps: Positive = 1e-3

    def build(self, *, sde: AbstractSDE) -> PredictorCorrector:
        _check_eps(self.eps, sde)
        return PredictorCorrector(
            steps=self.steps, corrector_steps=self.corrector_steps, snr=self.snr, eps=self.eps
        )


class ExponentialConfig(SamplerConfig):
    """Exponential integrator of the reverse SDE (Gaussian-kernel SDEs): exact linear part."""

    type: Literal["exponential"] = "exponential"
    steps: PositiveInt = 100
    frozen: Literal["noise", "score", "data"] = "noise"
    eps: Positive = 1e-3

    def build(self, *, sde: AbstractSDE) -> ExponentialIntegrator:
        try:
            check_gaussian(sde, "the exponential sampler")
        except ValueError as err:
            raise SpecFieldError("type", str(err)) from None
        _check_eps(self.eps, sde)
        return ExponentialIntegrator(steps=self.steps, frozen=self.frozen, eps=self.eps)


SAMPLER_CONFIGS = (
    EulerMaruyamaConfig,
    AdaptiveReverseSDEConfig,
    PFODEConfig,
    PCConfig,
    ExponentialConfig,
)
