"""Spec sections ``sde: {type: cou | cvp | csubvp, ...}`` of the contractive SDEs."""

from typing import Literal

import pydantic

import diffsde

from ._sde import COU, CVP, CSubVP

Positive = pydantic.PositiveFloat


class COUConfig(diffsde.SDEConfig):
    """Contractive OU dX = θ(X − μ) dt + σ dB (expansive forward drift); prior N(μ, σ_T² I)."""

    type: Literal["cou"] = "cou"
    theta: Positive = 1.0
    sigma: Positive = 1.0
    mu: float = 0.0
    T: Positive = 1.0

    def build(self, *, dim: int) -> COU:
        return COU(dim, self.theta, self.sigma, self.mu, self.T)


class _ContractiveBetaSchedule(pydantic.BaseModel):
    """A linear β schedule with the small CDPM defaults (β from 1 to 8 on [0, 1])."""

    beta_min: pydantic.NonNegativeFloat = 1.0
    beta_max: Positive = 8.0
    T: Positive = 1.0

    @pydantic.model_validator(mode="after")
    def _ordered(self):
        if self.beta_min > self.beta_max:
            raise ValueError(
                f"beta_min ({self.beta_min}) must not exceed beta_max ({self.beta_max}): swap them"
            )
        return self


class CVPConfig(diffsde.SDEConfig, _ContractiveBetaSchedule):
    """Contractive VP: b = +½β(t)x, g = √β(t), linear β; prior N(0, (e^{B(T)} − 1) I)."""

    type: Literal["cvp"] = "cvp"

    def build(self, *, dim: int) -> CVP:
        return CVP(dim, self.beta_min, self.beta_max, self.T)


class CSubVPConfig(diffsde.SDEConfig, _ContractiveBetaSchedule):
    """Contractive sub-VP: b = +½β(t)x, g² = β(t)(e^{2B(t)} − 1); prior N(0, (e^{B(T)} − 1)² I)."""

    type: Literal["csubvp"] = "csubvp"

    def build(self, *, dim: int) -> CSubVP:
        return CSubVP(dim, self.beta_min, self.beta_max, self.T)


SDE_CONFIGS = (COUConfig, CVPConfig, CSubVPConfig)
