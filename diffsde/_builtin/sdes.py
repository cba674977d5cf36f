"""Spec sections of the built-in SDEs: ou, ve, vp, subvp, langevin, affine, general."""

from typing import Literal

import jax
import numpy as np
import pydantic

from .._config import Expr, ParamValue, SDEConfig, SpecFieldError, compile_field, compile_fields
from .._sde._closed_form import OU, VE, VP, SubVP
from .._sde._expression_sdes import Affine, General, Langevin

Positive = pydantic.PositiveFloat
Params = dict[str, ParamValue]


class OUConfig(SDEConfig):
    """Ornstein–Uhlenbeck dX = −θX dt + σ dB; prior N(0, σ²/(2θ) I)."""

    type: Literal["ou"] = "ou"
    theta: Positive = 1.0
    sigma: Positive = 2.0**0.5
    T: Positive = 5.0

    def build(self, *, dim: int) -> OU:
        return OU(dim, self.theta, self.sigma, self.T)


class VEConfig(SDEConfig):
    """Variance exploding (SMLD): geometric σ(t) from sigma_min to sigma_max."""

    type: Literal["ve"] = "ve"
    sigma_min: Positive = 0.01
    sigma_max: Positive = 50.0
    T: Positive = 1.0

    @pydantic.model_validator(mode="after")
    def _ordered(self):
        if self.sigma_min >= self.sigma_max:
            raise ValueError(
                f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})"
            )
        return self

    def build(self, *, dim: int) -> VE:
        return VE(dim, self.sigma_min, self.sigma_max, self.T)


class _BetaSchedule(pydantic.BaseModel):
    beta_min: pydantic.NonNegativeFloat = 0.1
    beta_max: Positive = 20.0
    T: Positive = 1.0

    @pydantic.model_validator(mode="after")
    def _ordered(self):
        if self.beta_min > self.beta_max:
            raise ValueError(
                f"beta_min ({self.beta_min}) must not exceed beta_max ({self.beta_max})"
            )
        return self


class VPConfig(SDEConfig, _BetaSchedule):
    """Variance preserving (DDPM): b = −½β(t)x, g = √β(t), linear β."""

    type: Literal["vp"] = "vp"

    def build(self, *, dim: int) -> VP:
        return VP(dim, self.beta_min, self.beta_max, self.T)


class SubVPConfig(SDEConfig, _BetaSchedule):
    """sub-VP: the VP drift with g² = β(t)(1 − e^{−2B(t)}); tighter likelihoods."""

    type: Literal["subvp"] = "subvp"

    def build(self, *, dim: int) -> SubVP:
        return SubVP(dim, self.beta_min, self.beta_max, self.T)


class LangevinConfig(SDEConfig):
    """Overdamped Langevin dX = −∇U(X) dt + √2 dB for a potential expression U(x)."""

    type: Literal["langevin"] = "langevin"
    potential: Expr = "0.5 * sum(x**2)"
    params: Params = {}
    T: Positive = 5.0

    def build(self, *, dim: int) -> Langevin:
        U = compile_field(self, "potential", ("x",), dim=dim, output="scalar", params=self.params)
        return Langevin(dim, U, self.T)


class AffineConfig(SDEConfig):
    """Affine dX = f(t) X dt + g(t) dB from expressions; Gaussian kernel solved numerically."""

    type: Literal["affine"] = "affine"
    f: Expr
    g: Expr
    params: Params = {}
    T: Positive = 1.0

    def build(self, *, dim: int) -> Affine:
        e = compile_fields(
            self, {"f": (("t",), "scalar"), "g": (("t",), "scalar")}, dim=dim, params=self.params
        )
        times = np.linspace(0.0, self.T, 9, dtype=np.float32)
        # before the kernel solve, which a NaN would run to max_steps
        on_grid = jax.jit(
            lambda f, g: (jax.vmap(lambda t: f(t=t))(times), jax.vmap(lambda t: g(t=t))(times))
        )
        for name, values in zip(("f", "g"), on_grid(e["f"], e["g"]), strict=True):
            values = np.asarray(values)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise SpecFieldError(
                    name,
                    f"gives {values[bad[0]]} at t={times[bad[0]]:g} (of [0, T={self.T:g}]): fix "
                    "the expression or its params so it is finite on the whole interval",
                )
        try:
            return Affine(dim, e["f"], e["g"], self.T)
        except Exception as err:  # diffrax's max_steps on a stiff or exploding f
            why = (
                "the solver ran out of steps"
                if "max_steps" in str(err)
                else (str(err).strip().splitlines() or [type(err).__name__])[0]
            )
            raise SpecFieldError(
                "f",
                f"the kernel ODE d log λ/dt = f, dσ²/dt = 2fσ² + g² cannot be solved on "
                f"[0, {self.T:g}] ({why}): make f and g smaller or smoother",
            ) from None


class GeneralConfig(SDEConfig):
    """Any drift expression b(t, x) and diffusion g(t); no Gaussian kernel, prior required."""

    type: Literal["general"] = "general"
    drift: Expr
    diffusion: Expr
    params: Params = {}
    T: Positive = 1.0

    def build(self, *, dim: int) -> General:
        e = compile_fields(
            self,
            {"drift": (("t", "x"), "vector"), "diffusion": (("t",), "scalar")},
            dim=dim,
            params=self.params,
        )
        return General(dim, e["drift"], e["diffusion"], self.T)


SDE_CONFIGS = (
    OUConfig,
    VEConfig,
    VPConfig,
    SubVPConfig,
    LangevinConfig,
    AffineConfig,
    GeneralConfig,
)
