"""Contractive diffusion probabilistic models (CDPM) as a diffsde plugin.

CDPM flips the sign of the forward drift: the forward SDE expands (b(t, x) = f(t)(x − μ) with
f > 0), so the *backward* drift is contractive and the score and discretisation errors made along
the reverse path shrink instead of growing. Three SDEs (docs/math.md §2): the contractive
Ornstein–Uhlenbeck ``cou``, the contractive VP ``cvp`` and the contractive sub-VP ``csubvp``.

Their noise prior N(μ, σ_T² I) ignores the data-dependent mean λ_T x₀ of p_T (λ_T > 1 here):
this is the CDPM "noise approximation bias", kept small by moderate drifts.

This package uses only ``import diffsde``, the public API, as any third-party plugin can; it is
found through the entry point ``cdpm`` in the group ``diffsde``.
"""

import diffsde

from ._sde import COU as COU, CVP as CVP, CSubVP as CSubVP

SDES = (COU, CVP, CSubVP)
"""Each SDE is one class: its constructor's keyword parameters are its spec section."""


@diffsde.hookimpl
def register_sdes(register):
    for sde in SDES:
        register(sde)
