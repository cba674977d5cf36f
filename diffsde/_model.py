"""Score models s_θ(x, t) ≈ ∇ log p_t(x), for one point (``jax.vmap`` outside)."""

import abc
from typing import Annotated, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pydantic
from jaxtyping import Array, Float, PRNGKeyArray

from ._custom_types import ScalarLike, Vector
from ._errors import SpecFieldError
from ._prior import AbstractPrior
from ._sde._base import AbstractGaussianSDE, AbstractSDE

MAX_DEPTH = 64
"""The most hidden layers of an MLP (each is a Python object built and traced one by one)."""
MAX_FREQUENCIES = 1024
"""The most time-embedding frequencies."""


class AbstractParameterisation(eqx.Module):
    """A part of a score model: what the network's output ``net`` is, and how the score is
    read from it. ``needs_kernel``: it uses the kernel's σ_t; ``needs_prior``: the prior's
    score."""

    kind: ClassVar[str] = "parameterisation"
    needs_kernel: ClassVar[bool] = False
    needs_prior: ClassVar[bool] = False

    def resolve(self, sde: AbstractSDE) -> "AbstractParameterisation":
        """The parameterisation used for ``sde`` (itself, unless it chooses by the SDE)."""
        del sde
        return self

    @abc.abstractmethod
    def score(
        self, net: Vector, x: Vector, t: ScalarLike, sde: AbstractSDE, prior: AbstractPrior | None
    ) -> Vector:
        """The score from the network's output."""


class ScoreOutput(AbstractParameterisation):
    """The score itself, s = net."""

    tag: ClassVar[str] = "score"

    def score(self, net, x, t, sde, prior):
        return net


class NoiseOutput(AbstractParameterisation):
    """The noise ε of x_t = m_t + σ_t ε, so s = −net/σ_t (needs a Gaussian kernel)."""

    tag: ClassVar[str] = "noise"
    needs_kernel: ClassVar[bool] = True

    def score(self, net, x, t, sde, prior):
        return -net / sde.marginal_std(t)


class ShortcutOutput(AbstractParameterisation):
    """A correction to the score of N(0, σ_t² I), s = −x/σ_t² + net (needs a Gaussian kernel;
    meant for VP-type kernels whose mean shrinks to 0)."""

    tag: ClassVar[str] = "shortcut"
    needs_kernel: ClassVar[bool] = True

    def score(self, net, x, t, sde, prior):
        return -x / sde.marginal_std(t) ** 2 + net


class PriorResidualOutput(AbstractParameterisation):
    """A correction to the prior's score, s = ∇log p_T(x) + net (any SDE with a prior). For
    Langevin dX = −∇U dt + √2 dB the reverse drift ∇U + 2s becomes −∇U + 2 net: as stable as
    the forward process wherever the network stays bounded, where a plain score network has to
    cancel a cubic ∇U it has rarely seen far from the data."""

    tag: ClassVar[str] = "prior_residual"
    needs_prior: ClassVar[bool] = True

    def score(self, net, x, t, sde, prior):
        return prior.score(x) + net


class AutoParameterisation(AbstractParameterisation):
    """``noise`` for an SDE with a Gaussian kernel, else ``prior_residual``."""

    tag: ClassVar[str] = "auto"

    def resolve(self, sde: AbstractSDE) -> AbstractParameterisation:
        return NoiseOutput() if isinstance(sde, AbstractGaussianSDE) else PriorResidualOutput()

    def score(self, net, x, t, sde, prior):
        return self.resolve(sde).score(net, x, t, sde, prior)


class MLPScore(eqx.Module):
    """An MLP on [x, sin(2πω t/T), cos(2πω t/T)] with fixed log-spaced frequencies ω; its
    output read as score, noise, shortcut or prior residual (``parameterisation``)."""

    tag: ClassVar[str] = "mlp"
    sde: AbstractSDE
    prior: AbstractPrior | None
    parameterisation: AbstractParameterisation
    frequencies: tuple[float, ...] = eqx.field(static=True)
    mlp: eqx.nn.MLP

    def __init__(
        self,
        sde: AbstractSDE,
        *,
        width: Annotated[int, pydantic.Field(gt=0)] = 128,
        depth: Annotated[int, pydantic.Field(gt=0, le=MAX_DEPTH, description="hidden layers")] = 3,
        n_frequencies: Annotated[int, pydantic.Field(gt=0, le=MAX_FREQUENCIES)] = 16,
        parameterisation: AbstractParameterisation = AutoParameterisation(),
        key: PRNGKeyArray,
        prior: AbstractPrior | None = None,
    ):
        """``prior`` (the spec's, else the SDE's own if it has one) is only used by the
        ``prior_residual`` parameterisation."""
        resolved = parameterisation.resolve(sde)
        if resolved.needs_prior and prior is None:
            try:
                prior = sde.prior()
            except ValueError:
                prior = None  # __check_init__ explains what is missing
        self.sde = sde
        self.prior = prior
        self.parameterisation = resolved
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
        tag = self.parameterisation.tag
        if self.parameterisation.needs_prior and self.prior is None:
            raise SpecFieldError(
                "parameterisation",
                f"'{tag}' adds the prior's score, but there is no prior: declare one in the "
                "spec's prior section or use parameterisation: score",
            )
        if self.parameterisation.needs_kernel and not isinstance(self.sde, AbstractGaussianSDE):
            raise SpecFieldError(
                "parameterisation",
                f"'{tag}' divides by the kernel's σ_t, but {type(self.sde).__name__} has no "
                "Gaussian transition kernel; use parameterisation: score or prior_residual",
            )

    def embed_time(self, t: ScalarLike) -> Float[Array, " two_n_frequencies"]:
        """[sin(2πω t/T), cos(2πω t/T)] for the fixed frequencies ω (static: never trained)."""
        phase = 2 * jnp.pi * jnp.asarray(self.frequencies, jnp.float32) * (t / self.sde.T)
        return jnp.concatenate([jnp.sin(phase), jnp.cos(phase)])

    def __call__(self, x: Vector, t: ScalarLike) -> Vector:
        net = self.mlp(jnp.concatenate([x, self.embed_time(t)]))
        return self.parameterisation.score(net, x, t, self.sde, self.prior)


MODELS = (MLPScore,)
"""The built-in models (registered by ``diffsde._builtin``)."""
PARAMETERISATIONS = (
    AutoParameterisation,
    ScoreOutput,
    NoiseOutput,
    ShortcutOutput,
    PriorResidualOutput,
)
"""The built-in parameterisations (parts of models)."""
