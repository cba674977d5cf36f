"""The built-in samplers and the parts of samplers (ODE solvers, step-size controllers, time
grids, frozen quantities): the reverse-SDE and probability-flow samplers of diffsde/_sampler.py,
the DPM-Solver family and UniPC (diffsde/_dpm_solvers.py), EDM's Heun, DDIM and DEIS
(diffsde/_edm_solvers.py)."""

from .._dpm_solvers import SAMPLERS as _DPM_SAMPLERS
from .._edm_solvers import SAMPLERS as _EDM_SAMPLERS
from .._sampler import SAMPLER_PARTS, SAMPLERS as _SDE_SAMPLERS

SAMPLERS = (*_SDE_SAMPLERS, *_DPM_SAMPLERS, *_EDM_SAMPLERS)

__all__ = ["SAMPLERS", "SAMPLER_PARTS"]
