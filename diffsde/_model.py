"""Score models s_θ(x, t) ≈ ∇ log p_t(x), for one point (``jax.vmap`` outside), and the one
adapter through which every caller passes a point's condition to a score.

Conditions: a conditional score is called ``score(x, t, condition=c)`` and estimates
∇ log p_t(x | c); an unconditional one is called ``score(x, t)``. Callers (objectives, samplers,
the likelihood, metrics, score transforms) never ask which: they call
``bind_condition(score, c)(x, t)``, which passes ``c`` to a score whose signature
names a ``condition`` parameter and ignores it for any other (a plain ``model(x, t)``, a
lambda), so unconditional components need no ``condition`` argument of their own.
"""

import abc
import inspect
from typing import Annotated, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pydantic
from jaxtyping import Array, Float, PRNGKeyArray

from ._custom_types import Condition, ScalarLike, ScoreFn, Vector
from ._errors import SpecFieldError
from ._prior import AbstractPrior
from ._sde._base import AbstractGaussianSDE, AbstractSDE

MAX_DEPTH = 64
"""The most hidden layers of an MLP (each is a Python object built and traced one by one)."""
MAX_FREQUENCIES = 1024
"""The most time-embedding frequencies."""
MAX_CLASSES = 100_000
"""The most classes a model's class embedding may have."""


def takes_condition(score: ScoreFn) -> bool:
    """Whether ``score`` is conditional: its signature names a parameter ``condition`` (an
    equinox Module's ``__call__``, a function, a ``functools.partial``)."""
    try:
        return "condition" in inspect.signature(score).parameters
    except (TypeError, ValueError):  # a builtin without a signature: unconditional
        return False


class ConditionedScore(eqx.Module):
    """``score`` with ``condition`` fixed: ``(x, t) -> score(x, t, condition=condition)`` (a
    pytree, so jitted samplers trace its arrays)."""

    score: ScoreFn
    condition: Condition

    def __call__(self, x: Vector, t: ScalarLike) -> Vector:
        return self.score(x, t, condition=self.condition)


def bind_condition(score: ScoreFn, condition: Condition) -> ScoreFn:
    """The score of one point with condition ``condition``, as a plain ``(x, t) -> vector``.

    A conditional score (:func:`takes_condition`) gets ``condition`` as a keyword; any other
    score is returned as it is (it ignores the condition); ``condition=None`` returns ``score``
    itself, so unconditional calls are exactly what they were.
    """
    if condition is None or not takes_condition(score):
        return score
    return ConditionedScore(score, condition)


def condition_classes(model) -> int:
    """The number of classes a model is conditioned on: its ``classes`` (0, unconditional, for a
    model without one)."""
    classes = getattr(model, "classes", 0)
    return classes if isinstance(classes, int) else 0


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
    output read as score, noise, shortcut or prior residual (``parameterisation``).

    ``classes: K`` > 0 makes it conditional on a class c ∈ {0, …, K−1}: a learned embedding
    of ``class_embedding`` numbers is appended to its input, and it must be called
    ``model(x, t, condition=c)`` (s_θ(x, t, c) ≈ ∇ log p_t(x | c); the spec's data must yield K
    class labels). With ``classes: 0`` (the default) a condition given is ignored."""

    tag: ClassVar[str] = "mlp"
    sde: AbstractSDE
    prior: AbstractPrior | None
    parameterisation: AbstractParameterisation
    frequencies: tuple[float, ...] = eqx.field(static=True)
    classes: int = eqx.field(static=True)
    mlp: eqx.nn.MLP
    embedding: eqx.nn.Embedding | None

    def __init__(
        self,
        sde: AbstractSDE,
        *,
        width: Annotated[int, pydantic.Field(gt=0)] = 128,
        depth: Annotated[int, pydantic.Field(gt=0, le=MAX_DEPTH, description="hidden layers")] = 3,
        n_frequencies: Annotated[int, pydantic.Field(gt=0, le=MAX_FREQUENCIES)] = 16,
        parameterisation: AbstractParameterisation = AutoParameterisation(),
        classes: Annotated[
            int,
            pydantic.Field(
                ge=0, le=MAX_CLASSES, description="classes of the condition (0: unconditional)"
            ),
        ] = 0,
        class_embedding: Annotated[
            int, pydantic.Field(gt=0, le=4096, description="width of the class embedding")
        ] = 16,
        key: PRNGKeyArray,
        prior: AbstractPrior | None = None,
    ):
        """``prior`` (the spec's, else the SDE's own if it has one) is only used by the
        ``prior_residual`` parameterisation. The class embedding is drawn from
        ``fold_in(key, 1)``: an unconditional model's weights do not depend on it."""
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
        self.classes = classes
        self.embedding = (
            eqx.nn.Embedding(classes, class_embedding, key=jr.fold_in(key, 1)) if classes else None
        )
        self.mlp = eqx.nn.MLP(
            in_size=sde.dim + 2 * n_frequencies + (class_embedding if classes else 0),
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

    def __call__(self, x: Vector, t: ScalarLike, condition: Condition = None) -> Vector:
        inputs = [x, self.embed_time(t)]
        if self.embedding is not None:
            if condition is None:
                raise ValueError(
                    f"this MLP is conditional (classes={self.classes}): call it with "
                    f"condition=c, a class index in 0..{self.classes - 1}"
                )
            inputs.append(self.embedding(jnp.asarray(condition, jnp.int32)))
        else:
            del condition  # unconditional: a condition given is ignored
        net = self.mlp(jnp.concatenate(inputs))
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
