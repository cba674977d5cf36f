"""The built-in SDEs: ou, ve, vp, subvp (closed-form kernels), langevin, affine, general
(expressions)."""

from .._sde._closed_form import OU, VE, VP, SubVP
from .._sde._expression_sdes import Affine, General, Langevin

SDES = (OU, VE, VP, SubVP, Langevin, Affine, General)
