"""Score models s_θ(x, t) ≈ ∇ log p_t(x), for one point (``jax.vmap`` outside)."""

from typing import ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._custom_types import ScalarLike, Vector
from ._prior import AbstractPrior
from ._sde._base import AbstractSDE

Parameterisation = Literal["score", "noise", "shortcut", "prior_residual"]


class MLPScore(eqx.Module):
    """An MLP on [x, sin(2πω t/T), cos(2πω t/T)] with fixed log-spaced frequencies ω.

    ``parameterisation`` says what the network's output ``net`` is:

    - ``"score"``: the score itself, s = net;
    - ``"noise"``: the noise ε of x_t = m_t + σ_t ε, so s = −net/σ_t (needs a Gaussian kernel);
    - ``"shortcut"``: a correction to the score of N(0, σ_t² I), s = −x/σ_t² + net (needs a
      Gaussian kernel; meant for VP-type kernels whose mean shrinks to 0).
    - ``"prior_residual"``: a correction to the prior's score, s = ∇log p_T(x) + net (any SDE
      with a prior). For Langevin dX = −∇U dt + √2 dB the reverse drift ∇U + 2s becomes
      −∇U + 2 net: as stable as the forward process wherever the network stays bounded, where a
      plain score network has to cancel a cubic ∇U it has rarely seen far from the data.
    """

    sde: AbstractSDE
    prior: AbstractPrior | None
    parameterisation: Parameterisation = eqx.field(static=True)
    frequencies: tuple[float, ...] = eqx.field(static=True)
    mlp: eqx.nn.MLP

    CHOICES: ClassVar[tuple[str, ...]] = ("score", "noise", "shortcut", "prior_residual")

    def __init__(
        self,
        sde: AbstractSDE,
        *,
        width: int,
        depth: int,
        n_frequencies: int,
        parameterisation: Parameterisation,
        key: PRNGKeyArray,
        prior: AbstractPrior | None = None,
    ):
        self.sde = sde
        self.prior = prior
        self.parameterisation = parameterisation
        self.frequencies = tuple(float(w) for w in np.geomspace(1.0, 64.0, n_frequencies))
        self.mlp = eqx.nn.MLP(
            in_size=sde.dim + 2 * n_frequencies,
            out_size=sde.dim,
            width_size=width,
            depth=depth,
            activation=jax.nn.silu,
            key=key,
        )

    def __check_init__(self):
        if self.parameterisation not in self.CHOICES:
            raise ValueError(
                f"parameterisation={self.parameterisation!r} is unknown; choose one of "
                f"{list(self.CHOICES)}"
            )
        if self.parameterisation == "prior_residual" and self.prior is None:
            raise ValueError(
                "parameterisation='prior_residual' adds the prior's score, but no prior was "
                "given; declare one in the spec's prior section or use parameterisation='score'"
            )
        if self.parameterisation in ("noise", "shortcut") and not self.sde.has_gaussian_kernel:
            raise ValueError(
                f"parameterisation={self.parameterisation!r} divides by the kernel's σ_t, but "
                f"{type(self.sde).__name__} has no Gaussian transition kernel; use "
                "parameterisation='score' or 'prior_residual'"
            )

    def embed_time(self, t: ScalarLike) -> Float[Array, " two_n_frequencies"]:
        """[sin(2πω t/T), cos(2πω t/T)] for the fixed frequencies ω (static: never trained)."""
        phase = 2 * jnp.pi * jnp.asarray(self.frequencies, jnp.float32) * (t / self.sde.T)
        return jnp.concatenate([jnp.sin(phase), jnp.cos(phase)])

    def __call__(self, x: Vector, t: ScalarLike) -> Vector:
        net = self.mlp(jnp.concatenate([x, self.embed_time(t)]))
        if self.parameterisation == "score":
            return net
        if self.parameterisation == "prior_residual":
            return self.prior.score(x) + net
        sigma = self.sde.marginal_std(t)
        if self.parameterisation == "noise":
            return -net / sigma
        return -x / sigma**2 + net
