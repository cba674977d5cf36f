"""The built-in samplers (euler_maruyama, reverse_sde_adaptive, pf_ode, pc, exponential) and the
parts of the probability-flow sampler (ODE solvers, step-size controllers, time grids)."""

from .._sampler import SAMPLER_PARTS, SAMPLERS

__all__ = ["SAMPLERS", "SAMPLER_PARTS"]
